"""Job operations. ``enqueue`` and the schedule functions run in the caller's transaction; the claim,
finish and lease functions are the worker's and run in transactions the worker owns.

How the guarantees are kept, on both databases:
- one queued job per kind and key: a partial unique index, and ``enqueue`` folds a second request
  into the queued one;
- one running job per key: a partial unique index, and the claim skips keys that are running;
- a claim is one statement: ``UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED)`` on PostgreSQL,
  the same conditional UPDATE under SQLite's write lock;
- a lease that runs out makes the job claimable again (same row, next attempt);
- a schedule fires by moving ``next_run_at`` from the value it read (compare-and-set).
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.errors import InvalidInput
from borealis.jobs.models import Job, JobSchedule, JobState

DEFAULT_MAX_ATTEMPTS = 5
MAX_ERROR_LENGTH = 4000

_jobs = Job.__table__
_schedules = JobSchedule.__table__

QUEUED = JobState.QUEUED.value
RUNNING = JobState.RUNNING.value
DONE = JobState.DONE.value
FAILED = JobState.FAILED.value


# --- enqueue and in-process wake-up --------------------------------------------------------------------

_ENQUEUED_FLAG = "borealis.jobs.enqueued"
_wake_listeners: list[Callable[[], None]] = []
_wake_lock = threading.Lock()


def add_wake_listener(listener: Callable[[], None]) -> None:
    """Call ``listener`` after any commit in this process that enqueued a job (workers poll less)."""
    with _wake_lock:
        _wake_listeners.append(listener)


def remove_wake_listener(listener: Callable[[], None]) -> None:
    with _wake_lock:
        if listener in _wake_listeners:
            _wake_listeners.remove(listener)


@sa.event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(_ENQUEUED_FLAG, False):
        with _wake_lock:
            listeners = list(_wake_listeners)
        for listener in listeners:
            listener()


@sa.event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(_ENQUEUED_FLAG, None)


def _insert(db_session: Session) -> Any:
    dialect = db_session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def enqueue(
    *,
    db_session: Session,
    kind: str,
    user_id: str | None,
    key: str | None = None,
    payload: dict[str, Any] | None = None,
    run_after: datetime | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> Job:
    """The queued job for this work: a new one, or the queued job of the same kind and key with the new
    payload merged in (newer values win) and the earlier start time. Recorded in the caller's
    transaction: it exists only if the caller commits."""
    if not kind or len(kind) > 100:
        raise InvalidInput("a job kind is 1 to 100 characters")
    if key is not None and not 0 < len(key) <= 200:
        raise InvalidInput("a job key is 1 to 200 characters")
    if max_attempts < 1:
        raise InvalidInput("max_attempts must be at least 1")
    now = utcnow()
    run_after = run_after or now
    payload = dict(payload or {})
    db_session.info[_ENQUEUED_FLAG] = True
    # Two tries: a twin that a worker claims between our look and our insert stops being a twin.
    for _ in range(3):
        if key is not None:
            twin = db_session.scalars(
                sa.select(Job)
                .where(Job.kind == kind, Job.key == key, Job.state == QUEUED)
                .with_for_update()
                .execution_options(populate_existing=True)
            ).first()
            if twin is not None:
                _fold(twin, payload=payload, run_after=run_after, max_attempts=max_attempts, now=now)
                db_session.flush()
                return twin
        job_id = db_session.execute(
            _insert(db_session)(_jobs)
            .values(
                kind=kind,
                user_id=user_id,
                key=key,
                payload=payload,
                state=QUEUED,
                attempts=0,
                max_attempts=max_attempts,
                run_after=run_after,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
            .returning(_jobs.c.id)
        ).scalar()
        if job_id is not None:
            job = db_session.get(Job, job_id, populate_existing=True)
            assert job is not None
            return job
    raise RuntimeError(f"could not enqueue {kind} {key}: the queue kept changing under us")


@dataclass(frozen=True, slots=True)
class JobRequest:
    """One keyed piece of work for ``enqueue_many``."""

    key: str
    user_id: str | None
    payload: dict[str, Any]
    run_after: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


_QUEUED_TWINS = (
    sa.select(
        _jobs.c.id, _jobs.c.key, _jobs.c.payload, _jobs.c.attempts, _jobs.c.run_after, _jobs.c.max_attempts
    )
    .where(
        _jobs.c.kind == sa.bindparam("kind"),
        # A literal, not a parameter, so the partial index of queued jobs (uq_jobs_queued_kind_key)
        # applies rather than reading every queued job.
        _jobs.c.state == sa.literal_column(f"'{QUEUED}'"),
        _jobs.c.key.in_(sa.bindparam("keys", expanding=True)),
    )
    .order_by(_jobs.c.id)
)
# Held until commit on PostgreSQL: a worker cannot claim a twin while it is being folded.
_QUEUED_TWINS_LOCKED = _QUEUED_TWINS.with_for_update()
# SQLite has to be told to use that index (without statistics it prefers the state index).
_QUEUED_TWINS_SQLITE = (
    sa.text(
        "SELECT id, key, payload, attempts, run_after, max_attempts FROM jobs "
        "INDEXED BY uq_jobs_queued_kind_key WHERE kind = :kind AND state = 'queued' AND key IN :keys "
        "ORDER BY id"
    )
    .bindparams(sa.bindparam("keys", expanding=True))
    .columns(
        _jobs.c.id, _jobs.c.key, _jobs.c.payload, _jobs.c.attempts, _jobs.c.run_after, _jobs.c.max_attempts
    )
)
_FOLD_TWIN = (
    _jobs.update()
    .where(_jobs.c.id == sa.bindparam("_id"))
    .values(
        payload=sa.bindparam("_payload", type_=_jobs.c.payload.type),
        run_after=sa.bindparam("_run_after", type_=_jobs.c.run_after.type),
        max_attempts=sa.bindparam("_max_attempts", type_=sa.Integer),
        updated_at=sa.bindparam("_now", type_=_jobs.c.updated_at.type),
    )
)


def enqueue_many(*, db_session: Session, kind: str, requests: Sequence[JobRequest]) -> None:
    """``enqueue`` for many keys of one kind, in a handful of statements whatever their number (the
    webhook asks for an enrichment per changed problem in every batch). A queued twin that the request
    would not change is left as it is."""
    if not requests:
        return
    if not kind or len(kind) > 100:
        raise InvalidInput("a job kind is 1 to 100 characters")
    now = utcnow()
    # key -> (user id, payload, run after, max attempts), requests for one key folded in order.
    wanted: dict[str, tuple[str | None, dict[str, Any], datetime, int]] = {}
    for request in requests:
        if not 0 < len(request.key) <= 200:
            raise InvalidInput("a job key is 1 to 200 characters")
        if request.max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        user_id, payload = request.user_id, dict(request.payload)
        run_after, max_attempts = request.run_after or now, request.max_attempts
        earlier = wanted.get(request.key)
        if earlier is not None:
            payload = {**earlier[1], **payload}
            run_after, max_attempts = min(earlier[2], run_after), max(earlier[3], max_attempts)
        wanted[request.key] = (user_id, payload, run_after, max_attempts)
    db_session.info[_ENQUEUED_FLAG] = True
    keys = sorted(wanted)
    dialect = db_session.get_bind().dialect.name
    statement = {"postgresql": _QUEUED_TWINS_LOCKED, "sqlite": _QUEUED_TWINS_SQLITE}.get(
        dialect, _QUEUED_TWINS
    )
    folds: list[dict[str, Any]] = []
    for start in range(0, len(keys), 500):
        for twin in db_session.execute(statement, {"kind": kind, "keys": keys[start : start + 500]}):
            _user_id, asked, asked_after, asked_attempts = wanted.pop(twin.key)
            payload = {**(twin.payload or {}), **asked}
            run_after = twin.run_after
            if twin.attempts == 0 and asked_after < run_after:
                run_after = asked_after
            max_attempts = max(twin.max_attempts, asked_attempts)
            if (payload, run_after, max_attempts) != (twin.payload, twin.run_after, twin.max_attempts):
                folds.append(
                    {
                        "_id": twin.id,
                        "_payload": payload,
                        "_run_after": run_after,
                        "_max_attempts": max_attempts,
                        "_now": now,
                    }
                )
    if folds:
        db_session.execute(_FOLD_TWIN, folds)
    if not wanted:
        return
    rows = [
        {
            "kind": kind,
            "user_id": user_id,
            "key": key,
            "payload": payload,
            "state": QUEUED,
            "attempts": 0,
            "max_attempts": max_attempts,
            "run_after": run_after,
            "created_at": now,
            "updated_at": now,
        }
        for key, (user_id, payload, run_after, max_attempts) in wanted.items()
    ]
    inserted = db_session.execute(
        _insert(db_session)(_jobs).on_conflict_do_nothing().returning(_jobs.c.key), rows
    ).scalars()
    # A key another process queued between our look and our insert: fold into it the careful way.
    for key in sorted(set(wanted) - set(inserted)):
        user_id, payload, run_after, max_attempts = wanted[key]
        enqueue(
            db_session=db_session,
            kind=kind,
            user_id=user_id,
            key=key,
            payload=payload,
            run_after=run_after,
            max_attempts=max_attempts,
        )


def _fold(
    job: Job, *, payload: dict[str, Any], run_after: datetime, max_attempts: int, now: datetime
) -> None:
    job.payload = {**(job.payload or {}), **payload}
    # A job backing off after a failure keeps its wait; a fresh one starts as early as anyone asked.
    if job.attempts == 0 and run_after < job.run_after:
        job.run_after = run_after
    job.max_attempts = max(job.max_attempts, max_attempts)
    job.updated_at = now


# --- reading ---------------------------------------------------------------------------------------------


def get(*, db_session: Session, job_id: int, user_id: str | None = None) -> Job | None:
    """The job with this id (only if it is ``user_id``'s, when given), or None."""
    job = db_session.get(Job, job_id)
    if job is None or (user_id is not None and job.user_id != user_id):
        return None
    return job


def list_jobs(
    *,
    db_session: Session,
    user_id: str,
    state: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """The user's jobs, newest first, and how many match in all."""
    conditions = [Job.user_id == user_id]
    if state is not None:
        conditions.append(Job.state == state)
    if kind is not None:
        conditions.append(Job.kind == kind)
    total = db_session.scalar(sa.select(sa.func.count()).select_from(Job).where(*conditions)) or 0
    jobs = db_session.scalars(
        sa.select(Job).where(*conditions).order_by(Job.id.desc()).limit(limit).offset(offset)
    )
    return list(jobs), total


def counts_by_state(*, db_session: Session, user_id: str) -> dict[str, int]:
    """How many of the user's jobs are in each state: ``{"queued": n, "running": n, "done": n, "failed": n}``."""
    counts = dict.fromkeys((state.value for state in JobState), 0)
    rows = db_session.execute(
        sa.select(Job.state, sa.func.count()).where(Job.user_id == user_id).group_by(Job.state)
    )
    for state, count in rows:
        counts[state] = count
    return counts


def counts_by_kind_and_state(*, db_session: Session) -> dict[tuple[str, str], int]:
    """Every job counted by (kind, state), for the metrics."""
    rows = db_session.execute(sa.select(Job.kind, Job.state, sa.func.count()).group_by(Job.kind, Job.state))
    return {(kind, state): count for kind, state, count in rows}


# --- the worker's side: claim, lease, finish -------------------------------------------------------------


def has_ready(*, db_session: Session, kinds: Sequence[str], now: datetime | None = None) -> bool:
    """Whether any job of these kinds could be claimed now (a cheap read before taking a write lock)."""
    if not kinds:
        return False
    now = now or utcnow()
    return db_session.scalar(sa.select(sa.literal(1)).where(_claimable(kinds, now)).limit(1)) is not None


def _claimable(kinds: Sequence[str], now: datetime) -> sa.ColumnElement[bool]:
    other = _jobs.alias("other")
    # A literal state lets both planners use the partial index on running keys.
    key_busy = sa.exists().where(
        other.c.state == sa.literal_column(f"'{RUNNING}'"),
        other.c.key == _jobs.c.key,
        other.c.id != _jobs.c.id,
    )
    return sa.and_(
        _jobs.c.kind.in_(list(kinds)),
        sa.or_(
            sa.and_(_jobs.c.state == QUEUED, _jobs.c.run_after <= now),
            # A lease that ran out: its worker died or stopped; the job goes on with the next attempt.
            sa.and_(
                _jobs.c.state == RUNNING,
                _jobs.c.lease_expires_at <= now,
                _jobs.c.attempts < _jobs.c.max_attempts,
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
        sa.select(_jobs.c.id).where(_claimable(kinds, now)).order_by(_jobs.c.run_after, _jobs.c.id).limit(1)
    )
    if db_session.get_bind().dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True, of=_jobs)
    statement = (
        sa.update(_jobs)
        .where(_jobs.c.id == candidate.scalar_subquery())
        .values(
            state=RUNNING,
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            attempts=_jobs.c.attempts + 1,
            started_at=now,
            updated_at=now,
        )
        .returning(_jobs.c.id)
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
        sa.update(_jobs)
        .where(_jobs.c.id.in_(list(job_ids)), _jobs.c.state == RUNNING, _jobs.c.lease_owner == owner)
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
        .returning(_jobs.c.id)
    )
    return {row[0] for row in rows}


def release(*, db_session: Session, job_ids: Sequence[int], owner: str) -> int:
    """Give jobs back (a stopping worker): claimable at once, the attempt not counted. Returns how many."""
    if not job_ids:
        return 0
    now = utcnow()
    result = db_session.execute(
        sa.update(_jobs)
        .where(_jobs.c.id.in_(list(job_ids)), _jobs.c.state == RUNNING, _jobs.c.lease_owner == owner)
        .values(
            lease_owner=None,
            lease_expires_at=now,
            attempts=sa.case((_jobs.c.attempts > 0, _jobs.c.attempts - 1), else_=0),
            updated_at=now,
        )
    )
    return result.rowcount or 0


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
    now = utcnow()
    job.state = DONE
    job.result = result
    job.finished_at = now
    job.updated_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    db_session.flush()
    return True


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
    job.updated_at = now
    job.lease_owner = None
    job.lease_expires_at = None
    if retry_at is None or job.attempts >= job.max_attempts:
        job.state = FAILED
        job.finished_at = now
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
    job.state = FAILED
    job.finished_at = now
    job.updated_at = now
    job.lease_owner = None
    job.lease_expires_at = None
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
        sa.update(_jobs)
        .where(
            _jobs.c.state == RUNNING,
            _jobs.c.lease_expires_at <= now,
            _jobs.c.attempts >= _jobs.c.max_attempts,
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
        sa.delete(_jobs).where(
            sa.or_(
                sa.and_(_jobs.c.state == DONE, _jobs.c.finished_at < done_before),
                sa.and_(_jobs.c.state == FAILED, _jobs.c.finished_at < failed_before),
            )
        )
    )
    return result.rowcount or 0


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before the next attempt: ``base * 2**(attempt-1)`` capped, with jitter in its upper
    half so retries of many jobs spread out but never come sooner than half the nominal wait."""
    nominal = min(cap, base * (2 ** max(0, attempt - 1)))
    return nominal / 2 + (rng or random).uniform(0, nominal / 2)


# --- schedules -------------------------------------------------------------------------------------------


def ensure_schedule(
    *,
    db_session: Session,
    kind: str,
    key: str,
    user_id: str | None,
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
        _insert(db_session)(_schedules)
        .values(
            kind=kind,
            key=key,
            user_id=user_id,
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
    schedule.user_id = user_id
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
    result = db_session.execute(
        sa.delete(_schedules).where(_schedules.c.kind == kind, _schedules.c.key == key)
    )
    return bool(result.rowcount)


def get_schedule(*, db_session: Session, kind: str, key: str) -> JobSchedule | None:
    """The schedule for (kind, key), or None."""
    return db_session.scalars(
        sa.select(JobSchedule).where(JobSchedule.kind == kind, JobSchedule.key == key)
    ).first()


def has_due_schedules(*, db_session: Session, now: datetime | None = None) -> bool:
    """Whether any schedule is due (a cheap read before taking a write lock)."""
    now = now or utcnow()
    found = db_session.scalar(sa.select(_schedules.c.id).where(_schedules.c.next_run_at <= now).limit(1))
    return found is not None


def fire_due_schedules(*, db_session: Session, now: datetime | None = None, limit: int = 100) -> list[Job]:
    """The jobs enqueued for schedules that were due; each due firing is taken by exactly one caller."""
    now = now or utcnow()
    due = db_session.execute(
        sa.select(
            _schedules.c.id,
            _schedules.c.kind,
            _schedules.c.key,
            _schedules.c.user_id,
            _schedules.c.payload,
            _schedules.c.interval_seconds,
            _schedules.c.next_run_at,
        )
        .where(_schedules.c.next_run_at <= now)
        .order_by(_schedules.c.next_run_at)
        .limit(limit)
    ).all()
    fired = []
    for row in due:
        interval = timedelta(seconds=row.interval_seconds)
        following = row.next_run_at + interval
        if following <= now:
            following = now + interval
        taken = db_session.execute(
            sa.update(_schedules)
            .where(_schedules.c.id == row.id, _schedules.c.next_run_at == row.next_run_at)
            .values(next_run_at=following, last_fired_at=now, updated_at=now)
        ).rowcount
        if taken != 1:
            continue
        job = enqueue(
            db_session=db_session, kind=row.kind, user_id=row.user_id, key=row.key, payload=row.payload
        )
        db_session.execute(sa.update(_schedules).where(_schedules.c.id == row.id).values(last_job_id=job.id))
        fired.append(job)
    return fired
