"""Running queued jobs in the test's own thread, as a worker would, to see what they did."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from borealis.db import utcnow
from borealis.jobs.registry import REGISTRY
from borealis.jobs.worker import describe
from borealis.jobstore import JobContext
from borealis.jobstore import leases as jobs_leases
from borealis.jobstore import outcomes as jobs_outcomes
from borealis.rca.tasks import run_rca


def context_for(app, job, *, owner: str, settings=None) -> JobContext:
    """What a worker hands the handler of a job it claimed as ``owner``."""
    return JobContext(
        job_id=job.id,
        kind=job.kind,
        workspace_id=job.workspace_id,
        key=job.key,
        payload=job.payload,
        attempt=job.attempts,
        max_attempts=job.max_attempts,
        database=app.state.database,
        settings=settings or app.state.settings,
        secret_box=app.state.secret_box,
        owner=owner,
    )


def run_pending(
    app, *, settings=None, later: timedelta = timedelta(minutes=5), kind: str = "rca"
) -> list[Any]:
    """Run the queued jobs of ``kind`` in this thread as a worker would, ``later`` from now."""
    database = app.state.database
    handler = run_rca if kind == "rca" else REGISTRY.get(kind).handler
    outcomes: list[Any] = []
    for _ in range(20):
        with database.session(write=True) as session:
            job = jobs_leases.claim(
                db_session=session,
                kinds=[kind],
                owner="test-worker",
                lease_seconds=600,
                now=utcnow() + later,
            )
            session.commit()
        if job is None:
            return outcomes
        context = context_for(app, job, owner="test-worker", settings=settings)
        try:
            outcomes.append(handler(context))
        except Exception as exc:
            outcomes.append(exc)
            retry_at = None if context.is_last_attempt else utcnow()
            with database.session(write=True) as session:
                jobs_outcomes.fail(
                    db_session=session,
                    job_id=job.id,
                    owner="test-worker",
                    error=describe(exc),
                    retry_at=retry_at,
                )
                session.commit()
            continue
        if not context.completed:
            with database.session(write=True) as session:
                jobs_outcomes.complete(
                    db_session=session, job_id=job.id, owner="test-worker", result=outcomes[-1]
                )
                session.commit()
    raise AssertionError("RCA jobs kept coming")
