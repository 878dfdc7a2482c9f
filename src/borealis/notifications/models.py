"""Destinations, their delivery log, and how far each workspace's timeline has been dispatched."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, JSONType, UTCDateTime, new_uuid, utcnow

KINDS = ("slack", "teams", "webhook")
EVENTS = (
    "incident.opened",
    "incident.updated",
    "rca.completed",
    "incident.acknowledged",
    "incident.assigned",
    "incident.resolved",
    "incident.reopened",
)


class Destination(Base):
    """Where a workspace's incident events go. The URL (a Slack or Teams webhook URL is itself a secret)
    and the signing secret are encrypted; only the host is shown after creation."""

    __tablename__ = "destinations"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200))
    url_ciphertext: Mapped[str] = mapped_column(sa.Text)
    # What is shown of the URL: its scheme and host.
    url_hint: Mapped[str] = mapped_column(sa.String(300))
    secret_ciphertext: Mapped[str | None] = mapped_column(sa.Text)
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # {"severities": [...], "priorities": [...], "managementZones": [...], "tags": [...]}: each given
    # list must share a value with the incident's problems; an empty or absent list lets all through.
    filters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    enabled: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationDelivery(Base):
    """One event for one destination: its payload as first built, and how the sending went."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (sa.Index("ix_notification_deliveries_destination_id_id", "destination_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination_id: Mapped[str] = mapped_column(sa.ForeignKey("destinations.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(sa.String(40))
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incidents.id", ondelete="SET NULL"))
    # pending, delivered, failed
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class DispatchCursor(Base):
    """The newest timeline event of the workspace already turned into deliveries."""

    __tablename__ = "notification_cursors"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    last_event_id: Mapped[int] = mapped_column(BigId, default=0)
