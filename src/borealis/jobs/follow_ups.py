"""Carrying out what ingest recorded: correlation into incidents, an analysis for each new problem's
incident, enrichment of changed open problems.

Ingest appends a ``FollowUp`` per change of a problem, and queues a job per workspace (``FOLLOW_UP_JOB``), in its own
transaction; this module, above incidents, RCA and sync, carries them out: that job, on the workers, a
few problems per transaction (``run``); a request that reads incidents (``borealis.api.deps``), for its
workspace; a caller that wants a problem's incident at once (``follow_up_now``), for that problem only.
``install`` is what the entry points give ingest (``borealis.ingest.hooks``) so that it can ask these
questions without importing upward.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import Database
from borealis.incidents import batch, placement
from borealis.incidents.service import lock_workspace
from borealis.ingest import hooks, writer
from borealis.ingest.intake import bounded_states
from borealis.jobstore import JobContext, Retry
from borealis.problems.models import FollowUp
from borealis.rca import service as rca_service
from borealis.sync import service as sync_service

# Problems followed up per call (and per transaction) by default...
FOLLOW_UP_BATCH = 500
# ... and per transaction by the job: short, so the correlation lock (which enrichment and readers of
# incidents also take) is never held long.
JOB_STEP = 20
# In a process that also answers webhooks (``borealis serve`` with its workers), the job gives way to a
# burst between steps, for this long at most: deliveries are acknowledged at full speed, and correlated
# in the burst's pauses or a step at a time at least this often.
MAX_LAG_SECONDS = 10.0


def run(ctx: JobContext) -> dict[str, Any]:
    """The follow-up job: carry out the workspace's follow-ups, ``JOB_STEP`` per transaction, until none are
    left (a worker shutting down stops between transactions: the job runs again for the rest)."""
    done = follow_up_all(
        database=ctx.database,
        workspace_ids=[ctx.workspace_id] if ctx.workspace_id else None,
        stop=ctx.stopping,
        before_each=lambda: _give_way(ctx.stopping),
    )
    if ctx.stopping.is_set():
        raise Retry(f"stopped after {done} follow-ups", delay=0, count_attempt=False)
    return {"followUps": done}


def follow_up(
    *,
    db_session: Session,
    workspace_ids: Sequence[str] | None = None,
    problem_ids: Sequence[int] | None = None,
    limit: int = FOLLOW_UP_BATCH,
) -> int:
    """Carry out queued follow-ups (of these workspaces, or of any workspace), oldest first, in the caller's
    transaction: correlation into incidents, an analysis for each new problem's incident, enrichment of
    changed open problems. Returns how many problems it followed up (fewer than ``limit``: none are
    left). With ``problem_ids`` only the follow-ups of those problems.

    Serialized per workspace by the correlation lock. A problem's rows are merged into one change: those
    its row as read here already includes (``version``); a change committed after that read stays
    for the next call, so nothing is replayed against a problem that does not show it yet.
    """
    if problem_ids is not None:
        workspace_ids = list(
            db_session.scalars(
                sa.select(FollowUp.workspace_id).where(FollowUp.problem_id.in_(problem_ids)).distinct()
            )
        )
    elif workspace_ids is None:
        workspace_ids = list(db_session.scalars(sa.select(FollowUp.workspace_id).distinct().limit(limit)))
    workspace_ids = sorted(set(workspace_ids))
    if not workspace_ids:
        return 0
    for workspace_id in workspace_ids:
        lock_workspace(db_session=db_session, workspace_id=workspace_id)
    # The oldest waiting problems, and one more: when its next state arrived bounds what this call
    # may replay.
    oldest = (
        sa.select(FollowUp.problem_id, sa.func.min(FollowUp.next_at).label("next_at"))
        .where(FollowUp.workspace_id.in_(workspace_ids))
        .group_by(FollowUp.problem_id)
        .order_by(sa.func.min(FollowUp.next_at), FollowUp.problem_id)
        .limit(limit + 1)
    )
    if problem_ids is not None:
        oldest = oldest.where(FollowUp.problem_id.in_(problem_ids))
    found = db_session.execute(oldest).all()
    taken = [problem_id for problem_id, _next_at in found[:limit]]
    if not taken:
        return 0
    rows = batch.pictures(db_session=db_session, problem_ids=taken)
    waiting: dict[int, list[FollowUp]] = {}
    for f in db_session.scalars(
        sa.select(FollowUp).where(FollowUp.problem_id.in_(taken)).order_by(FollowUp.id)
    ):
        waiting.setdefault(f.problem_id, []).append(f)
    # Rows the problems as read do not include yet (committed since) wait for the next call, and so
    # do their states: none may be replayed after them.
    # (A problem deleted meanwhile took its rows with it: it is in neither.)
    bounds = [next_at for _problem_id, next_at in found[limit:]]
    merged: dict[int, _Merged] = {}
    for problem_id, items in waiting.items():
        version = rows[problem_id]["notification_count"]
        bounds += [f.next_at for f in items if f.version > version]
        seen = [f for f in items if f.version <= version]
        if seen:
            merged[problem_id] = _Merged.of(seen)
    until = min(bounds, default=None)
    changes = []
    # Problem id -> (the state replayed last, the states left for a later call).
    later: dict[int, tuple[str, list[list[Any]]]] = {}
    for problem_id, m in merged.items():
        # A state taken after the next one of a follow-up still waiting must not be replayed before it
        # (the oldest problems' first states always are: none waiting comes before them).
        now = [step for index, step in enumerate(m.states) if index == 0 or until is None or step[1] <= until]
        if len(now) < len(m.states):
            later[problem_id] = (now[-1][0], m.states[len(now) :])
        changes.append(
            batch.ProblemChange(
                rows[problem_id],
                created=m.created,
                correlate=m.correlate,
                previous_keys=None if m.previous_keys is None else frozenset(m.previous_keys),
                states=tuple((state, at) for state, at in now),
                final=problem_id not in later,
            )
        )
    incidents = placement.on_problems_changed(db_session=db_session, changes=changes)
    rca_service.after_ingest_many(
        db_session=db_session,
        incidents=[incidents[p] for p, m in merged.items() if m.created and p in incidents],
    )
    sync_service.request_enrichments(
        db_session=db_session,
        problems=[(p, m.workspace_id, rows[p]["state"]) for p, m in merged.items() if m.enrich],
    )
    # Every merged row goes, but a problem with states left keeps its first row for them.
    done = [f.id for p, m in merged.items() for f in (m.rows[1:] if p in later else m.rows)]
    if done:
        db_session.execute(sa.delete(FollowUp).where(FollowUp.id.in_(done)))
    for problem_id, (reached, left) in later.items():
        # What is left, on the problem's first row: the states still to come, from the one the
        # incident now has.
        f = merged[problem_id].rows[0]
        f.states = [[reached, 0], *left]
        f.next_at = left[0][1]
        f.created = False
        f.correlate = True
        f.enrich = False
        f.previous_keys = batch.index_keys(rows[problem_id])
        f.version = rows[problem_id]["notification_count"]
    db_session.flush()
    return len(taken)


@dataclass(frozen=True)
class _Merged:
    """A problem's waiting rows as one change: the first's starting point, every state since."""

    rows: list[FollowUp]
    workspace_id: str
    created: bool
    correlate: bool
    enrich: bool
    previous_keys: list[str] | None
    states: list[list[Any]]

    @classmethod
    def of(cls, rows: list[FollowUp]) -> _Merged:
        first = rows[0]
        states = [list(step) for step in first.states or ()]
        for f in rows[1:]:
            # Each row's first state is the one the problem had before its change: the last so far.
            states += [list(step) for step in (f.states or ())[1:]]
        return cls(
            rows=rows,
            workspace_id=first.workspace_id,
            created=first.created,
            correlate=any(f.correlate for f in rows),
            enrich=any(f.enrich for f in rows),
            previous_keys=first.previous_keys,
            states=bounded_states(states),
        )


def follow_up_all(
    *,
    database: Database,
    workspace_ids: Sequence[str] | None = None,
    seconds: float | None = None,
    stop: threading.Event | None = None,
    before_each: Callable[[], None] | None = None,
) -> int:
    """Carry out every waiting follow-up (of these workspaces, or of any workspace), ``JOB_STEP`` per transaction,
    or stop once ``seconds`` have passed or ``stop`` is set; returns how many it carried out."""
    deadline = None if seconds is None else time.monotonic() + seconds
    total = 0
    while True:
        if before_each is not None:
            before_each()
        with database.session(write=True) as session:
            done = follow_up(db_session=session, workspace_ids=workspace_ids, limit=JOB_STEP)
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
            lock_workspace=lock_workspace,
            follow_up=follow_up,
        )
    )
