"""Recording work to do: ``enqueue`` and ``enqueue_many`` run in the caller's transaction, so a job
exists only if the caller commits (a job recorded with its cause).

One queued job per kind and key: a partial unique index, and a second request is folded into the queued
one (payload merged, newer values win; the earlier start time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.errors import InvalidInput
from borealis.jobstore import wakeup
from borealis.jobstore.models import Job
from borealis.jobstore.table import JOBS, QUEUED, insert_for

DEFAULT_MAX_ATTEMPTS = 5


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
    wakeup.note_enqueued(db_session)
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
            insert_for(db_session)(JOBS)
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
            .returning(JOBS.c.id)
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
    sa.select(JOBS.c.id, JOBS.c.key, JOBS.c.payload, JOBS.c.attempts, JOBS.c.run_after, JOBS.c.max_attempts)
    .where(
        JOBS.c.kind == sa.bindparam("kind"),
        # A literal, not a parameter, so the partial index of queued jobs (uq_jobs_queued_kind_key)
        # applies rather than reading every queued job.
        JOBS.c.state == sa.literal_column(f"'{QUEUED}'"),
        JOBS.c.key.in_(sa.bindparam("keys", expanding=True)),
    )
    .order_by(JOBS.c.id)
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
    .columns(JOBS.c.id, JOBS.c.key, JOBS.c.payload, JOBS.c.attempts, JOBS.c.run_after, JOBS.c.max_attempts)
)
_FOLD_TWIN = (
    JOBS.update()
    .where(JOBS.c.id == sa.bindparam("_id"))
    .values(
        payload=sa.bindparam("_payload", type_=JOBS.c.payload.type),
        run_after=sa.bindparam("_run_after", type_=JOBS.c.run_after.type),
        max_attempts=sa.bindparam("_max_attempts", type_=sa.Integer),
        updated_at=sa.bindparam("_now", type_=JOBS.c.updated_at.type),
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
    wakeup.note_enqueued(db_session)
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
        insert_for(db_session)(JOBS).on_conflict_do_nothing().returning(JOBS.c.key), rows
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
