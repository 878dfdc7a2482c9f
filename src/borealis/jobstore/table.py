"""The jobs and schedules tables as the job operations address them: Core tables, the states as stored,
and the INSERT that can skip a conflicting row on either database.

The operations write with Core statements (one conditional UPDATE claims a job), so they share these.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from borealis.jobstore.models import Job, JobSchedule, JobState

JOBS = Job.__table__
SCHEDULES = JobSchedule.__table__

QUEUED = JobState.QUEUED.value
RUNNING = JobState.RUNNING.value
DONE = JobState.DONE.value
FAILED = JobState.FAILED.value


def insert_for(db_session: Session) -> Any:
    """The dialect's ``insert`` (both offer ``on_conflict_do_nothing``)."""
    dialect = db_session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert
