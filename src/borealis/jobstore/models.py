"""Durable background work: jobs and the periodic schedules that create them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, JSONType, UTCDateTime, utcnow
from borealis.schemas import CamelModel


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Job(Base):
    """One unit of background work. ``key`` names what it works on (``problem:12``, ``incident:9``,
    ``connection:<id>``): two jobs with the same key never run at once, and a queued job absorbs a
    second request for the same kind and key."""

    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_state_run_after", "state", "run_after"),
        sa.Index("ix_jobs_workspace_id_state", "workspace_id", "state"),
        # The database itself refuses a second running job for a key and a second queued twin.
        sa.Index(
            "uq_jobs_running_key",
            "key",
            unique=True,
            postgresql_where=sa.text("state = 'running'"),
            sqlite_where=sa.text("state = 'running'"),
        ),
        sa.Index(
            "uq_jobs_queued_kind_key",
            "kind",
            "key",
            unique=True,
            postgresql_where=sa.text("state = 'queued'"),
            sqlite_where=sa.text("state = 'queued'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(100))
    # NULL for maintenance work that belongs to nobody.
    workspace_id: Mapped[str | None] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    key: Mapped[str | None] = mapped_column(sa.String(200))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(sa.String(16), default=JobState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, default=5)
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(sa.String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JobSchedule(Base):
    """A periodic job (per connection: ``connection:<id>`` as the key). Firing moves ``next_run_at``
    with a compare-and-set, so one firing enqueues one job however many workers look at it."""

    __tablename__ = "job_schedules"
    __table_args__ = (sa.UniqueConstraint("kind", "key", name="uq_job_schedules_kind_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(100))
    key: Mapped[str] = mapped_column(sa.String(200))
    workspace_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    interval_seconds: Mapped[int] = mapped_column(sa.Integer)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_job_id: Mapped[int | None] = mapped_column(BigId)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JobRead(CamelModel):
    id: int
    kind: str
    key: str | None
    state: JobState
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_after: datetime
    last_error: str | None
    result: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobPage(CamelModel):
    jobs: list[JobRead]
    total: int
    limit: int = Field(ge=1)
    offset: int = Field(ge=0)
