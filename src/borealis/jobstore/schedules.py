"""Recurring jobs. ``ensure_schedule`` and ``remove_schedule`` run in the caller's transaction; firing is
the worker's. A schedule fires by moving ``next_run_at`` from the value it read (compare-and-set), so each
due firing is taken by exactly one worker.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.errors import InvalidInput
from borealis.jobstore.enqueueing import enqueue
from borealis.jobstore.models import Job, JobSchedule
from borealis.jobstore.table import SCHEDULES, insert_for


def ensure_schedule(
    *,
    db_session: Session,
    kind: str,
    key: str,
    workspace_id: str | None,
    interval_seconds: int,
    payload: dict[str, Any] | None = None,
    first_run_at: datetime | None = None,
) -> JobSchedule:
    """The schedule for (kind, key), created or updated; its next run is no later than one interval
    from now. Recorded in the caller's transaction."""
    if interval_seconds < 1:
        raise InvalidInput("a schedule's interval is at least 1 second")
    now = utcnow()
    next_run_at = first_run_at or now
    db_session.execute(
        insert_for(db_session)(SCHEDULES)
        .values(
            kind=kind,
            key=key,
            workspace_id=workspace_id,
            payload=dict(payload or {}),
            interval_seconds=interval_seconds,
            next_run_at=next_run_at,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )
    schedule = db_session.scalars(
        sa.select(JobSchedule)
        .where(JobSchedule.kind == kind, JobSchedule.key == key)
        .execution_options(populate_existing=True)
    ).one()
    schedule.workspace_id = workspace_id
    schedule.payload = dict(payload or {})
    schedule.interval_seconds = interval_seconds
    latest = now + timedelta(seconds=interval_seconds)
    if schedule.next_run_at > latest:
        schedule.next_run_at = latest
    schedule.updated_at = now
    db_session.flush()
    return schedule


def remove_schedule(*, db_session: Session, kind: str, key: str) -> bool:
    """Delete the schedule for (kind, key); False when there was none."""
    result = db_session.execute(sa.delete(SCHEDULES).where(SCHEDULES.c.kind == kind, SCHEDULES.c.key == key))
    return bool(result.rowcount)


def get_schedule(*, db_session: Session, kind: str, key: str) -> JobSchedule | None:
    """The schedule for (kind, key), or None."""
    return db_session.scalars(
        sa.select(JobSchedule).where(JobSchedule.kind == kind, JobSchedule.key == key)
    ).first()


def has_due_schedules(*, db_session: Session, now: datetime | None = None) -> bool:
    """Whether any schedule is due (a cheap read before taking a write lock)."""
    now = now or utcnow()
    found = db_session.scalar(sa.select(SCHEDULES.c.id).where(SCHEDULES.c.next_run_at <= now).limit(1))
    return found is not None


def fire_due_schedules(*, db_session: Session, now: datetime | None = None, limit: int = 100) -> list[Job]:
    """The jobs enqueued for schedules that were due; each due firing is taken by exactly one caller."""
    now = now or utcnow()
    due = db_session.execute(
        sa.select(
            SCHEDULES.c.id,
            SCHEDULES.c.kind,
            SCHEDULES.c.key,
            SCHEDULES.c.workspace_id,
            SCHEDULES.c.payload,
            SCHEDULES.c.interval_seconds,
            SCHEDULES.c.next_run_at,
        )
        .where(SCHEDULES.c.next_run_at <= now)
        .order_by(SCHEDULES.c.next_run_at)
        .limit(limit)
    ).all()
    fired = []
    for row in due:
        interval = timedelta(seconds=row.interval_seconds)
        following = row.next_run_at + interval
        if following <= now:
            following = now + interval
        taken = db_session.execute(
            sa.update(SCHEDULES)
            .where(SCHEDULES.c.id == row.id, SCHEDULES.c.next_run_at == row.next_run_at)
            .values(next_run_at=following, last_fired_at=now, updated_at=now)
        ).rowcount
        if taken != 1:
            continue
        job = enqueue(
            db_session=db_session,
            kind=row.kind,
            workspace_id=row.workspace_id,
            key=row.key,
            payload=row.payload,
        )
        db_session.execute(sa.update(SCHEDULES).where(SCHEDULES.c.id == row.id).values(last_job_id=job.id))
        fired.append(job)
    return fired
