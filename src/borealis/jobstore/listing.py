"""Reading jobs: one job, a workspace's jobs page by page, and counts for the UI and the metrics."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.jobstore.models import Job, JobState


def get(*, db_session: Session, job_id: int, workspace_id: str | None = None) -> Job | None:
    """The job with this id (only if it is ``workspace_id``'s, when given), or None."""
    job = db_session.get(Job, job_id)
    if job is None or (workspace_id is not None and job.workspace_id != workspace_id):
        return None
    return job


def list_jobs(
    *,
    db_session: Session,
    workspace_id: str,
    state: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Job], int]:
    """The workspace's jobs, newest first, and how many match in all."""
    conditions = [Job.workspace_id == workspace_id]
    if state is not None:
        conditions.append(Job.state == state)
    if kind is not None:
        conditions.append(Job.kind == kind)
    total = db_session.scalar(sa.select(sa.func.count()).select_from(Job).where(*conditions)) or 0
    jobs = db_session.scalars(
        sa.select(Job).where(*conditions).order_by(Job.id.desc()).limit(limit).offset(offset)
    )
    return list(jobs), total


def counts_by_state(*, db_session: Session, workspace_id: str) -> dict[str, int]:
    """How many of the workspace's jobs are in each state: ``{"queued": n, "running": n, "done": n, "failed": n}``."""
    counts = dict.fromkeys((state.value for state in JobState), 0)
    rows = db_session.execute(
        sa.select(Job.state, sa.func.count()).where(Job.workspace_id == workspace_id).group_by(Job.state)
    )
    for state, count in rows:
        counts[state] = count
    return counts


def counts_by_kind_and_state(*, db_session: Session) -> dict[tuple[str, str], int]:
    """Every job counted by (kind, state), for the metrics."""
    rows = db_session.execute(sa.select(Job.kind, Job.state, sa.func.count()).group_by(Job.kind, Job.state))
    return {(kind, state): count for kind, state, count in rows}
