"""Carrying out what ingest recorded: correlation into incidents, an analysis for each new problem's
incident, enrichment of changed open problems.

Ingest queues a ``FollowUp`` per changed problem, and a job per user (``FOLLOW_UP_JOB``), in its own
transaction; this module, above incidents, RCA and sync, carries them out: that job, on the workers, a
few problems per transaction (``run``); a request that reads incidents (``borealis.api.deps``), for its
user; a caller that wants a problem's incident at once (``follow_up_now``), for that problem only.
``install`` is what the entry points give ingest (``borealis.ingest.hooks``) so that it can ask these
questions without importing upward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import Database, dialect_of
from borealis.incidents import batch, placement
from borealis.incidents.service import lock_user
from borealis.ingest import hooks, writer
from borealis.jobstore import JobContext, Retry
from borealis.problems.models import FollowUp
from borealis.rca import service as rca_service
from borealis.sync import service as sync_service

# Follow-ups carried out per call (and per transaction) by default...
FOLLOW_UP_BATCH = 500
# ... and per transaction by the job: short, so the writer (which folds changes into waiting
# follow-ups) never waits long for one.
JOB_STEP = 20
# In a process that also answers webhooks (``borealis serve`` with its workers), the job gives way to a
# burst between steps, for this long at most: deliveries are acknowledged at full speed, and correlated
# in the burst's pauses or a step at a time at least this often.
MAX_LAG_SECONDS = 10.0


def run(ctx: JobContext) -> dict[str, Any]:
    """The follow-up job: carry out the user's follow-ups, ``JOB_STEP`` per transaction, until none are
    left (a worker shutting down stops between transactions: the job runs again for the rest)."""
    done = follow_up_all(
        database=ctx.database,
        user_ids=[ctx.user_id] if ctx.user_id else None,
        stop=ctx.stopping,
        before_each=lambda: _give_way(ctx.stopping),
    )
    if ctx.stopping.is_set():
        raise Retry(f"stopped after {done} follow-ups", delay=0, count_attempt=False)
    return {"followUps": done}


def follow_up(
    *,
    db_session: Session,
    user_ids: Sequence[str] | None = None,
    problem_ids: Sequence[int] | None = None,
    limit: int = FOLLOW_UP_BATCH,
) -> int:
    """Carry out queued follow-ups (of these users, or of anyone), oldest first, in the caller's
    transaction: correlation into incidents, an analysis for each new problem's incident, enrichment of
    changed open problems. Returns how many it carried out (fewer than ``limit``: none are left).
    With ``problem_ids`` only the follow-ups of those problems.

    Serialized per user by the correlation lock; on PostgreSQL the follow-up rows are locked too, so
    a change queued meanwhile waits and is queued again once these are gone, never folded into a row
    this call deletes.
    """
    if problem_ids is not None:
        user_ids = list(
            db_session.scalars(
                sa.select(FollowUp.user_id).where(FollowUp.problem_id.in_(problem_ids)).distinct()
            )
        )
    elif user_ids is None:
        user_ids = list(db_session.scalars(sa.select(FollowUp.user_id).distinct().limit(limit)))
    user_ids = sorted(set(user_ids))
    if not user_ids:
        return 0
    for user_id in user_ids:
        lock_user(db_session=db_session, user_id=user_id)
    # One more than taken: when its next state arrived bounds what this call may replay.
    pending = (
        sa.select(FollowUp)
        .where(FollowUp.user_id.in_(user_ids))
        .order_by(FollowUp.next_at, FollowUp.id)
        .limit(limit + 1)
    )
    if problem_ids is not None:
        pending = pending.where(FollowUp.problem_id.in_(problem_ids))
    if dialect_of(db_session) == "postgresql":
        pending = pending.with_for_update()
    found = list(db_session.scalars(pending))
    follow_ups, waiting = found[:limit], found[limit:]
    if not follow_ups:
        return 0
    until = waiting[0].next_at if waiting else None
    rows = batch.pictures(db_session=db_session, problem_ids=[f.problem_id for f in follow_ups])
    changes = []
    # Problem id -> (the state replayed last, the states left for a later call).
    later: dict[int, tuple[str, list[list[Any]]]] = {}
    for f in follow_ups:
        if f.problem_id not in rows:
            continue
        states = [list(step) for step in f.states or ()]
        # A state taken after the next one of a follow-up still waiting must not be replayed before it
        # (the first follow-up always replays at least its next state: none waiting comes before it).
        now = [step for index, step in enumerate(states) if index == 0 or until is None or step[1] <= until]
        if len(now) < len(states):
            later[f.problem_id] = (now[-1][0], states[len(now) :])
        changes.append(
            batch.ProblemChange(
                rows[f.problem_id],
                created=f.created,
                correlate=f.correlate,
                previous_keys=None if f.previous_keys is None else frozenset(f.previous_keys),
                states=tuple((state, at) for state, at in now),
                final=f.problem_id not in later,
            )
        )
    incidents = placement.on_problems_changed(db_session=db_session, changes=changes)
    created = [f.problem_id for f in follow_ups if f.created]
    rca_service.after_ingest_many(
        db_session=db_session,
        incidents=[incidents[problem_id] for problem_id in created if problem_id in incidents],
    )
    sync_service.request_enrichments(
        db_session=db_session,
        problems=[
            (f.problem_id, f.user_id, rows[f.problem_id]["state"])
            for f in follow_ups
            if f.enrich and f.problem_id in rows
        ],
    )
    done = [f for f in follow_ups if f.problem_id not in later]
    if done:
        db_session.execute(sa.delete(FollowUp).where(FollowUp.id.in_([f.id for f in done])))
    for f in follow_ups:
        if f.problem_id in later:
            # What is left: the states still to come, from the one the incident now has.
            reached, left = later[f.problem_id]
            f.states = [[reached, 0], *left]
            f.next_at = left[0][1]
            f.created = False
            f.correlate = True
            f.enrich = False
            f.previous_keys = batch.index_keys(rows[f.problem_id])
    db_session.flush()
    return len(follow_ups)


def follow_up_all(
    *,
    database: Database,
    user_ids: Sequence[str] | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    before_each: Callable[[], None] | None = None,
) -> int:
    """Carry out every waiting follow-up (of these users, or of anyone), ``JOB_STEP`` per transaction,
    or stop once ``seconds`` have passed or ``stop`` is set; returns how many it carried out."""
    deadline = None if seconds is None else time.monotonic() + seconds
    total = 0
    while True:
        if before_each is not None:
            before_each()
        with database.session(write=True) as session:
            done = follow_up(db_session=session, user_ids=user_ids, limit=JOB_STEP)
            session.commit()
        total += done
        if done < JOB_STEP or (deadline is not None and time.monotonic() > deadline):
            return total
        if stop is not None and stop.is_set():
            return total


def _give_way(stop: threading.Event) -> None:
    """Wait while this process is receiving webhook deliveries, ``MAX_LAG_SECONDS`` at most."""
    deadline = time.monotonic() + MAX_LAG_SECONDS
    while writer.receiving() and time.monotonic() < deadline and not stop.is_set():
        stop.wait(0.05)


def install() -> None:
    """Give ingest what it asks of the layers above it (idempotent)."""
    hooks.install(
        hooks.IngestHooks(
            picture_changed=batch.picture_changed,
            index_keys=batch.index_keys,
            lock_user=lock_user,
            follow_up=follow_up,
        )
    )
