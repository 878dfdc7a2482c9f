"""Incident operations: the workspace's correlation lock and settings, the manual actions (resolve, reopen,
merge, move a problem) and reading incidents.

Callers own the transaction: these functions flush, never commit. Everything that changes a workspace's
incidents first takes that workspace's correlation lock (``lock_workspace``), so concurrent deliveries are
correlated one at a time and a storm ends like the same problems arriving one by one. Where a new
problem goes is ``placement``'s business; how an incident changes, whoever changes it, is ``changes``'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, load_only

from borealis.audit import service as audit
from borealis.audit.models import Actor
from borealis.db import utcnow
from borealis.errors import Conflict, InvalidInput, NotFound
from borealis.incidents.changes import Changes, merge_into, record_event, refresh, set_open, set_resolved
from borealis.incidents.correlation import CorrelationSettings
from borealis.incidents.index import facts_from, keys_for
from borealis.incidents.models import (
    OPEN,
    RESOLVED,
    CorrelationSettingsRow,
    Incident,
    IncidentEvent,
    IncidentProblem,
)
from borealis.problems.models import Problem
from borealis.workspaces.models import Workspace

# -- locking and settings ---------------------------------------------------------------------------


def lock_workspace(*, db_session: Session, workspace_id: str) -> None:
    """Serialize correlation and incident changes per workspace until the transaction ends.

    PostgreSQL: a ``FOR NO KEY UPDATE`` lock on the workspace's row (it does not block inserts that merely
    reference the workspace). SQLite: writers already hold the database write lock from BEGIN IMMEDIATE.
    """
    if db_session.get_bind().dialect.name == "postgresql":
        db_session.execute(
            sa.select(Workspace.id).where(Workspace.id == workspace_id).with_for_update(key_share=True)
        )


def get_settings(*, db_session: Session, workspace_id: str) -> CorrelationSettings:
    """The workspace's correlation settings, or the defaults when they never changed them."""
    row = db_session.get(CorrelationSettingsRow, workspace_id)
    return row.to_settings() if row is not None else CorrelationSettings()


def put_settings(
    *, db_session: Session, workspace_id: str, settings: CorrelationSettings, actor: Actor
) -> CorrelationSettings:
    """Store the workspace's correlation settings; returns them as stored."""
    before = get_settings(db_session=db_session, workspace_id=workspace_id)
    row = db_session.get(CorrelationSettingsRow, workspace_id)
    if row is None:
        row = CorrelationSettingsRow(workspace_id=workspace_id)
        db_session.add(row)
    changed = {}
    for name in CorrelationSettings.__dataclass_fields__:
        setattr(row, name, getattr(settings, name))
        if getattr(before, name) != getattr(settings, name):
            changed[name] = {"from": getattr(before, name), "to": getattr(settings, name)}
    if changed:
        audit.record(
            db_session=db_session,
            workspace_id=workspace_id,
            actor=actor,
            action="settings.correlation_changed",
            details=changed,
        )
    db_session.flush()
    return row.to_settings()


# -- manual actions ---------------------------------------------------------------------------------


def _require_active(incident: Incident) -> None:
    if incident.merged_into_id is not None:
        raise Conflict(
            f"incident {incident.id} was merged into incident {incident.merged_into_id}; act on that one"
        )


def resolve(*, db_session: Session, incident: Incident, by: str) -> Incident:
    """Resolve the incident by hand (open problems stay as Dynatrace reports them); returns it."""
    lock_workspace(db_session=db_session, workspace_id=incident.workspace_id)
    db_session.refresh(incident)
    _require_active(incident)
    if incident.status != RESOLVED:
        incident.manual = True
        set_resolved(Changes.of(db_session, by=by), incident, why="resolved by hand", actor="user")
    db_session.flush()
    return incident


def reopen(*, db_session: Session, incident: Incident, by: str) -> Incident:
    """Reopen the incident by hand, so related new problems join it again; returns it."""
    lock_workspace(db_session=db_session, workspace_id=incident.workspace_id)
    db_session.refresh(incident)
    _require_active(incident)
    if incident.status != OPEN:
        incident.manual = True
        set_open(Changes.of(db_session, by=by), incident, why="reopened by hand", actor="user")
    db_session.flush()
    return incident


def merge(*, db_session: Session, target: Incident, source_incident_id: int, by: str) -> Incident:
    """Fold another incident of the same workspace into ``target``; returns ``target``."""
    lock_workspace(db_session=db_session, workspace_id=target.workspace_id)
    db_session.refresh(target)
    _require_active(target)
    if source_incident_id == target.id:
        raise InvalidInput("sourceIncidentId is this incident; give the id of the incident to merge into it")
    source = get(db_session=db_session, workspace_id=target.workspace_id, incident_id=source_incident_id)
    if source is None:
        raise NotFound(f"incident {source_incident_id} does not exist; list incidents with GET /incidents")
    _require_active(source)
    target.manual = True
    changes = Changes.of(db_session, by=by)
    merge_into(changes, target=target, source=source, actor="user", why="merged by hand")
    _settle_after_manual(changes, target, why=f"incident #{source.id} merged in")
    db_session.flush()
    return target


def move_problem(
    *, db_session: Session, incident: Incident, problem_id: int, target_incident_id: int | None, by: str
) -> Incident:
    """Move one problem out of ``incident`` into another incident, or a new one when the target is
    None; returns the incident it now belongs to."""
    lock_workspace(db_session=db_session, workspace_id=incident.workspace_id)
    db_session.refresh(incident)
    _require_active(incident)
    attachment = db_session.get(IncidentProblem, problem_id)
    if attachment is None or attachment.incident_id != incident.id:
        raise NotFound(
            f"alert {problem_id} is not in incident {incident.id}; see GET /incidents/{incident.id}"
        )
    problem = db_session.get(Problem, problem_id)
    display = problem.display_id or f"PID {problem.pid}"
    if target_incident_id is None:
        target = Incident(
            workspace_id=incident.workspace_id,
            title=problem.title or display,
            status=OPEN,
            priority=problem.priority,
            started_at=facts_from(problem).start_time or utcnow(),
            affected_entities=[],
            manual=True,
        )
        db_session.add(target)
        db_session.flush()
        record_event(
            db_session=db_session,
            incident=target,
            kind="opened",
            actor="user",
            user_id=by,
            problem_id=problem_id,
            message=f"opened by hand for {display}, moved out of incident #{incident.id}",
        )
    else:
        if target_incident_id == incident.id:
            raise InvalidInput(f"alert {problem_id} is already in incident {incident.id}")
        target = get(
            db_session=db_session, workspace_id=incident.workspace_id, incident_id=target_incident_id
        )
        if target is None:
            raise NotFound(
                f"incident {target_incident_id} does not exist; list incidents with GET /incidents"
            )
        _require_active(target)
        target.manual = True
    incident.manual = True
    attachment.incident_id = target.id
    attachment.strategy = "manual"
    attachment.score = None
    attachment.reason = f"moved by hand from incident #{incident.id}"
    attachment.related_problem_id = None
    db_session.flush()
    record_event(
        db_session=db_session,
        incident=incident,
        kind="problem_moved_out",
        actor="user",
        user_id=by,
        problem_id=problem_id,
        message=f"{display} moved by hand to incident #{target.id}",
        details={"targetIncidentId": target.id},
    )
    record_event(
        db_session=db_session,
        incident=target,
        kind="problem_moved_in",
        actor="user",
        user_id=by,
        problem_id=problem_id,
        message=f"{display} moved by hand from incident #{incident.id}",
        details={"sourceIncidentId": incident.id},
    )
    refresh(db_session=db_session, incident=incident)
    refresh(db_session=db_session, incident=target)
    changes = Changes.of(db_session, by=by)
    if target.status == OPEN:
        changes.index.add_problem(incident.workspace_id, problem_id, target.id, keys_for(facts_from(problem)))
    else:
        changes.index.remove_problem(problem_id)
    if incident.status == OPEN and not incident.open_problem_count:
        why = "no problems left" if not incident.problem_count else "all its remaining problems have ended"
        set_resolved(changes, incident, why=why, actor="user")
    _settle_after_manual(changes, target, why=f"{display} moved in")
    db_session.flush()
    return target


def _settle_after_manual(changes: Changes, incident: Incident, *, why: str) -> None:
    """An incident that gained an open problem by hand is open again."""
    if incident.status == RESOLVED and incident.open_problem_count:
        set_open(changes, incident, why=why, actor="user")


# -- reading ----------------------------------------------------------------------------------------


def get(*, db_session: Session, workspace_id: str, incident_id: int) -> Incident | None:
    """The workspace's incident with this id, or None (another workspace's incident is None too)."""
    return db_session.scalar(
        sa.select(Incident).where(Incident.id == incident_id, Incident.workspace_id == workspace_id)
    )


@dataclass(frozen=True)
class IncidentFilter:
    status: str | None = None
    priority: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    # A member's id, or NOBODY for the unassigned ones.
    assignee: str | None = None
    acknowledged: bool | None = None


NOBODY = "none"


def list_incidents(
    *, db_session: Session, workspace_id: str, filters: IncidentFilter, limit: int, offset: int
) -> tuple[list[Incident], int]:
    """The workspace's incidents (merged-away ones left out), newest start first, and how many match."""
    conditions = [Incident.workspace_id == workspace_id, Incident.merged_into_id.is_(None)]
    if filters.status:
        conditions.append(Incident.status == filters.status)
    if filters.priority:
        conditions.append(Incident.priority == filters.priority)
    if filters.since:
        conditions.append(Incident.started_at >= filters.since)
    if filters.until:
        conditions.append(Incident.started_at <= filters.until)
    if filters.q:
        pattern = "%" + filters.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(Incident.search_text.like(pattern, escape="\\"))
    if filters.assignee == NOBODY:
        conditions.append(Incident.assignee_id.is_(None))
    elif filters.assignee:
        conditions.append(Incident.assignee_id == filters.assignee)
    if filters.acknowledged is not None:
        acknowledged = Incident.acknowledged_at.is_not(None)
        conditions.append(acknowledged if filters.acknowledged else sa.not_(acknowledged))
    total = db_session.scalar(sa.select(sa.func.count()).select_from(Incident).where(*conditions)) or 0
    items = db_session.scalars(
        sa.select(Incident)
        .where(*conditions)
        .order_by(Incident.started_at.desc(), Incident.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(items), int(total)


def members(*, db_session: Session, incident: Incident) -> list[tuple[IncidentProblem, Problem]]:
    """The incident's problems with their attachments, earliest Dynatrace start first."""
    rows = db_session.execute(
        sa.select(IncidentProblem, Problem)
        .options(
            load_only(
                Problem.id,
                Problem.display_id,
                Problem.pid,
                Problem.title,
                Problem.state,
                Problem.severity,
                Problem.priority,
                Problem.problem_url,
                Problem.root_cause_entity_id,
                Problem.start_time,
                Problem.end_time,
            )
        )
        .join(Problem, Problem.id == IncidentProblem.problem_id)
        .where(IncidentProblem.incident_id == incident.id)
        .order_by(Problem.start_time, Problem.id)
    )
    return [(attachment, problem) for attachment, problem in rows]


def timeline(*, db_session: Session, incident: Incident) -> list[IncidentEvent]:
    """The incident's events, oldest first."""
    return list(
        db_session.scalars(
            sa.select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    )


def incident_ids_for(*, db_session: Session, problem_ids: Iterable[int]) -> dict[int, int]:
    """Problem id -> incident id, for the alerts list."""
    ids = list(problem_ids)
    if not ids:
        return {}
    rows = db_session.execute(
        sa.select(IncidentProblem.problem_id, IncidentProblem.incident_id).where(
            IncidentProblem.problem_id.in_(ids)
        )
    )
    return dict(rows.all())
