"""How an incident changes, whether correlation or a person changes it: its picture (title, priority,
start, entities, counts), resolving and reopening, merging, and the timeline that records each step.

Callers own the transaction and the workspace's correlation lock: these functions flush, never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, load_only

from borealis.db import utcnow
from borealis.incidents.correlation import ProblemFacts
from borealis.incidents.index import FACT_COLUMNS, CandidateIndex, facts_from
from borealis.incidents.models import OPEN, RESOLVED, Incident, IncidentEvent, IncidentProblem
from borealis.problems.models import ENDED_STATES, PRIORITIES, Problem

MAX_AFFECTED_ENTITIES = 100
MAX_SEARCH_TEXT = 8000

_PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}

# What an incident's picture is made of (``absorb``).
PICTURE_COLUMNS = (
    *FACT_COLUMNS,
    Problem.state,
    Problem.priority,
    Problem.root_cause_entity_name,
    Problem.root_cause_entity_type,
)

_events: sa.Table = IncidentEvent.__table__  # type: ignore[assignment]


@dataclass
class Changes:
    """Where one call's changes to incidents go: its session, the candidate index as the call sees it,
    and, for an ingest batch, the timeline rows held back to be written with one statement at its end
    (the ORM would write them one by one on SQLite, to learn each new id)."""

    db_session: Session
    index: CandidateIndex
    held_events: list[dict[str, Any]] | None = None
    # The member whose manual action this is (None: the system's own changes).
    by: str | None = None

    @classmethod
    def of(cls, db_session: Session, *, hold_events: bool = False, by: str | None = None) -> Changes:
        """Changes straight to the database (``hold_events``: the timeline waits for ``write_held_events``)."""
        return cls(db_session, CandidateIndex(db_session, hold=hold_events), [] if hold_events else None, by)

    def record(self, incident: Incident, kind: str, message: str, **optional: Any) -> None:
        """``record_event`` for this call: held back when it holds its events; a manual action's line
        names the member."""
        if optional.get("actor") == "user":
            optional.setdefault("user_id", self.by)
        record_event(
            db_session=self.db_session,
            incident=incident,
            kind=kind,
            message=message,
            held=self.held_events,
            **optional,
        )

    def write_held_events(self) -> None:
        """Write the timeline rows held back (later ones are written as they are recorded), and the
        candidate index's."""
        held, self.held_events = self.held_events, None
        if held:
            self.db_session.flush()
            self.db_session.execute(_events.insert(), held)
        self.index.write_held(stop=True)


def record_event(
    *,
    db_session: Session,
    incident: Incident,
    kind: str,
    message: str,
    actor: str = "system",
    user_id: str | None = None,
    problem_id: int | None = None,
    details: dict[str, Any] | None = None,
    held: list[dict[str, Any]] | None = None,
) -> None:
    """A new line on the incident's timeline (RCA adds its own kinds: ``rca_queued``, ...); with
    ``held``, the row waits there to be written with the others."""
    row = {
        "incident_id": incident.id,
        "at": utcnow(),
        "kind": kind,
        "actor": actor,
        "user_id": user_id,
        "problem_id": problem_id,
        "message": message,
        "details": details or {},
    }
    if held is not None:
        held.append(row)
    else:
        db_session.add(IncidentEvent(**row))


# -- the incident's picture -------------------------------------------------------------------------


def attach(
    db_session: Session,
    problem_id: int,
    incident_id: int,
    *,
    strategy: str,
    score: float | None,
    reason: str,
    related: int | None,
    state: str,
) -> IncidentProblem:
    """Put the problem into the incident, with why (``strategy``, ``score``, ``reason``)."""
    attachment = IncidentProblem(
        problem_id=problem_id,
        problem_state=state,
        incident_id=incident_id,
        strategy=strategy,
        score=score,
        reason=reason,
        related_problem_id=related,
        attached_at=utcnow(),
    )
    db_session.add(attachment)
    return attachment


def _rank(priority: str | None) -> int:
    return _PRIORITY_RANK.get(priority or "", len(PRIORITIES))


def absorb(incident: Incident, problem: Any, facts: ProblemFacts) -> None:
    """Fold one problem (a row of ``PICTURE_COLUMNS``) into the incident's title, priority, start,
    entities and search text."""
    if _rank(problem.priority) < _rank(incident.priority):
        incident.priority = problem.priority
        if problem.title:
            incident.title = problem.title
    elif not incident.title and problem.title:
        incident.title = problem.title
    if facts.start_time is not None and (
        incident.started_at is None or facts.start_time < incident.started_at
    ):
        incident.started_at = facts.start_time
    entities = list(incident.affected_entities or [])
    known = {item.get("entityId") for item in entities}
    additions = [
        {"entityId": item.get("entityId"), "name": item.get("name"), "type": item.get("type")}
        for item in problem.impacted_entities or []
        if isinstance(item, dict) and item.get("entityId")
    ]
    if problem.root_cause_entity_id:
        additions.append(
            {
                "entityId": problem.root_cause_entity_id,
                "name": problem.root_cause_entity_name,
                "type": problem.root_cause_entity_type,
            }
        )
    for item in additions:
        if item["entityId"] not in known and len(entities) < MAX_AFFECTED_ENTITIES:
            known.add(item["entityId"])
            entities.append(item)
    if entities != incident.affected_entities:
        incident.affected_entities = entities
    words = [problem.title, problem.display_id] + [item.get("name") for item in additions]
    text = incident.search_text or ""
    for word in filter(None, words):
        lowered = word.lower()
        if lowered not in text and len(text) + len(lowered) < MAX_SEARCH_TEXT:
            text = f"{text}\n{lowered}" if text else lowered
    incident.search_text = text


def _count(db_session: Session, incident: Incident) -> None:
    """Problem counts from the attachments, by the state the incident last saw of each (the same as
    the problems' own once their changes are correlated; kept by increments on the ingest path)."""
    db_session.flush()
    total, still_open = db_session.execute(_COUNT, {"incident_id": incident.id}).one()
    incident.problem_count = int(total)
    incident.open_problem_count = int(still_open)


_COUNT = sa.select(
    sa.func.count(),
    sa.func.coalesce(
        sa.func.sum(sa.case((IncidentProblem.problem_state.in_(sorted(ENDED_STATES)), 0), else_=1)), 0
    ),
).where(IncidentProblem.incident_id == sa.bindparam("incident_id"))


def refresh(*, db_session: Session, incident: Incident) -> Incident:
    """Recompute the incident's picture from all its problems (after moves and merges); returns it."""
    db_session.flush()
    members = db_session.scalars(
        sa.select(Problem)
        .options(load_only(*PICTURE_COLUMNS))
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id)
        .order_by(Problem.start_time, Problem.id)
    ).all()
    incident.affected_entities = []
    incident.search_text = ""
    if members:
        first = members[0]
        incident.priority = first.priority
        incident.title = first.title or first.display_id or incident.title
        incident.started_at = facts_from(first).start_time or incident.started_at
    for problem in members:
        absorb(incident, problem, facts_from(problem))
    _count(db_session, incident)
    return incident


# -- resolving and reopening ------------------------------------------------------------------------


def maybe_resolve(changes: Changes, incident: Incident, *, why: str, actor: str = "system") -> None:
    """Resolve the incident when none of its problems is open any more."""
    if incident.status != OPEN or incident.merged_into_id is not None:
        return
    if incident.problem_count and incident.open_problem_count:
        return
    set_resolved(changes, incident, why=why, actor=actor)


def set_resolved(changes: Changes, incident: Incident, *, why: str, actor: str) -> None:
    """Resolve the incident (at its problems' last end when the system does it) and take it out of the
    candidate index."""
    db_session = changes.db_session
    db_session.flush()
    ends = db_session.scalar(
        sa.select(sa.func.max(Problem.end_time))
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id)
    )
    incident.status = RESOLVED
    incident.resolved_at = ends if ends is not None and actor == "system" else utcnow()
    incident.time_to_resolve_seconds = max(0.0, (incident.resolved_at - incident.started_at).total_seconds())
    changes.index.remove_incident(incident.id)
    changes.record(incident, "resolved", f"resolved: {why}", actor=actor)


def maybe_reopen(changes: Changes, incident: Incident, *, why: str, actor: str = "system") -> None:
    """Reopen a resolved incident that has an open problem again."""
    if incident.status != RESOLVED or incident.merged_into_id is not None or not incident.open_problem_count:
        return
    set_open(changes, incident, why=why, actor=actor)


def set_open(changes: Changes, incident: Incident, *, why: str, actor: str) -> None:
    """Open the incident again and put its problems back into the candidate index."""
    incident.status = OPEN
    incident.resolved_at = None
    incident.time_to_resolve_seconds = None
    changes.index.add_incident(incident)
    changes.record(incident, "reopened", f"reopened: {why}", actor=actor)


# -- merging ----------------------------------------------------------------------------------------


def merge_into(changes: Changes, *, target: Incident, source: Incident, actor: str, why: str) -> None:
    """Move every problem of ``source`` into ``target`` and leave ``source`` pointing at it."""
    db_session = changes.db_session
    db_session.flush()
    attachments = db_session.scalars(
        sa.select(IncidentProblem).where(IncidentProblem.incident_id == source.id)
    ).all()
    for attachment in attachments:
        attachment.incident_id = target.id
        if attachment.strategy == "new":
            attachment.strategy = "merge"
            attachment.reason = f"merged in from incident #{source.id}: {why}"
    db_session.flush()
    changes.index.move_incident(source.id, target)
    db_session.execute(
        sa.update(Incident).where(Incident.merged_into_id == source.id).values(merged_into_id=target.id)
    )
    for attachment in attachments:
        db_session.expire(attachment)
    changes.record(
        target,
        "merged",
        f"incident #{source.id} ({source.title}) merged in: {why}",
        actor=actor,
        details={"sourceIncidentId": source.id, "problemCount": len(attachments)},
    )
    changes.record(
        source,
        "merged_into",
        f"merged into incident #{target.id}: {why}",
        actor=actor,
        details={"targetIncidentId": target.id},
    )
    source.merged_into_id = target.id
    source.status = RESOLVED
    source.resolved_at = source.resolved_at or utcnow()
    source.problem_count = 0
    source.open_problem_count = 0
    refresh(db_session=db_session, incident=target)
