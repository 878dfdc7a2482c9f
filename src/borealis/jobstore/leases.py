"""The worker's side of a job's life before its outcome: claiming under a lease, renewing it, giving it
back. Run in transactions the worker owns.

- one running job per key: a partial unique index, and the claim skips keys that are running;
- a claim is one statement: ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`` on PostgreSQL,
  the same conditional UPDATE under SQLite's write lock;
- a lease that runs out makes the job claimable again (same row, next attempt).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.jobstore.models import Job
from borealis.jobstore.table import JOBS, QUEUED, RUNNING


def has_ready(*, db_session: Session, kinds: Sequence[str], now: datetime | None = None) -> bool:
    """Whether any job of these kinds could be claimed now (a cheap read before taking a write lock)."""
    if not kinds:
        return False
    now = now or utcnow()
    return db_session.scalar(sa.select(sa.literal(1)).where(_claimable(kinds, now)).limit(1)) is not None


def _claimable(kinds: Sequence[str], now: datetime) -> sa.ColumnElement[bool]:
    other = JOBS.alias("other")
    # A literal state lets both planners use the partial index on running keys.
    key_busy = sa.exists().where(
        other.c.state == sa.literal_column(f"'{RUNNING}'"),
        other.c.key == JOBS.c.key,
        other.c.id != JOBS.c.id,
    )
    return sa.and_(
        JOBS.c.kind.in_(list(kinds)),
        sa.or_(
            sa.and_(JOBS.c.state == QUEUED, JOBS.c.run_after <= now),
            # A lease that ran out: its worker died or stopped; the job goes on with the next attempt.
            sa.and_(
                JOBS.c.state == RUNNING,
                JOBS.c.lease_expires_at <= now,
                JOBS.c.attempts < JOBS.c.max_attempts,
            ),
        ),
        ~key_busy,
    )


def claim(
    *,
    db_session: Session,
    kinds: Sequence[str],
    owner: str,
    lease_seconds: float,
    now: datetime | None = None,
) -> Job | None:
    """The next ready job of these kinds, now running under ``owner``'s lease, or None."""
    if not kinds:
        return None
    now = now or utcnow()
    candidate = (
        sa.select(JOBS.c.id).where(_claimable(kinds, now)).order_by(JOBS.c.run_after, JOBS.c.id).limit(1)
    )
    if db_session.get_bind().dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True, of=JOBS)
    statement = (
        sa.update(JOBS)
        .where(JOBS.c.id == candidate.scalar_subquery())
        .values(
            state=RUNNING,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=JOBS.c.attempts + 1,
            started_at=now,
            updated_at=now,
        )
        .returning(JOBS.c.id)
    )
    for _ in range(3):
        try:
            with db_session.begin_nested():
                job_id = db_session.execute(statement).scalar()
        except IntegrityError:
            # Another worker took a job with the same key a moment ago; look again, skipping that key.
            continue
        if job_id is None:
            return None
        return db_session.get(Job, job_id, populate_existing=True)
    return None


def extend_leases(
    *, db_session: Session, job_ids: Sequence[int], owner: str, lease_seconds: float
) -> set[int]:
    """The ids among ``job_ids`` still held by ``owner``, their leases renewed."""
    if not job_ids:
        return set()
    now = utcnow()
    rows = db_session.execute(
        sa.update(JOBS)
        .where(JOBS.c.id.in_(list(job_ids)), JOBS.c.state == RUNNING, JOBS.c.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(JOBS.c.id)
    )
    return {row[0] for row in rows}


def release(*, db_session: Session, job_ids: Sequence[int], owner: str) -> int:
    """Give jobs back (a stopping worker): claimable at once, the attempt not counted. Returns how many."""
    if not job_ids:
        return 0
    now = utcnow()
    result = db_session.execute(
        sa.update(JOBS)
        .where(JOBS.c.id.in_(list(job_ids)), JOBS.c.state == RUNNING, JOBS.c.lease_owner == owner)
        .values(
            lease_owner=None,
            lease_expires_at=now,
            attempts=sa.case((JOBS.c.attempts > 0, JOBS.c.attempts - 1), else_=0),
            updated_at=now,
        )
    )
    return result.rowcount or 0
