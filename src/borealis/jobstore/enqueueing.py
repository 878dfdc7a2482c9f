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
from borealis.driver import Driver
from borealis.errors import InvalidInput
from borealis.jobstore import wakeup
from borealis.jobstore.models import Job
from borealis.jobstore.table import JOBS, QUEUED, insert_for

DEFAULT_MAX_ATTEMPTS = 5


def enqueue(
    *,
    db_session: Session,
    kind: str,
    workspace_id: str | None,
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
                workspace_id=workspace_id,
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
    workspace_id: str | None
    payload: dict[str, Any]
    run_after: datetime | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS


_ROWS_PER_STATEMENT = 200
_NEW_JOB = (
    "kind",
    "workspace_id",
    "key",
    "payload",
    "state",
    "attempts",
    "max_attempts",
    "run_after",
    "created_at",
    "updated_at",
)
_TWIN = ("id", "key", "payload", "attempts", "run_after", "max_attempts")
_FOLDED = ("payload", "run_after", "max_attempts", "updated_at")


def enqueue_many(*, db_session: Session, kind: str, requests: Sequence[JobRequest]) -> None:
    """``enqueue`` for many keys of one kind, in one round trip whatever their number (the webhook asks
    for a follow-up job per workspace in every batch, inside its ``Driver.pipeline``). A queued twin that the
    request would not change is left as it is."""
    if not requests:
        return
    if not kind or len(kind) > 100:
        raise InvalidInput("a job kind is 1 to 100 characters")
    now = utcnow()
    # key -> the new job's row, requests for one key folded in order.
    wanted: dict[str, dict[str, Any]] = {}
    for request in requests:
        if not 0 < len(request.key) <= 200:
            raise InvalidInput("a job key is 1 to 200 characters")
        if request.max_attempts < 1:
            raise InvalidInput("max_attempts must be at least 1")
        row = {
            "kind": kind,
            "workspace_id": request.workspace_id,
            "key": request.key,
            "payload": dict(request.payload),
            "state": QUEUED,
            "attempts": 0,
            "max_attempts": request.max_attempts,
            "run_after": request.run_after or now,
            "created_at": now,
            "updated_at": now,
        }
        earlier = wanted.get(request.key)
        if earlier is not None:
            row["payload"] = {**earlier["payload"], **row["payload"]}
            row["run_after"] = min(earlier["run_after"], row["run_after"])
            row["max_attempts"] = max(earlier["max_attempts"], row["max_attempts"])
        wanted[request.key] = row
    wakeup.note_enqueued(db_session)
    # Driver statements skip the session's autoflush: what the caller added goes first.
    db_session.flush()
    driver = Driver.of(db_session)
    twins = driver.reader(JOBS, _TWIN)
    # SQLite has to be told to use the partial index of queued jobs (without statistics it prefers the
    # state index); PostgreSQL holds the twins until commit, so no worker claims one being folded.
    indexed, lock = (" INDEXED BY uq_jobs_queued_kind_key", "") if driver.sqlite else ("", " FOR UPDATE")
    folds: list[dict[str, Any]] = []
    pending = sorted(wanted)
    # Insert first (a key with a queued twin conflicts and is skipped), then read the twins of the
    # keys: one round trip. A twin a worker claimed between the two is no twin any more: its key goes
    # round again, and is inserted this time.
    while pending:
        statements: list[tuple[str, list[Any]]] = []
        for start in range(0, len(pending), _ROWS_PER_STATEMENT):
            chunk = pending[start : start + _ROWS_PER_STATEMENT]
            insert = driver.inserter(
                JOBS, _NEW_JOB, rows=len(chunk), tail="ON CONFLICT DO NOTHING RETURNING key"
            )
            statements.append((insert.sql, insert.flat([wanted[key] for key in chunk])))
            statements.append(
                (
                    f"{twins.sql}{indexed} WHERE kind = {driver.mark} AND state = '{QUEUED}'"
                    f" AND key IN ({driver.marks(len(chunk))}) ORDER BY id{lock}",
                    [kind, *chunk],
                )
            )
        results = driver.query_many(db_session, statements)
        inserted = {key for found in results[::2] for (key,) in found}
        found_twins = {
            twin["key"]: twin
            for found in results[1::2]
            for twin in twins.dicts(found)
            if twin["key"] not in inserted
        }
        for key, twin in found_twins.items():
            fold = _folded(twin, wanted[key], now=now)
            if fold is not None:
                folds.append(fold)
        pending = [key for key in pending if key not in inserted and key not in found_twins]
    if folds:
        update = driver.writer(JOBS, _FOLDED, key="id")
        driver.execute_many(db_session, update.sql, update.params(folds))


def _folded(twin: dict[str, Any], asked: dict[str, Any], *, now: datetime) -> dict[str, Any] | None:
    """The queued twin's columns with a request folded in, or None when that changes nothing."""
    payload = {**(twin["payload"] or {}), **asked["payload"]}
    # A job backing off after a failure keeps its wait; a fresh one starts as early as anyone asked.
    run_after = twin["run_after"]
    if twin["attempts"] == 0 and asked["run_after"] < run_after:
        run_after = asked["run_after"]
    max_attempts = max(twin["max_attempts"], asked["max_attempts"])
    if (payload, run_after, max_attempts) == (twin["payload"], twin["run_after"], twin["max_attempts"]):
        return None
    return {
        "id": twin["id"],
        "payload": payload,
        "run_after": run_after,
        "max_attempts": max_attempts,
        "updated_at": now,
    }


def _fold(
    job: Job, *, payload: dict[str, Any], run_after: datetime, max_attempts: int, now: datetime
) -> None:
    twin = {name: getattr(job, name) for name in _TWIN}
    asked = {"payload": payload, "run_after": run_after, "max_attempts": max_attempts}
    fold = _folded(twin, asked, now=now)
    if fold is not None:
        job.payload, job.run_after = fold["payload"], fold["run_after"]
        job.max_attempts, job.updated_at = fold["max_attempts"], fold["updated_at"]
