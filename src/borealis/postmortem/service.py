"""Assembling an incident's postmortem from what Borealis recorded: the incident and its problems, its
timeline with the notes, the latest finished RCA, and the on-call figures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.incidents import service as incidents_service
from borealis.incidents import workflow
from borealis.incidents.models import Incident
from borealis.incidents.schemas import AffectedEntity, Person
from borealis.postmortem.schemas import (
    Postmortem,
    PostmortemCause,
    PostmortemEvent,
    PostmortemEvidence,
    PostmortemFigures,
    PostmortemImpact,
    PostmortemProblem,
)
from borealis.rca import service as rca_service
from borealis.rca.store import stored_report

MAX_CAUSE_EVIDENCE = 5


def assemble(*, db_session: Session, incident: Incident, now: datetime | None = None) -> Postmortem:
    now = now or utcnow()
    events = incidents_service.timeline(db_session=db_session, incident=incident)
    notes = {item.note.id: item for item in workflow.notes(db_session=db_session, incident=incident)}
    names = workflow.usernames(
        db_session=db_session,
        user_ids={event.user_id for event in events} | {incident.acknowledged_by_id, incident.assignee_id},
    )

    def person(user_id: str | None) -> Person | None:
        return Person(user_id=user_id, username=names[user_id]) if user_id and user_id in names else None

    timeline = []
    for event in events:
        note = notes.get(int((event.details or {}).get("noteId", 0))) if event.kind == "note_added" else None
        timeline.append(
            PostmortemEvent(
                at=event.at,
                kind=event.kind,
                message=event.message,
                by=person(event.user_id),
                text=note.note.text if note is not None else None,
            )
        )
    problems = [
        PostmortemProblem(
            alert_id=problem.id,
            display_id=problem.display_id,
            title=problem.title,
            severity=problem.severity,
            state=problem.state,
            start_time=problem.start_time,
            end_time=problem.end_time,
            problem_url=problem.problem_url,
        )
        for _, problem in incidents_service.members(db_session=db_session, incident=incident)
    ]
    run = rca_service.latest_done(db_session=db_session, incident_id=incident.id)
    report = stored_report(db_session=db_session, run=run) if run is not None else None
    cause = None
    if report is not None:
        cited = {item.id: item for item in report.evidence}
        cause = PostmortemCause(
            verdict=report.verdict.value,
            entity=report.root_cause.entity,
            explanation=report.root_cause.explanation,
            evidence=[
                PostmortemEvidence(id=cited[eid].id, summary=cited[eid].summary, link=cited[eid].link)
                for eid in report.root_cause.evidence_ids
                if eid in cited
            ][:MAX_CAUSE_EVIDENCE],
            link=f"/incidents/{incident.id}/rca",
        )
    end = incident.resolved_at or now
    summary = (
        report.summary
        if report is not None and report.summary
        else f"{incident.title or 'An incident'}: {incident.problem_count} problem"
        f"{'s' if incident.problem_count != 1 else ''} from Dynatrace, {incident.status}."
    )
    return Postmortem(
        incident_id=incident.id,
        title=incident.title or f"Incident #{incident.id}",
        status=incident.status,
        priority=incident.priority,
        started_at=incident.started_at,
        resolved_at=incident.resolved_at,
        summary=summary,
        timeline=timeline,
        impact=PostmortemImpact(
            affected_entities=[
                AffectedEntity.model_validate(item) for item in incident.affected_entities or []
            ],
            problems=problems,
            users=report.impact.users if report is not None else None,
        ),
        root_cause=cause,
        figures=PostmortemFigures(
            time_to_acknowledge_seconds=incident.time_to_acknowledge_seconds,
            time_to_resolve_seconds=incident.time_to_resolve_seconds,
            duration_seconds=max(0.0, (end - incident.started_at).total_seconds()),
            open=incident.resolved_at is None,
        ),
        acknowledged_by=person(incident.acknowledged_by_id),
        assignee=person(incident.assignee_id),
        action_items=[],
    )
