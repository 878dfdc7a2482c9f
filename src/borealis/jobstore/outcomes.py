"""How a job ends: done, failed, or queued again after a back-off; and the housekeeping of ended jobs.
Run in transactions the worker owns, and only by the worker that still holds the lease.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.jobstore.models import Job
from borealis.jobstore.table import DONE, FAILED, JOBS, QUEUED, RUNNING

MAX_ERROR_LENGTH = 4000


def _held(db_session: Session, job_id: int, owner: str) -> Job | None:
    return db_session.scalars(
        sa.select(Job)
        .where(Job.id == job_id, Job.state == RUNNING, Job.lease_owner == owner)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def complete(*, db_session: Session, job_id: int, owner: str, result: dict[str, Any] | None = None) -> bool:
    """Mark the job done, if ``owner`` still holds it; False when the lease was lost to another worker."""
    job = _held(db_session, job_id, owner)
    if job is None:
        return False
    job.result = result
    _finish(job, DONE, utcnow())
    db_session.flush()
    return True


def _finish(job: Job, state: str, now: datetime) -> None:
    """The attempt is over for good: the job leaves its worker in its last state."""
    job.state = state
    job.finished_at = now
    _release(job, now)


def _release(job: Job, now: datetime) -> None:
    job.updated_at = now
    job.lease_owner = None
    job.lease_expires_at = None


def fail(
    *,
    db_session: Session,
    job_id: int,
    owner: str,
    error: str,
    retry_at: datetime | None,
    count_attempt: bool = True,
) -> str | None:
    """Record a failed attempt: queued again at ``retry_at``, or ``failed`` when it is None or no attempt
    is left. ``count_attempt=False`` gives the attempt back (a rate limit, not a failure). Returns the
    outcome (``retry`` or ``failed``), or None when the lease was lost."""
    job = _held(db_session, job_id, owner)
    if job is None:
        return None
    now = utcnow()
    if not count_attempt and retry_at is not None and job.attempts > 0:
        job.attempts -= 1
    error = error[:MAX_ERROR_LENGTH]
    job.last_error = error
    _release(job, now)
    if retry_at is None or job.attempts >= job.max_attempts:
        _finish(job, FAILED, now)
        db_session.flush()
        return FAILED
    try:
        with db_session.begin_nested():
            job.state = QUEUED
            job.run_after = retry_at
            db_session.flush()
        return "retry"
    except IntegrityError:
        pass
    # A twin was queued while this one ran: it carries the work on, after this one's back-off.
    twin = db_session.scalars(
        sa.select(Job)
        .where(Job.kind == job.kind, Job.key == job.key, Job.state == QUEUED)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    job = db_session.get(Job, job_id, populate_existing=True)
    assert job is not None
    _finish(job, FAILED, now)
    if twin is not None:
        job.last_error = f"{error} (retried as job {twin.id})"[:MAX_ERROR_LENGTH]
        twin.run_after = max(twin.run_after, retry_at)
        twin.payload = {**(job.payload or {}), **(twin.payload or {})}
    else:
        job.last_error = error
    db_session.flush()
    return "retry" if twin is not None else FAILED


def fail_abandoned(*, db_session: Session, now: datetime | None = None) -> int:
    """Fail the jobs whose last attempt's worker died (lease expired, no attempt left). Returns how many."""
    now = now or utcnow()
    result = db_session.execute(
        sa.update(JOBS)
        .where(
            JOBS.c.state == RUNNING,
            JOBS.c.lease_expires_at <= now,
            JOBS.c.attempts >= JOBS.c.max_attempts,
        )
        .values(
            state=FAILED,
            last_error="the worker running the last attempt stopped before finishing (its lease expired)",
            lease_owner=None,
            lease_expires_at=None,
            finished_at=now,
            updated_at=now,
        )
    )
    return result.rowcount or 0


def prune(*, db_session: Session, done_before: datetime, failed_before: datetime) -> int:
    """Delete done jobs finished before ``done_before`` and failed ones before ``failed_before``."""
    result = db_session.execute(
        sa.delete(JOBS).where(
            sa.or_(
                sa.and_(JOBS.c.state == DONE, JOBS.c.finished_at < done_before),
                sa.and_(JOBS.c.state == FAILED, JOBS.c.finished_at < failed_before),
            )
        )
    )
    return result.rowcount or 0


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before the next attempt: ``base * 2**(attempt-1)`` capped, with jitter in its upper
    half so retries of many jobs spread out but never come sooner than half the nominal wait."""
    nominal = min(cap, base * (2 ** max(0, attempt - 1)))
    return nominal / 2 + (rng or random).uniform(0, nominal / 2)
