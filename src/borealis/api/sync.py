"""``POST /dynatrace/sync`` (reconcile now) and ``GET /dynatrace/alerts/{id}/enrichment``."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request

from borealis.api.deps import CurrentCaller, DbSession, Responder, get_database
from borealis.db import Database, utcnow
from borealis.dynatrace import entities
from borealis.dynatrace import service as dynatrace_service
from borealis.dynatrace.errors import NotConnected
from borealis.errors import BorealisError, NotFound
from borealis.jobstore import enqueue
from borealis.jobstore.models import Job, JobState
from borealis.problems import service as problems_service
from borealis.schemas import API_ERRORS, RowId, error_responses
from borealis.sync import service
from borealis.sync.models import EnrichmentRead, NotFetchedRead, SyncRead

router = APIRouter(prefix="/dynatrace", tags=["sync"], responses=API_ERRORS)

# How long POST /dynatrace/sync waits for the job before answering that it is still on its way.
SYNC_WAIT_SECONDS = 120.0
_POLL_SECONDS = 0.1


class SyncFailed(BorealisError):
    """The sync ran but Dynatrace did not let it finish; the message says why."""

    status_code = 502
    code = "dynatrace_sync_failed"


class SyncRefused(BorealisError):
    """Dynatrace refused the sync for a reason retrying cannot cure (``NeedsUserAction``: a missing scope, a
    rejected token, a wrong URL): answered with that error's own status and code."""

    def __init__(self, message: str, *, status_code: int, code: str, job_id: int) -> None:
        super().__init__(message, details={"jobId": job_id})
        self.status_code = status_code
        self.code = code


class SyncPending(BorealisError):
    """The sync did not finish while the request waited (retrying, or no worker running)."""

    status_code = 503
    code = "dynatrace_sync_pending"


@router.post("/sync", response_model=SyncRead, responses=error_responses(404, 409, 502, 503, 504))
def sync_now(request: Request, caller: Responder, db_session: DbSession) -> SyncRead:
    """Reconcile with Dynatrace now and answer when it has finished, with what it changed: problems
    created (no webhook delivered them), closed (their RESOLVED never came), updated, unchanged.

    It runs as the connection's sync job, so it never overlaps a scheduled sync or the backfill."""
    connection = dynatrace_service.get(db_session=db_session, workspace_id=caller.workspace_id)
    if connection is None or not connection.connected:
        raise NotConnected("Dynatrace is not connected; connect with POST /dynatrace/connect, then sync")
    job = enqueue(
        db_session=db_session,
        kind=dynatrace_service.SYNC_JOB,
        workspace_id=caller.workspace_id,
        key=dynatrace_service.job_key(connection),
        payload={"connectionId": connection.id},
    )
    job_id, started_before = job.id, job.started_at
    backing_off = job.last_error is not None and job.run_after > utcnow()
    db_session.commit()
    if backing_off:
        # The sync is already waiting to retry after an error; asking again does not cut the wait short.
        raise _retrying(job)
    db_session.close()  # no transaction (SQLite's write lock) held while the worker runs the sync
    job = _wait(get_database(request), job_id, started_before)
    return _answer(job)


def _wait(database: Database, job_id: int, started_before: datetime | None) -> Job:
    deadline = time.monotonic() + SYNC_WAIT_SECONDS
    while True:
        with database.session() as db_session:
            job = db_session.get(Job, job_id)
            if job is None:
                raise NotFound(f"the sync job {job_id} is gone (pruned); run the sync again")
            db_session.expunge(job)
        if job.state in (JobState.DONE.value, JobState.FAILED.value):
            return job
        if job.state == JobState.QUEUED.value and job.started_at != started_before:
            raise _retrying(job)
        if time.monotonic() >= deadline:
            raise SyncPending(
                f"the sync (job {job.id}) did not finish within {SYNC_WAIT_SECONDS:g} s; it is "
                f"{job.state}: follow it with GET /jobs/{job.id}. If it stays queued, no worker is running: "
                "`borealis serve` runs workers unless started with --no-workers; `borealis worker` runs them "
                "alone",
                details={"jobId": job.id},
            )
        time.sleep(_POLL_SECONDS)


def _retrying(job: Job) -> SyncPending:
    return SyncPending(
        f"the sync could not finish: {job.last_error}; it retries at {job.run_after:%Y-%m-%d %H:%M:%S} UTC "
        f"(job {job.id}, see GET /jobs/{job.id})",
        details={"jobId": job.id, "retryAt": job.run_after.isoformat()},
    )


def _answer(job: Job) -> SyncRead:
    result: dict[str, Any] = job.result or {}
    if job.state == JobState.FAILED.value:
        raise SyncFailed(f"the sync failed: {job.last_error}", details={"jobId": job.id})
    if "error" in result:
        raise SyncRefused(
            str(result["error"]),
            status_code=int(result.get("errorStatus") or SyncFailed.status_code),
            code=str(result.get("errorCode") or SyncFailed.code),
            job_id=job.id,
        )
    if "skipped" in result:
        raise NotConnected(f"the sync did not run: {result['skipped']}; connect with POST /dynatrace/connect")
    return SyncRead.model_validate({**result, "jobId": job.id})


@router.get("/alerts/{alert_id}/enrichment", response_model=EnrichmentRead, responses=error_responses(404))
def get_enrichment(alert_id: RowId, caller: CurrentCaller, db_session: DbSession) -> EnrichmentRead:
    """What the API added to one alert: its details (evidence, impact analysis, comments), the cached
    entities with their relationships, and what could not be fetched and why."""
    problem = problems_service.get_in_workspace(
        db_session=db_session, workspace_id=caller.workspace_id, problem_id=alert_id
    )
    if problem is None:
        raise NotFound(f"no alert {alert_id} among yours; list them with GET /dynatrace/alerts")
    record = service.get_enrichment(db_session=db_session, problem_id=problem.id)
    if record is None:
        return EnrichmentRead(alert_id=problem.id, status="pending")
    documents = entities.cached_documents(
        db_session=db_session, connection_id=problem.connection_id, entity_ids=record.entity_ids or []
    )
    return EnrichmentRead(
        alert_id=problem.id,
        status=record.status,
        fetched_at=record.fetched_at,
        details=record.details,
        entities=documents,
        not_fetched=[NotFetchedRead.model_validate(item) for item in record.not_fetched or []],
    )
