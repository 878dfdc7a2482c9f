"""``/jobs``: the caller's background work, so a failed enrichment or RCA is never a mystery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from borealis.api.deps import CurrentCaller, DbSession
from borealis.errors import NotFound
from borealis.jobstore import listing
from borealis.jobstore.models import JobPage, JobRead, JobState
from borealis.schemas import API_ERRORS, Offset, RowId, error_responses

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=API_ERRORS)


@router.get("", response_model=JobPage, response_model_by_alias=True)
def list_jobs(
    caller: CurrentCaller,
    db_session: DbSession,
    state: Annotated[JobState | None, Query(description="queued, running, done or failed")] = None,
    kind: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> JobPage:
    """The caller's jobs, newest first."""
    jobs, total = listing.list_jobs(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        state=state.value if state else None,
        kind=kind,
        limit=limit,
        offset=offset,
    )
    return JobPage(
        jobs=[JobRead.model_validate(job) for job in jobs], total=total, limit=limit, offset=offset
    )


@router.get("/{job_id}", response_model=JobRead, response_model_by_alias=True, responses=error_responses(404))
def get_job(job_id: RowId, caller: CurrentCaller, db_session: DbSession) -> JobRead:
    """One of the caller's jobs."""
    job = listing.get(db_session=db_session, job_id=job_id, workspace_id=caller.workspace_id)
    if job is None:
        raise NotFound(f"no job {job_id} among yours; list them with GET /jobs")
    return JobRead.model_validate(job)
