"""Incidents: groups of related problems, how each problem came to be in one, and what happened to it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from borealis.db import Base, BigId, JSONType, UTCDateTime, utcnow
from borealis.incidents.correlation import (
    DEFAULT_MAX_HOPS,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_MINUTES,
    CorrelationSettings,
)

OPEN = "open"
RESOLVED = "resolved"
STATUSES = (OPEN, RESOLVED)


class Incident(Base):
    """A group of related problems of one workspace.

    Title, priority, affected entities, start and counts are kept from the member problems (see
    ``service.refresh``) so the list needs no join. An incident folded into another keeps its row and
    timeline with ``merged_into_id`` set, so old links still lead somewhere.
    """

    __tablename__ = "incidents"
    __table_args__ = (
        sa.Index("ix_incidents_workspace_started", "workspace_id", "started_at", "id"),
        sa.Index("ix_incidents_workspace_status_started", "workspace_id", "status", "started_at", "id"),
        sa.Index("ix_incidents_workspace_priority_started", "workspace_id", "priority", "started_at", "id"),
        sa.Index(
            "ix_incidents_workspace_assignee_started", "workspace_id", "assignee_id", "started_at", "id"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(16), default=OPEN)
    # The highest normalized priority among the problems (critical, high, medium, low, info).
    priority: Mapped[str] = mapped_column(sa.String(16), default="info")
    # [{"entityId", "name", "type"}]: impacted and root-cause entities of all problems, first seen first.
    affected_entities: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # The earliest Dynatrace start time among the problems (the first receipt when Dynatrace gave none).
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    problem_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    open_problem_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    # A person resolved, reopened, merged or rearranged it: automatic merges leave it alone.
    manual: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    merged_into_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("incidents.id", ondelete="SET NULL"), index=True
    )
    # The on-call workflow: who said "I'm on it" first and when, and who has it now.
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by_id: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    assignee_id: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    # From the start to the first acknowledgement, and to the last resolution (None while open).
    time_to_acknowledge_seconds: Mapped[float | None] = mapped_column(sa.Float)
    time_to_resolve_seconds: Mapped[float | None] = mapped_column(sa.Float)
    # Lower-case title, display ids and entity names: what the `q` filter searches.
    search_text: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class IncidentProblem(Base):
    """The one incident a problem belongs to, and why: the strategy (the strongest signal, or ``new``,
    ``manual``, ``merge``), the score and a sentence a human can check."""

    __tablename__ = "incident_problems"

    problem_id: Mapped[int] = mapped_column(
        sa.ForeignKey("problems.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str] = mapped_column(sa.String(32))
    score: Mapped[float | None] = mapped_column(sa.Float)
    reason: Mapped[str] = mapped_column(sa.Text)
    # The problem it was found related to (None for the first of an incident or a manual move).
    related_problem_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("problems.id", ondelete="SET NULL"), index=True
    )
    attached_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The problem's state as this incident last saw it: a change is a timeline event.
    problem_state: Mapped[str] = mapped_column(sa.String(64))

    incident: Mapped[Incident] = relationship(lazy="joined", innerjoin=True)


class IncidentEvent(Base):
    """One line of an incident's timeline: opened, problem joined, state changed, merged, resolved, ..."""

    __tablename__ = "incident_events"
    __table_args__ = (sa.Index("ix_incident_events_incident_at", "incident_id", "at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(sa.String(40))
    # "system" for correlation and lifecycle, "user" for a manual action.
    actor: Mapped[str] = mapped_column(sa.String(16), default="system")
    # The member who acted (a manual action), kept as None once their account is gone.
    user_id: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    problem_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("problems.id", ondelete="SET NULL"), index=True
    )
    message: Mapped[str] = mapped_column(sa.Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class IncidentKey(Base):
    """The candidate index: one row per (problem, entity id / tag / zone / title key) for problems of
    open incidents only, so finding related incidents never scans incidents. Rows leave when their
    incident resolves and come back when it reopens."""

    __tablename__ = "incident_keys"
    __table_args__ = (
        sa.UniqueConstraint("problem_id", "key"),
        sa.Index("ix_incident_keys_workspace_key", "workspace_id", "key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(300))
    problem_id: Mapped[int] = mapped_column(sa.ForeignKey("problems.id", ondelete="CASCADE"))
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"), index=True)


class CorrelationSettingsRow(Base):
    """A workspace's correlation settings; a workspace without a row gets the defaults."""

    __tablename__ = "correlation_settings"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    window_minutes: Mapped[int] = mapped_column(sa.Integer, default=DEFAULT_WINDOW_MINUTES)
    threshold: Mapped[float] = mapped_column(sa.Float, default=DEFAULT_THRESHOLD)
    max_hops: Mapped[int] = mapped_column(sa.Integer, default=DEFAULT_MAX_HOPS)
    root_cause: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    entities: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    topology: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    tags: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    management_zones: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    title: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    time: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def to_settings(self) -> CorrelationSettings:
        return CorrelationSettings(
            window_minutes=self.window_minutes,
            threshold=self.threshold,
            max_hops=self.max_hops,
            root_cause=self.root_cause,
            entities=self.entities,
            topology=self.topology,
            tags=self.tags,
            management_zones=self.management_zones,
            title=self.title,
            time=self.time,
        )


MAX_NOTE_CHARS = 10_000


class IncidentNote(Base):
    """A responder's note on an incident, in Markdown. Its author may edit it; each edit keeps the text
    it replaced (``IncidentNoteRevision``)."""

    __tablename__ = "incident_notes"
    __table_args__ = (sa.Index("ix_incident_notes_incident_id_id", "incident_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id", ondelete="CASCADE"))
    author_id: Mapped[str | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IncidentNoteRevision(Base):
    """A note's text as it was before an edit."""

    __tablename__ = "incident_note_revisions"
    __table_args__ = (sa.Index("ix_incident_note_revisions_note_id_id", "note_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    note_id: Mapped[int] = mapped_column(sa.ForeignKey("incident_notes.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(sa.Text)
    # When this text was written (the note's creation or the previous edit) and when it was replaced.
    written_at: Mapped[datetime] = mapped_column(UTCDateTime)
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
