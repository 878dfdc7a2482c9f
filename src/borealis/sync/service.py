"""Sync operations in the caller's transaction: requesting enrichment, the entity cache, enrichment
records, sync state, and what counts as a correction from the API. No network here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from borealis import jobstore
from borealis.config import Settings
from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.problem_notification import ProblemNotification
from borealis.dynatrace.service import SYNC_JOB, job_key
from borealis.jobstore.models import JobSchedule
from borealis.jobstore.schedules import get_schedule
from borealis.problems.models import ENDED_STATES
from borealis.sync.models import (
    ProblemEnrichment,
    SyncState,
    SyncStateRead,
)

ENRICH_JOB = "problem.enrich"
# A burst of deliveries about one problem folds into one queued job, fetched once after this pause.
ENRICH_DEBOUNCE = timedelta(seconds=3)
ENRICH_MAX_ATTEMPTS = 4


# --- enrichment requests -------------------------------------------------------------------------------


def enrichment_key(problem_id: int) -> str:
    return f"problem:{problem_id}"


def wants_enrichment(state: str) -> bool:
    """Whether a created or changed problem needs fetching: not once it has ended. (A problem's own
    enrichment asks for no second one: ingest records no such request; see ``being_enriched``.)"""
    return state not in ENDED_STATES


def request_enrichments(*, db_session: Session, problems: Sequence[tuple[int, str, str]]) -> None:
    """Queue an enrichment job for each (problem id, workspace id, state) still open, folded with any queued
    one (so a burst makes one fetch): what one batch of follow-ups changed, in a few statements."""
    run_after = utcnow() + ENRICH_DEBOUNCE
    requests = [
        jobstore.JobRequest(
            key=enrichment_key(problem_id),
            workspace_id=workspace_id,
            payload={"problemId": problem_id},
            run_after=run_after,
            max_attempts=ENRICH_MAX_ATTEMPTS,
        )
        for problem_id, workspace_id, state in problems
        if wants_enrichment(state)
    ]
    jobstore.enqueue_many(db_session=db_session, kind=ENRICH_JOB, requests=requests)


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
    return jobstore.ensure_schedule(
        db_session=db_session,
        kind=SYNC_JOB,
        key=job_key(connection),
        workspace_id=connection.workspace_id,
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


def status_fields(*, db_session: Session, workspace_id: str, connection: Connection | None) -> dict[str, Any]:
    """The ``sync`` and ``jobs`` fields of ``/dynatrace/status``."""
    return {
        "sync": state_read(db_session=db_session, connection=connection) if connection else None,
        "jobs": jobstore.counts_by_state(db_session=db_session, workspace_id=workspace_id),
    }
