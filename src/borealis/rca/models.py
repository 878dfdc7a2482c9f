"""RCA runs (one row per analysis of an incident) and the evidence each one gathered."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, JSONType, UTCDateTime, utcnow


class RcaStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    # Not run: the per-workspace rate limit of automatic runs was reached (the reason says so).
    SKIPPED = "skipped"


# A run in one of these has yet to finish: its job still owns it.
ACTIVE = (RcaStatus.QUEUED.value, RcaStatus.RUNNING.value)


class Feedback(StrEnum):
    """How right a responder found a report."""

    RIGHT = "right"
    PARTLY_RIGHT = "partly_right"
    WRONG = "wrong"


class RcaTrigger(StrEnum):
    NEW_INCIDENT = "new_incident"
    PROBLEMS_ADDED = "problems_added"
    ON_DEMAND = "on_demand"


class RcaRun(Base):
    """One analysis of an incident. The newest run is the incident's RCA; older runs stay as history.

    ``report`` holds the report without its evidence (the evidence rows hold that), ``markdown`` its
    rendering, ``reason`` why it was skipped or failed, or why the model's narrative was refused.
    """

    __tablename__ = "rca_runs"
    __table_args__ = (
        sa.Index("ix_rca_runs_incident_id_id", "incident_id", "id"),
        # The rate limit counts a workspace's recent automatic runs.
        sa.Index("ix_rca_runs_workspace_id_created_at", "workspace_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default=RcaStatus.QUEUED.value)
    trigger: Mapped[str] = mapped_column(sa.String(32))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    # "deterministic" or "llm:<model>": who wrote the report that stands.
    analyzer: Mapped[str | None] = mapped_column(sa.String(200))
    verdict: Mapped[str | None] = mapped_column(sa.String(16))
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    markdown: Mapped[str | None] = mapped_column(sa.Text)
    # Tokens, requests, tool calls and cost of the narrative; Dynatrace calls of the gathering.
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    job_id: Mapped[int | None] = mapped_column(BigId)
    # Earliest start: a re-run waits a little for more problems to join (debounce).
    run_after: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # A responder's mark on the finished report (``Feedback``), and the true cause they named.
    feedback: Mapped[str | None] = mapped_column(sa.String(16))
    feedback_cause: Mapped[str | None] = mapped_column(sa.String(500))
    feedback_by_id: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RcaEvidence(Base):
    """One evidence item of a run, with the query that produced it and a link back to Dynatrace."""

    __tablename__ = "rca_evidence"
    __table_args__ = (sa.UniqueConstraint("rca_id", "evidence_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    rca_id: Mapped[int] = mapped_column(sa.ForeignKey("rca_runs.id", ondelete="CASCADE"))
    # The id the report cites ("E1").
    evidence_id: Mapped[str] = mapped_column(sa.String(16))
    kind: Mapped[str] = mapped_column(sa.String(32))
    summary: Mapped[str] = mapped_column(sa.Text)
    source: Mapped[str] = mapped_column(sa.Text)
    start_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    entity_id: Mapped[str | None] = mapped_column(sa.String(200), index=True)
    entity_name: Mapped[str | None] = mapped_column(sa.Text)
    entity_type: Mapped[str | None] = mapped_column(sa.String(200))
    link: Mapped[str | None] = mapped_column(sa.Text)
    event_type: Mapped[str | None] = mapped_column(sa.String(200))
    root_cause_relevant: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    problem_id: Mapped[str | None] = mapped_column(sa.String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
