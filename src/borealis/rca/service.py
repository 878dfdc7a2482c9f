"""RCA operations: when an analysis runs, the run's life cycle, and what the API shows of it.

``request`` runs in the caller's transaction (ingest, a request): it records the run and its job together,
or neither. ``analyse`` is the slow part (Dynatrace and the optional model) and touches no database; the
job handler (``tasks.py``) calls it between two short transactions.

When it runs: automatically for a new incident and again (debounced) when the incident gains problems,
only for workspaces with ``rcaEnabled`` and within the per-workspace rate limit (a run over the limit is recorded
as ``skipped`` with the reason); on demand at any time. Test notifications never make problems, so never
incidents, so never an RCA.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.auth.models import User
from borealis.config import Settings, get_settings
from borealis.crypto import SecretBox
from borealis.db import utcnow
from borealis.dynatrace import service as dynatrace_service
from borealis.dynatrace.capped import api_client
from borealis.errors import BorealisError, Conflict, InvalidInput
from borealis.incidents import service as incidents_service
from borealis.incidents.changes import record_event
from borealis.incidents.models import Incident
from borealis.incidents.schemas import Person
from borealis.jobstore import enqueue
from borealis.rca.analyzer import analyze
from borealis.rca.book import EvidenceBook, Links
from borealis.rca.evidence import EntityRef, NotChecked
from borealis.rca.gather import facts_as_problem, investigate
from borealis.rca.inputs import Inputs, cached_entities, facts_of
from borealis.rca.llm import LlmConfig, narrate
from borealis.rca.models import Feedback, RcaRun, RcaStatus, RcaTrigger
from borealis.rca.report import Report
from borealis.rca.schemas import FeedbackRead, RcaRead, RcaRunSummary, RcaSummary
from borealis.rca.steps import Budget
from borealis.rca.store import effective_status, history, store_report, stored_report
from borealis.schemas import storable
from borealis.workspaces.models import Workspace

logger = logging.getLogger("borealis.rca")

JOB_KIND = "rca"
AUTOMATIC = (RcaTrigger.NEW_INCIDENT.value, RcaTrigger.PROBLEMS_ADDED.value)
MAX_PROBLEMS = 20


def job_key(incident_id: int) -> str:
    return f"incident:{incident_id}"


# --- requesting a run ------------------------------------------------------------------------------


def latest(*, db_session: Session, incident_id: int) -> RcaRun | None:
    """The incident's newest run, or None when it never had one."""
    return db_session.scalar(
        sa.select(RcaRun).where(RcaRun.incident_id == incident_id).order_by(RcaRun.id.desc()).limit(1)
    )


def latest_done(*, db_session: Session, incident_id: int) -> RcaRun | None:
    """The incident's newest finished run (its report stands), or None."""
    return db_session.scalar(
        sa.select(RcaRun)
        .where(RcaRun.incident_id == incident_id, RcaRun.status == RcaStatus.DONE.value)
        .order_by(RcaRun.id.desc())
        .limit(1)
    )


def give_feedback(
    *, db_session: Session, incident: Incident, by: User, mark: Feedback, cause: str | None
) -> RcaRun:
    """A responder's mark on the incident's standing report: right, partly right or wrong, and for the
    last two the entity they found to be the true cause. A new mark replaces theirs or anyone's before;
    it goes on the timeline, and onto the Dynatrace comment when the RCA is written back."""
    run = latest_done(db_session=db_session, incident_id=incident.id)
    if run is None:
        raise Conflict(f"incident {incident.id} has no finished RCA to mark; run one first")
    if mark is Feedback.RIGHT and cause:
        raise InvalidInput(
            "causeEntity is for a report marked partly_right or wrong", details={"field": "causeEntity"}
        )
    run.feedback = mark.value
    run.feedback_cause = storable(cause, field="causeEntity").strip() or None if cause else None
    run.feedback_by_id = by.id
    run.feedback_at = utcnow()
    said = mark.value.replace("_", " ")
    record_event(
        db_session=db_session,
        incident=incident,
        kind="rca_feedback",
        actor="user",
        user_id=by.id,
        message=f"RCA marked {said}"
        + (f"; the true cause: {run.feedback_cause}" if run.feedback_cause else ""),
        details={"rcaId": run.id, "mark": mark.value, "causeEntity": run.feedback_cause},
    )
    _write_back(db_session, incident)
    db_session.flush()
    return run


def _queued(db_session: Session, incident_id: int) -> RcaRun | None:
    return db_session.scalar(
        sa.select(RcaRun)
        .where(RcaRun.incident_id == incident_id, RcaRun.status == RcaStatus.QUEUED.value)
        .order_by(RcaRun.id.desc())
        .limit(1)
    )


def recent_automatic_runs(*, db_session: Session, workspace_id: str, since: datetime, limit: int) -> int:
    """How many automatic runs (not skipped) the workspace had since ``since``, counted up to ``limit``: what
    the rate limit compares (bounded work however busy the workspace is)."""
    recent = (
        sa.select(RcaRun.id)
        .where(
            RcaRun.workspace_id == workspace_id,
            RcaRun.created_at >= since,
            RcaRun.trigger.in_(AUTOMATIC),
            RcaRun.status != RcaStatus.SKIPPED.value,
        )
        .limit(limit)
        .subquery()
    )
    return db_session.scalar(sa.select(sa.func.count()).select_from(recent)) or 0


def request(
    *,
    db_session: Session,
    incident: Incident,
    trigger: RcaTrigger,
    settings: Settings | None = None,
    now: datetime | None = None,
) -> RcaRun | None:
    """Ask for an analysis of the incident; returns the run that will answer (queued, or skipped by the
    rate limit), or None when an automatic run is not wanted (RCA off for the workspace)."""
    settings = settings or get_settings()
    now = now or utcnow()
    automatic = trigger is not RcaTrigger.ON_DEMAND
    # Ingest holds this lock already; an on-demand request takes it so an incident never has two
    # queued runs (the second would have no job of its own).
    incidents_service.lock_workspace(db_session=db_session, workspace_id=incident.workspace_id)
    if automatic:
        workspace = db_session.get(Workspace, incident.workspace_id)
        if workspace is None or not workspace.rca_enabled:
            return None
    queued = _queued(db_session, incident.id)
    if queued is not None:
        # One queued run per incident: it reads the incident's problems when it starts, so a later
        # request is already served by it; an on-demand request only makes it start now.
        if not automatic:
            queued.trigger = RcaTrigger.ON_DEMAND.value
            queued.run_after = min(queued.run_after, now)
            _enqueue(db_session, queued, now)
            db_session.flush()
        return queued
    limit = settings.rca_rate_limit_per_hour
    if (
        automatic
        and limit
        and recent_automatic_runs(
            db_session=db_session,
            workspace_id=incident.workspace_id,
            since=now - timedelta(hours=1),
            limit=limit,
        )
        >= limit
    ):
        reason = (
            f"skipped: the limit of {limit} automatic RCAs per hour was reached "
            "(BOREALIS_RCA_RATE_LIMIT_PER_HOUR); run it now with POST "
            f"/incidents/{incident.id}/rca"
        )
        run = RcaRun(
            incident_id=incident.id,
            workspace_id=incident.workspace_id,
            status=RcaStatus.SKIPPED.value,
            trigger=trigger.value,
            reason=reason,
            run_after=now,
            finished_at=now,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        db_session.add(run)
        db_session.flush()
        _event(db_session, incident, "rca_skipped", f"RCA {reason}", run)
        return run
    delay = timedelta(seconds=settings.rca_debounce_seconds) if automatic else timedelta(0)
    run = RcaRun(
        incident_id=incident.id,
        workspace_id=incident.workspace_id,
        status=RcaStatus.QUEUED.value,
        trigger=trigger.value,
        run_after=now + delay,
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    db_session.add(run)
    db_session.flush()
    _enqueue(db_session, run, now)
    why = {
        RcaTrigger.NEW_INCIDENT: "for the new incident",
        RcaTrigger.PROBLEMS_ADDED: "again: the incident gained problems",
        RcaTrigger.ON_DEMAND: "on demand",
    }[trigger]
    _event(db_session, incident, "rca_queued", f"RCA queued {why}", run)
    return run


def _enqueue(db_session: Session, run: RcaRun, now: datetime) -> None:
    job = enqueue(
        db_session=db_session,
        kind=JOB_KIND,
        workspace_id=run.workspace_id,
        key=job_key(run.incident_id),
        payload={"rcaId": run.id},
        run_after=max(run.run_after, now) if run.trigger in AUTOMATIC else now,
        max_attempts=3,
    )
    run.job_id = job.id


def after_ingest(
    *, db_session: Session, incident: Incident, problem_created: bool, settings: Settings | None = None
) -> RcaRun | None:
    """The ingest hook: a new problem means a new incident or one that gained a problem; either asks for
    an automatic run. Updates of known problems do not."""
    if not problem_created:
        return None
    trigger = RcaTrigger.NEW_INCIDENT if incident.problem_count <= 1 else RcaTrigger.PROBLEMS_ADDED
    if (
        trigger is RcaTrigger.PROBLEMS_ADDED
        and latest(db_session=db_session, incident_id=incident.id) is None
    ):
        trigger = RcaTrigger.NEW_INCIDENT
    return request(db_session=db_session, incident=incident, trigger=trigger, settings=settings)


def after_ingest_many(
    *, db_session: Session, incidents: Sequence[Incident], settings: Settings | None = None
) -> None:
    """``after_ingest`` for the incidents that gained a new problem in one ingest batch, in order:
    whether each workspace wants automatic runs is read once for the batch, not once per problem."""
    if not incidents:
        return
    workspace_ids = sorted({incident.workspace_id for incident in incidents})
    wanted = set(
        db_session.scalars(
            sa.select(Workspace.id).where(Workspace.id.in_(workspace_ids), Workspace.rca_enabled.is_(True))
        )
    )
    for incident in incidents:
        if incident.workspace_id in wanted:
            after_ingest(db_session=db_session, incident=incident, problem_created=True, settings=settings)


def _event(db_session: Session, incident: Incident, kind: str, message: str, run: RcaRun) -> None:
    record_event(
        db_session=db_session,
        incident=incident,
        kind=kind,
        message=message,
        details={"rcaId": run.id, "status": run.status, "verdict": run.verdict},
    )


# --- running -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    report: Report
    analyzer: str
    reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)


def start(*, db_session: Session, run: RcaRun) -> Inputs | None:
    """Mark the run running and read what it needs; None when there is nothing left to analyse (the
    incident was merged into another, whose own RCA covers its problems). The caller commits."""
    now = utcnow()
    incident = db_session.get(Incident, run.incident_id)
    assert incident is not None  # the run is deleted with its incident
    if incident.merged_into_id is not None:
        run.status = RcaStatus.SKIPPED.value
        run.reason = (
            f"skipped: the incident was merged into incident #{incident.merged_into_id}; see "
            f"GET /incidents/{incident.merged_into_id}/rca"
        )
        run.finished_at = now
        run.updated_at = now
        _event(db_session, incident, "rca_skipped", f"RCA {run.reason}", run)
        db_session.flush()
        return None
    first = run.status == RcaStatus.QUEUED.value
    run.status = RcaStatus.RUNNING.value
    run.attempts = (run.attempts or 0) + 1
    run.started_at = run.started_at or now
    run.updated_at = now
    members = incidents_service.members(db_session=db_session, incident=incident)
    problems = [facts_of(problem) for _, problem in members[:MAX_PROBLEMS]]
    connection = dynatrace_service.get(db_session=db_session, workspace_id=run.workspace_id)
    cached = cached_entities(db_session=db_session, connection=connection, problems=problems)
    if first:
        _event(db_session, incident, "rca_started", f"RCA started ({len(problems)} problem(s))", run)
    db_session.flush()
    return Inputs(
        rca_id=run.id,
        incident_id=incident.id,
        title=incident.title,
        problems=problems,
        connection=connection,
        cached_entities=cached,
    )


def budget_of(settings: Settings) -> Budget:
    """The bounds of one RCA as the settings give them."""
    return Budget(
        lookback=timedelta(minutes=settings.rca_lookback_minutes),
        baseline=timedelta(minutes=settings.rca_baseline_minutes),
        max_depth=settings.rca_max_depth,
        max_entities=settings.rca_max_entities,
    )


def analyse(
    inputs: Inputs, *, settings: Settings, secret_box: SecretBox, now: datetime | None = None
) -> Outcome:
    """Gather evidence within the token's scopes, rank the causes, and let the model (when configured)
    write the narrative. No database: safe to run outside any transaction."""
    now = now or utcnow()
    budget = budget_of(settings)
    llm = LlmConfig.from_settings(settings)
    connection = inputs.connection
    client = None
    gap: NotChecked | None = None
    if connection is None or not connection.connected:
        gap = NotChecked(
            what="the Dynatrace API",
            reason="Dynatrace is not connected: only the stored problem records were analysed; connect "
            "again (POST /dynatrace/connect) and re-run the RCA",
            code="error",
        )
    else:
        try:
            client = api_client(connection=connection, settings=settings, secret_box=secret_box)
        except BorealisError as exc:
            gap = NotChecked.for_error("the Dynatrace API", exc)
    usage: dict[str, Any] = {"dynatraceCalls": 0, "llm": None}
    if client is not None:
        with client:
            investigation = investigate(
                client,
                inputs.problems,
                now=now,
                scopes=connection.token_scopes or None,
                budget=budget,
                cached_entities=inputs.cached_entities,
            )
            book = investigation.book
            report = analyze(book.items, book.not_checked, lookback=budget.lookback)
            outcome = _narrate(report, llm, investigation, inputs.title, usage)
            usage["dynatraceCalls"] = outcome.report.walk.calls = investigation.calls
            return outcome
    book = EvidenceBook(Links(connection.environment_url) if connection else None)
    for facts in inputs.problems:
        book.add_problem(
            facts_as_problem(facts), source="webhook notification (stored problem record)", url=facts.url
        )
    if gap is not None:
        book.not_checked.append(gap)
    report = analyze(book.items, book.not_checked, lookback=budget.lookback)
    return _narrate(report, llm, None, inputs.title, usage)


def _narrate(report: Report, llm: LlmConfig | None, tools: Any, title: str, usage: dict[str, Any]) -> Outcome:
    if llm is None:
        return Outcome(report=report, analyzer="deterministic", usage=usage)
    narrative = narrate(report, config=llm, tools=tools, title=title)
    usage["llm"] = {"model": llm.model, **narrative.usage.as_dict()}
    if narrative.accepted:
        return Outcome(report=narrative.report, analyzer=f"llm:{llm.model}", usage=usage)
    return Outcome(
        report=narrative.report,
        analyzer="deterministic",
        reason=f"the model's narrative was not used: {narrative.reason}",
        usage=usage,
    )


def finish(*, db_session: Session, run: RcaRun, outcome: Outcome) -> None:
    """Store the report and its evidence and mark the run done; the caller commits."""
    now = utcnow()
    report = outcome.report
    incident = db_session.get(Incident, run.incident_id)
    store_report(db_session=db_session, run=run, report=report, title=incident.title if incident else None)
    run.analyzer = outcome.analyzer
    run.reason = outcome.reason
    run.usage = outcome.usage
    run.status = RcaStatus.DONE.value
    run.finished_at = now
    run.updated_at = now
    if incident is not None:
        cause = report.root_cause.entity
        what = f"{report.verdict.value}: {cause.label}" if cause else report.verdict.value
        _event(db_session, incident, "rca_done", f"RCA done, {what} ({outcome.analyzer})", run)
        _write_back(db_session, incident)
    db_session.flush()


def _write_back(db_session: Session, incident: Incident) -> None:
    """Queue writing the report onto the incident's Dynatrace problems, when the workspace does that
    (the job itself checks again, and finds the newest report when it runs)."""
    workspace = db_session.get(Workspace, incident.workspace_id)
    connection = dynatrace_service.get(db_session=db_session, workspace_id=incident.workspace_id)
    if not dynatrace_service.writes_back(workspace=workspace, connection=connection):
        return
    enqueue(
        db_session=db_session,
        kind=dynatrace_service.WRITE_BACK_JOB,
        workspace_id=incident.workspace_id,
        key=f"incident:{incident.id}",
        payload={"incidentId": incident.id},
    )


def record_failure(*, db_session: Session, run: RcaRun, reason: str, final: bool) -> None:
    """Note a failed attempt: ``failed`` with the reason after the last one, else queued for a retry."""
    now = utcnow()
    run.reason = reason if final else f"attempt {run.attempts} failed, retrying: {reason}"
    run.status = RcaStatus.FAILED.value if final else RcaStatus.QUEUED.value
    run.updated_at = now
    if final:
        run.finished_at = now
        incident = db_session.get(Incident, run.incident_id)
        if incident is not None:
            _event(db_session, incident, "rca_failed", f"RCA failed: {reason}", run)
    db_session.flush()


# --- reading -------------------------------------------------------------------------------------


def read(*, db_session: Session, run: RcaRun) -> RcaRead:
    """The run as ``GET /incidents/{id}/rca`` shows it, with its whole report."""
    status, reason = effective_status(db_session=db_session, run=run)
    report = stored_report(db_session=db_session, run=run)
    runs = history(db_session=db_session, incident_id=run.incident_id)
    feedback = None
    if run.feedback:
        by = db_session.get(User, run.feedback_by_id) if run.feedback_by_id else None
        feedback = FeedbackRead(
            mark=run.feedback,
            cause_entity=run.feedback_cause,
            by=Person(user_id=by.id, username=by.email) if by else None,
            at=run.feedback_at,
        )
    return RcaRead(
        feedback=feedback,
        id=run.id,
        incident_id=run.incident_id,
        status=status,
        trigger=run.trigger,
        reason=reason,
        analyzer=run.analyzer,
        verdict=run.verdict,
        report=report,
        markdown=run.markdown,
        usage=run.usage,
        attempts=run.attempts,
        requested_at=run.created_at,
        run_after=run.run_after,
        started_at=run.started_at,
        finished_at=run.finished_at,
        history=[
            RcaRunSummary(
                id=item.id,
                status=effective_status(db_session=db_session, run=item)[0],
                trigger=item.trigger,
                verdict=item.verdict,
                analyzer=item.analyzer,
                reason=item.reason,
                created_at=item.created_at,
                finished_at=item.finished_at,
            )
            for item in runs
        ],
    )


def summary_for(*, db_session: Session, incident: Incident) -> RcaSummary | None:
    """The RCA section of the incident detail, or None when the incident never had an RCA."""
    run = latest(db_session=db_session, incident_id=incident.id)
    if run is None:
        return None
    status, reason = effective_status(db_session=db_session, run=run)
    report = run.report or {}
    cause = (report.get("rootCause") or {}).get("entity")
    return RcaSummary(
        id=run.id,
        status=status,
        trigger=run.trigger,
        verdict=run.verdict,
        summary=report.get("summary"),
        root_cause=EntityRef.model_validate(cause) if cause else None,
        analyzer=run.analyzer,
        reason=reason,
        started_at=run.started_at,
        finished_at=run.finished_at,
        link=f"/incidents/{incident.id}/rca",
    )
