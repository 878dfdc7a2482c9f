"""What syncing with Dynatrace keeps: per-problem enrichment, the per-connection entity cache with its
relationships, and each connection's sync state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, JSONType, UTCDateTime, utcnow
from borealis.schemas import CamelModel


class ProblemEnrichment(Base):
    """What the API added to one problem: its details (evidence, impact analysis, comments), the
    entities looked up, and what could not be fetched and why."""

    __tablename__ = "problem_enrichments"

    problem_id: Mapped[int] = mapped_column(
        BigId, sa.ForeignKey("problems.id", ondelete="CASCADE"), primary_key=True
    )
    connection_id: Mapped[str] = mapped_column(
        sa.ForeignKey("connections.id", ondelete="CASCADE"), index=True
    )
    # complete: everything fetched; partial: some of it; none: nothing could be fetched.
    status: Mapped[str] = mapped_column(sa.String(16))
    # GET /api/v2/problems/{id}?fields=evidenceDetails,impactAnalysis,recentComments, as Dynatrace sent it.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    entity_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # [{"what", "reason", "scope"?}]: what a missing scope or an API error kept from us.
    not_fetched: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    runs: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SyncState(Base):
    """Where reconciliation of one connection stands: the cursor for "changed since", the last run."""

    __tablename__ = "sync_states"

    connection_id: Mapped[str] = mapped_column(
        sa.ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True
    )
    # The next sync asks for problems active since this moment (less a safety overlap).
    cursor: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_run_kind: Mapped[str | None] = mapped_column(sa.String(16))
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # {"created", "updated", "closed", "unchanged", ...} of the last run.
    last_result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # Why the last run did not finish (cleared by the next success).
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    backfilled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # PIDs of open problems Dynatrace answered 404 for (another environment, past retention): not
    # asked about again. Bounded, newest last.
    unknown_pids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    runs: Mapped[int] = mapped_column(sa.Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# --- wire shapes -----------------------------------------------------------------------------------------


class SyncCounts(CamelModel):
    """What one backfill or sync changed."""

    created: int = 0
    updated: int = 0
    closed: int = 0
    unchanged: int = 0
    # Problems the API listed that could not be read (no problemId).
    unreadable: int = 0
    # Open problems the listing left out that Dynatrace no longer knows (404 when asked one by one).
    not_found: int = 0


class SyncRead(SyncCounts):
    """The answer of ``POST /dynatrace/sync``."""

    success: bool = True
    job_id: int
    since: datetime | None = None
    finished_at: datetime | None = None
    listed: int = 0


class SyncStateRead(CamelModel):
    """Sync state as ``/dynatrace/status`` shows it."""

    last_sync_at: datetime | None = None
    last_sync_kind: str | None = None
    last_success_at: datetime | None = None
    last_result: dict[str, Any] | None = None
    last_error: str | None = None
    backfilled_at: datetime | None = None
    next_run_at: datetime | None = None
    interval_seconds: int | None = None


class NotFetchedRead(CamelModel):
    what: str
    reason: str
    scope: str | None = None


class EnrichmentRead(CamelModel):
    """``GET /dynatrace/alerts/{id}/enrichment``."""

    alert_id: int
    status: str
    fetched_at: datetime | None = None
    details: dict[str, Any] | None = None
    entities: list[dict[str, Any]] = Field(default_factory=list)
    not_fetched: list[NotFetchedRead] = Field(default_factory=list)
