"""Sync operations in the caller's transaction: requesting enrichment, the entity cache, enrichment
records, sync state, and what counts as a correction from the API. No network here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from borealis import jobs
from borealis.config import Settings
from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.problem_notification import ProblemNotification
from borealis.dynatrace.service import SYNC_JOB, job_key
from borealis.jobs.models import Job, JobSchedule
from borealis.jobs.schedules import get_schedule
from borealis.problems.models import ENDED_STATES
from borealis.sync import topology
from borealis.sync.models import (
    CachedEntity,
    EntityRelation,
    ProblemEnrichment,
    SyncState,
    SyncStateRead,
)

ENRICH_JOB = "problem.enrich"
# A burst of deliveries about one problem folds into one queued job, fetched once after this pause.
ENRICH_DEBOUNCE = timedelta(seconds=3)
ENRICH_MAX_ATTEMPTS = 4
# How long a fetched entity (and the relationships it lists) is trusted before it is fetched again.
ENTITY_TTL = timedelta(hours=6)
# Relationships kept per entity: a host can list thousands of processes.
MAX_RELATIONS_PER_ENTITY = 500
_QUIET = "borealis.sync.enriching"
_CHUNK = 400

_entities = CachedEntity.__table__
_relations = EntityRelation.__table__

# Correlation (a lower layer) reads the entity cache through this source, in every process that
# ingests: intake imports this module.
topology.install()


# --- enrichment requests -------------------------------------------------------------------------------


def enrichment_key(problem_id: int) -> str:
    return f"problem:{problem_id}"


def wants_enrichment(*, db_session: Session, problem_id: int, state: str) -> bool:
    """Whether a created or changed problem needs fetching: not when it has ended, nor when this
    transaction is the enrichment of that very problem."""
    return state not in ENDED_STATES and problem_id not in db_session.info.get(_QUIET, ())


def request_enrichment(*, db_session: Session, problem_id: int, user_id: str, state: str) -> Job | None:
    """The queued enrichment job for an open problem that was created or changed (folded with any
    queued one, so a burst makes one fetch), or None when nothing needs fetching (``wants_enrichment``)."""
    if not wants_enrichment(db_session=db_session, problem_id=problem_id, state=state):
        return None
    return jobs.enqueue(
        db_session=db_session,
        kind=ENRICH_JOB,
        user_id=user_id,
        key=enrichment_key(problem_id),
        payload={"problemId": problem_id},
        run_after=utcnow() + ENRICH_DEBOUNCE,
        max_attempts=ENRICH_MAX_ATTEMPTS,
    )


def request_enrichments(*, db_session: Session, problems: Sequence[tuple[int, str, str]]) -> None:
    """``request_enrichment`` for many (problem id, user id, state) at once: what one webhook batch
    changed, in a few statements."""
    run_after = utcnow() + ENRICH_DEBOUNCE
    requests = [
        jobs.JobRequest(
            key=enrichment_key(problem_id),
            user_id=user_id,
            payload={"problemId": problem_id},
            run_after=run_after,
            max_attempts=ENRICH_MAX_ATTEMPTS,
        )
        for problem_id, user_id, state in problems
        if wants_enrichment(db_session=db_session, problem_id=problem_id, state=state)
    ]
    jobs.enqueue_many(db_session=db_session, kind=ENRICH_JOB, requests=requests)


@contextmanager
def enriching(db_session: Session, problem_id: int) -> Iterator[None]:
    """While enrichment writes API data to its own problem, that write asks for no second enrichment."""
    quiet: set[int] = db_session.info.setdefault(_QUIET, set())
    quiet.add(problem_id)
    try:
        yield
    finally:
        quiet.discard(problem_id)


# --- the entity cache ----------------------------------------------------------------------------------


def _insert(db_session: Session) -> Any:
    return postgresql.insert if db_session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def cached_entities(
    *, db_session: Session, connection_id: str, entity_ids: Iterable[str], now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """The unexpired cached documents of these entities, by entity id (RCA and enrichment read these
    instead of calling ``GET /api/v2/entities/{id}`` again)."""
    now = now or utcnow()
    wanted = sorted(set(entity_ids))
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(wanted):
        rows = db_session.execute(
            sa.select(_entities.c.entity_id, _entities.c.document).where(
                _entities.c.connection_id == connection_id,
                _entities.c.entity_id.in_(chunk),
                _entities.c.expires_at > now,
            )
        )
        for entity_id, document in rows:
            found[entity_id] = document
    return found


def cached_documents(
    *, db_session: Session, connection_id: str, entity_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The cached documents of these entities in the order given, expired ones included (for showing)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(entity_ids))):
        rows = db_session.execute(
            sa.select(_entities.c.entity_id, _entities.c.document).where(
                _entities.c.connection_id == connection_id, _entities.c.entity_id.in_(chunk)
            )
        )
        for entity_id, document in rows:
            found[entity_id] = document
    return [found[entity_id] for entity_id in dict.fromkeys(entity_ids) if entity_id in found]


def relations_of(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(from, relation, to)`` edges an entity document lists: its fromRelationships point away from
    it, its toRelationships point at it."""
    entity_id = document.get("entityId")
    if not isinstance(entity_id, str) or not entity_id:
        return []
    edges: list[tuple[str, str, str]] = []
    for key, outward in (("fromRelationships", True), ("toRelationships", False)):
        relationships = document.get(key)
        if not isinstance(relationships, dict):
            continue
        for relation, targets in relationships.items():
            if not isinstance(relation, str) or not isinstance(targets, list):
                continue
            for target in targets:
                other = target.get("id") if isinstance(target, dict) else None
                if not isinstance(other, str) or not other or len(other) > 200 or len(relation) > 200:
                    continue
                edges.append((entity_id, relation, other) if outward else (other, relation, entity_id))
    return sorted(set(edges))[:MAX_RELATIONS_PER_ENTITY]


def store_entities(
    *,
    db_session: Session,
    connection_id: str,
    documents: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
    ttl: timedelta = ENTITY_TTL,
) -> int:
    """Cache entity documents (replacing what was cached for them, relationships included); returns
    how many were stored."""
    now = now or utcnow()
    expires_at = now + ttl
    by_id: dict[str, Mapping[str, Any]] = {}
    for document in documents:
        entity_id = document.get("entityId")
        if isinstance(entity_id, str) and 0 < len(entity_id) <= 200:
            by_id[entity_id] = document
    if not by_id:
        return 0
    insert = _insert(db_session)
    for entity_id in sorted(by_id):  # one order for every writer
        document = dict(by_id[entity_id])
        values = {
            "entity_type": _text(document.get("type"), 200) or entity_id.rsplit("-", 1)[0],
            "display_name": _text(document.get("displayName"), None),
            "document": document,
            "fetched_at": now,
            "expires_at": expires_at,
        }
        db_session.execute(
            insert(_entities)
            .values(connection_id=connection_id, entity_id=entity_id, **values)
            .on_conflict_do_update(index_elements=["connection_id", "entity_id"], set_=values)
        )
    ids = sorted(by_id)
    for chunk in _chunks(ids):
        db_session.execute(
            sa.delete(_relations).where(
                _relations.c.connection_id == connection_id, _relations.c.source_entity_id.in_(chunk)
            )
        )
    rows = [
        {
            "connection_id": connection_id,
            "source_entity_id": entity_id,
            "from_entity_id": left,
            "relation": relation,
            "to_entity_id": right,
            "expires_at": expires_at,
        }
        for entity_id in ids
        for left, relation, right in relations_of(by_id[entity_id])
    ]
    if rows:
        db_session.execute(_relations.insert(), rows)
    return len(by_id)


def prune_entities(*, db_session: Session, connection_id: str, expired_before: datetime) -> int:
    """Forget cached entities (and their relationships) that expired before the given time."""
    db_session.execute(
        sa.delete(_relations).where(
            _relations.c.connection_id == connection_id, _relations.c.expires_at < expired_before
        )
    )
    result = db_session.execute(
        sa.delete(_entities).where(
            _entities.c.connection_id == connection_id, _entities.c.expires_at < expired_before
        )
    )
    return result.rowcount or 0


def _text(value: Any, limit: int | None) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if limit is None else value[:limit]


# --- enrichment records ----------------------------------------------------------------------------------


def get_enrichment(*, db_session: Session, problem_id: int) -> ProblemEnrichment | None:
    """What enrichment stored for the problem, or None before its first run."""
    return db_session.get(ProblemEnrichment, problem_id)


def save_enrichment(
    *,
    db_session: Session,
    problem_id: int,
    connection_id: str,
    details: dict[str, Any] | None,
    entity_ids: list[str],
    not_fetched: list[dict[str, Any]],
    status: str,
    now: datetime | None = None,
) -> ProblemEnrichment:
    """Store one enrichment run (``status``: complete, partial or none); details fetched earlier are
    kept when this run could not refresh them. Returns the record."""
    now = now or utcnow()
    record = db_session.get(ProblemEnrichment, problem_id, with_for_update=True)
    if record is None:
        record = ProblemEnrichment(problem_id=problem_id, connection_id=connection_id, runs=0, created_at=now)
        db_session.add(record)
    if details is not None:
        record.details = details
    record.entity_ids = entity_ids
    record.not_fetched = not_fetched
    record.status = status
    record.fetched_at = now
    record.runs = (record.runs or 0) + 1
    record.updated_at = now
    db_session.flush()
    return record


# --- what the API corrects -------------------------------------------------------------------------------

# Problem columns read to decide whether the API's view of a problem corrects the record.
CORRECTABLE = (
    "id",
    "pid_key",
    "state",
    "display_id",
    "title",
    "severity",
    "impact",
    "root_cause_entity_id",
    "impacted_entities",
)


def differences(problem: Mapping[str, Any], notification: ProblemNotification) -> list[str]:
    """The fields in which the API's view of a problem corrects the stored record (empty: nothing to
    correct). Only what the API states counts; an ended problem stays ended whichever end it was."""
    found: list[str] = []
    state = notification.state
    both_ended = state in ENDED_STATES and problem["state"] in ENDED_STATES
    if state and state != problem["state"] and not both_ended:
        found.append("state")
    for name in ("display_id", "title", "severity", "impact"):
        value = getattr(notification, name)
        if value and value != problem[name]:
            found.append(name)
    root = (notification.root_cause_entity or {}).get("entityId")
    if root and root != problem["root_cause_entity_id"]:
        found.append("root_cause_entity_id")
    impacted = {item.get("entityId") for item in notification.impacted_entities or [] if item.get("entityId")}
    stored = {item.get("entityId") for item in problem["impacted_entities"] or [] if item.get("entityId")}
    if impacted and impacted != stored:
        found.append("impacted_entities")
    return found


# --- sync state and schedule -----------------------------------------------------------------------------


def get_state(*, db_session: Session, connection_id: str) -> SyncState | None:
    """The connection's sync state, or None before its first run."""
    return db_session.get(SyncState, connection_id)


def record_run(
    *,
    db_session: Session,
    connection_id: str,
    kind: str,
    started_at: datetime,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> SyncState:
    """Record a finished run: with a result it succeeded (the cursor moves to its start), with an error
    it did not (the cursor stays, so the next run covers the gap)."""
    state = db_session.get(SyncState, connection_id, with_for_update=True)
    if state is None:
        state = SyncState(connection_id=connection_id, runs=0)
        db_session.add(state)
    now = utcnow()
    state.last_run_at = now
    state.last_run_kind = kind
    state.runs = (state.runs or 0) + 1
    state.updated_at = now
    if error is None:
        state.cursor = started_at if state.cursor is None else max(state.cursor, started_at)
        state.last_success_at = now
        state.last_result = result
        state.last_error = None
        if kind == "backfill":
            state.backfilled_at = now
    else:
        state.last_error = error
    db_session.flush()
    return state


def ensure_sync_schedule(*, db_session: Session, connection: Connection, settings: Settings) -> JobSchedule:
    """The connection's periodic sync, every ``BOREALIS_SYNC_INTERVAL`` seconds from now."""
    return jobs.ensure_schedule(
        db_session=db_session,
        kind=SYNC_JOB,
        key=job_key(connection),
        user_id=connection.user_id,
        interval_seconds=settings.sync_interval,
        payload={"connectionId": connection.id},
        first_run_at=utcnow() + timedelta(seconds=settings.sync_interval),
    )


def state_read(*, db_session: Session, connection: Connection) -> SyncStateRead:
    """The sync state and the next scheduled run, as ``/dynatrace/status`` shows them."""
    state = get_state(db_session=db_session, connection_id=connection.id)
    schedule = get_schedule(db_session=db_session, kind=SYNC_JOB, key=job_key(connection))
    return SyncStateRead(
        last_sync_at=state.last_run_at if state else None,
        last_sync_kind=state.last_run_kind if state else None,
        last_success_at=state.last_success_at if state else None,
        last_result=state.last_result if state else None,
        last_error=state.last_error if state else None,
        backfilled_at=state.backfilled_at if state else None,
        next_run_at=schedule.next_run_at if schedule and connection.connected else None,
        interval_seconds=schedule.interval_seconds if schedule and connection.connected else None,
    )


def status_fields(*, db_session: Session, user_id: str, connection: Connection | None) -> dict[str, Any]:
    """The ``sync`` and ``jobs`` fields of ``/dynatrace/status``."""
    return {
        "sync": state_read(db_session=db_session, connection=connection) if connection else None,
        "jobs": jobs.counts_by_state(db_session=db_session, user_id=user_id),
    }
