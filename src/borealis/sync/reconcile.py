"""Backfill and reconciliation: make the stored problems agree with ``GET /api/v2/problems``.

A run lists the problems active since its starting point (backfill: ``BOREALIS_BACKFILL_HOURS`` ago; a
sync: the previous successful sync, less an overlap for clock skew), asks one by one about stored open
problems the listing left out, and then writes in short transactions, holding none while Dynatrace
answers. A problem no webhook delivered is created; one whose RESOLVED never came is closed; any other
correction is applied. Each correction goes through intake as a notification with source ``api``, so
the history shows what came from where and webhook and API data for one PID land on one record. What
agrees with the record is counted as unchanged and stores nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.dynatrace import entities
from borealis.dynatrace.capped import api_client, retry_later
from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.errors import NeedsUserAction, ResourceNotFound, ScopeMissing, Transient
from borealis.dynatrace.models import Connection
from borealis.dynatrace.problem_details import from_api_problem
from borealis.dynatrace.problem_notification import PayloadRejected, ProblemNotification
from borealis.ingest import intake
from borealis.jobstore import JobContext, PermanentFailure
from borealis.problems import lifecycle
from borealis.problems.models import ENDED_STATES, Notification, Problem
from borealis.sync import service
from borealis.sync.models import SyncCounts

logger = logging.getLogger("borealis.sync")

BACKFILL = "backfill"
SYNC = "sync"
# Problems asked for from a point this much before the previous sync started (clock skew, late writes).
OVERLAP = timedelta(minutes=5)
# API problems written per transaction: short write locks on SQLite, bounded memory per statement.
APPLY_CHUNK = 100
# Stored open problems absent from the listing, asked about one by one per run.
MAX_LOOKUPS = 50
MAX_UNKNOWN_PIDS = 1000
# Cached entities are forgotten this long after they expired.
ENTITY_RETENTION = timedelta(days=1)
PROBLEMS_SCOPE = "problems.read"
# Problems per page of the listing (the API's maximum is 500).
PAGE_SIZE = 500


@dataclass(slots=True)
class Fetched:
    problems: list[dict[str, Any]]
    listed: int
    unknown: list[str]


# --- applying API problems -------------------------------------------------------------------------------


def apply_api_problems(
    *,
    db_session: Session,
    connection: Connection,
    problems: Sequence[dict[str, Any]],
    counts: SyncCounts,
    received_at: datetime | None = None,
    being_enriched: Collection[int] = (),
    follow_up_now: bool = False,
) -> list[int]:
    """Apply the API's view of these problems to the connection's records (in the caller's transaction)
    and count what changed in ``counts``; returns the ids of the problems created or corrected.
    ``being_enriched``: the problems this write is the enrichment of (they ask for no second one).
    Their follow-ups are left to the follow-up job, unless ``follow_up_now`` (see ``intake.ingest_many``)."""
    received_at = received_at or utcnow()
    parsed: dict[str, tuple[ProblemNotification, dict[str, Any]]] = {}
    for problem in problems:
        try:
            notification = from_api_problem(problem)
        except PayloadRejected:
            counts.unreadable += 1
            continue
        key = notification.pid_key
        if key is None or notification.is_test:
            counts.unreadable += 1
            continue
        parsed.setdefault(key, (notification, problem))  # pages can shift: the first sighting wins
    if not parsed:
        return []

    stored = _stored(db_session, connection.id, sorted(parsed))
    known = _known_hashes(
        db_session,
        [row["id"] for row in stored.values()],
        sorted({notification.content_hash for notification, _ in parsed.values()}),
    )
    items: list[intake.Accepted] = []
    before: list[dict[str, Any] | None] = []
    for key in sorted(parsed):
        notification, problem = parsed[key]
        row = stored.get(key)
        if row is not None and (
            (row["id"], notification.content_hash) in known or not service.differences(row, notification)
        ):
            counts.unchanged += 1
            continue
        raw = json.dumps(problem, separators=(",", ":"), default=str)
        items.append(intake.Accepted(connection, notification, "api", raw, received_at))
        before.append(row)
    if not items:
        return []

    changed: list[int] = []
    results = intake.ingest_many(
        db_session=db_session, items=items, follow_up_now=follow_up_now, being_enriched=being_enriched
    )
    after = _stored(db_session, connection.id, [row["pid_key"] for row in before if row is not None])
    for row, result in zip(before, results, strict=True):
        if result.outcome == lifecycle.CREATED or row is None:
            counts.created += 1
        elif row["state"] not in ENDED_STATES and result.state in ENDED_STATES:
            counts.closed += 1
        elif _corrected(row, after.get(row["pid_key"])):
            # The lifecycle decides what is newest: an API view that is not newer only fills gaps.
            counts.updated += 1
        else:
            counts.unchanged += 1
            continue
        if result.alert_id is not None:
            changed.append(result.alert_id)
    return changed


def _corrected(before: dict[str, Any], after: dict[str, Any] | None) -> bool:
    if after is None:
        return False
    return any(
        _entity_ids(before[name]) != _entity_ids(after[name])
        if name == "impacted_entities"
        else before[name] != after[name]
        for name in service.CORRECTABLE
    )


def _entity_ids(items: list[dict[str, Any]] | None) -> set[str]:
    return {item.get("entityId") for item in items or [] if item.get("entityId")}


def _stored(db_session: Session, connection_id: str, keys: list[str]) -> dict[str, dict[str, Any]]:
    table = Problem.__table__
    columns = [table.c[name] for name in service.CORRECTABLE]
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 400):
        statement = sa.select(*columns).where(
            table.c.connection_id == connection_id, table.c.pid_key.in_(keys[start : start + 400])
        )
        found.update({row["pid_key"]: dict(row) for row in db_session.execute(statement).mappings()})
    return found


def _known_hashes(db_session: Session, problem_ids: list[int], hashes: list[str]) -> set[tuple[int, str]]:
    table = Notification.__table__
    found: set[tuple[int, str]] = set()
    for start in range(0, len(problem_ids), 400):
        statement = sa.select(table.c.problem_id, table.c.content_hash).where(
            table.c.problem_id.in_(problem_ids[start : start + 400]), table.c.content_hash.in_(hashes)
        )
        found.update((row.problem_id, row.content_hash) for row in db_session.execute(statement))
    return found


# --- the job ---------------------------------------------------------------------------------------------


def run(ctx: JobContext, *, kind: str) -> dict[str, Any] | None:
    """Run a backfill or a sync for the job's connection; returns the job's result (or completes the
    job itself together with its last write)."""
    connection_id = ctx.payload.get("connectionId")
    if not isinstance(connection_id, str):
        raise PermanentFailure("the job names no connection (payload connectionId)")
    started = utcnow()
    with ctx.session(write=False) as db_session:
        connection = db_session.get(Connection, connection_id)
        if connection is None:
            raise PermanentFailure(f"connection {connection_id} no longer exists")
        state = service.get_state(db_session=db_session, connection_id=connection_id)
        cursor = state.cursor if state else None
        unknown = set(state.unknown_pids or []) if state else set()
        db_session.expunge(connection)

    if not connection.connected:
        with ctx.session(write=True) as db_session:
            ctx.complete(db_session, {"skipped": "Dynatrace is not connected"})
            db_session.commit()
        return None
    if PROBLEMS_SCOPE not in (connection.token_scopes or []):
        missing = ScopeMissing(PROBLEMS_SCOPE, purpose="reconcile problems with the API")
        return _finish(ctx, connection, kind=kind, started=started, failure=missing)

    if kind == BACKFILL or cursor is None:
        since = started - timedelta(hours=ctx.settings.backfill_hours)
    else:
        since = cursor - OVERLAP
    try:
        fetched = _fetch(ctx, connection, since=since, unknown=unknown)
    except NeedsUserAction as exc:
        # Retrying cannot help until the workspace acts; the next scheduled run tries again.
        return _finish(ctx, connection, kind=kind, started=started, failure=exc)
    except Transient as exc:
        _record_failure(ctx, connection, kind=kind, started=started, error=exc.message)
        raise retry_later(exc) from None

    counts = SyncCounts(not_found=len(fetched.unknown))
    for start in range(0, len(fetched.problems), APPLY_CHUNK):
        with ctx.session(write=True) as db_session:
            attached = db_session.get(Connection, connection.id)
            if attached is None:
                raise PermanentFailure(f"connection {connection.id} was deleted during the {kind}")
            apply_api_problems(
                db_session=db_session,
                connection=attached,
                problems=fetched.problems[start : start + APPLY_CHUNK],
                counts=counts,
            )
            db_session.commit()
    result = {
        **counts.model_dump(by_alias=True),
        "kind": kind,
        "since": since.isoformat(),
        "listed": fetched.listed,
        "finishedAt": utcnow().isoformat(),
    }
    logger.info(
        "%s finished",
        kind,
        extra={"connectionId": connection.id, "changes": counts.model_dump(by_alias=True)},
    )
    return _finish(ctx, connection, kind=kind, started=started, result=result, unknown=fetched.unknown)


def _fetch(ctx: JobContext, connection: Connection, *, since: datetime, unknown: set[str]) -> Fetched:
    """Everything the run needs from Dynatrace, with no database transaction held meanwhile."""
    with api_client(connection=connection, settings=ctx.settings, secret_box=ctx.secret_box) as client:
        listed = client.list_problems(from_=since, page_size=PAGE_SIZE)
        keys = set()
        for problem in listed:
            try:
                keys.add(from_api_problem(problem).pid_key)
            except PayloadRejected:
                continue
        with ctx.session(write=False) as db_session:
            missing = _open_not_listed(db_session, connection.id, keys | unknown)
        looked_up, not_found = _look_up(client, missing[:MAX_LOOKUPS])
    return Fetched(problems=listed + looked_up, listed=len(listed), unknown=not_found)


def _open_not_listed(
    db_session: Session, connection_id: str, listed: set[str | None]
) -> list[tuple[str, str]]:
    """(pid_key, id to ask the API with) of stored open problems the listing did not mention, least
    recently heard of first."""
    rows = db_session.execute(
        sa.select(Problem.pid_key, Problem.pid, Problem.api_problem_id)
        .where(Problem.connection_id == connection_id, Problem.state.not_in(sorted(ENDED_STATES)))
        .order_by(Problem.last_received_at, Problem.id)
    )
    return [(key, api_id or pid) for key, pid, api_id in rows if key not in listed]


def _look_up(
    client: DynatraceClient, missing: list[tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[str]]:
    found: list[dict[str, Any]] = []
    not_found: list[str] = []
    for key, problem_id in missing:
        try:
            found.append(client.get_problem(problem_id, fields=None))
        except ResourceNotFound:
            not_found.append(key)
    return found, not_found


def _finish(
    ctx: JobContext,
    connection: Connection,
    *,
    kind: str,
    started: datetime,
    result: dict[str, Any] | None = None,
    failure: NeedsUserAction | None = None,
    unknown: list[str] | None = None,
) -> None:
    """Record the run, keep the schedule, and complete the job in one transaction. A ``failure`` that
    retrying cannot cure (a missing scope, a rejected token, a wrong URL) ends the job too, with the
    reason."""
    with ctx.session(write=True) as db_session:
        state = service.record_run(
            db_session=db_session,
            connection_id=connection.id,
            kind=kind,
            started_at=started,
            result=result,
            error=failure.message if failure else None,
        )
        if unknown:
            state.unknown_pids = (list(state.unknown_pids or []) + unknown)[-MAX_UNKNOWN_PIDS:]
        attached = db_session.get(Connection, connection.id)
        if attached is not None and attached.connected:
            service.ensure_sync_schedule(db_session=db_session, connection=attached, settings=ctx.settings)
        entities.prune_entities(
            db_session=db_session, connection_id=connection.id, expired_before=utcnow() - ENTITY_RETENTION
        )
        if failure is not None:
            result = {
                "kind": kind,
                "error": failure.message,
                "errorCode": failure.code,
                "errorStatus": failure.status_code,
            }
        ctx.complete(db_session, result)
        db_session.commit()
    return None


def _record_failure(
    ctx: JobContext, connection: Connection, *, kind: str, started: datetime, error: str
) -> None:
    with ctx.session(write=True) as db_session:
        service.record_run(
            db_session=db_session, connection_id=connection.id, kind=kind, started_at=started, error=error
        )
        db_session.commit()
