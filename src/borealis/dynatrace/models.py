"""A workspace's connection to one Dynatrace environment."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, JSONType, UTCDateTime, new_uuid, utcnow


class Connection(Base):
    """One per workspace. Disconnecting clears the token but keeps the row, so problems keep their owner
    and the webhook secret pasted into Dynatrace survives a reconnect."""

    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"), unique=True)
    environment_url: Mapped[str] = mapped_column(sa.String(2048))
    # Encrypted with the SecretBox; NULL once disconnected.
    token_ciphertext: Mapped[str | None] = mapped_column(sa.Text)
    token_id: Mapped[str | None] = mapped_column(sa.String(200))
    token_name: Mapped[str | None] = mapped_column(sa.String(500))
    token_scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cluster_version: Mapped[str | None] = mapped_column(sa.String(100))
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The webhook secret: encrypted so /webhook-url can show it again, hashed for constant-time checks.
    webhook_secret_ciphertext: Mapped[str] = mapped_column(sa.Text)
    webhook_secret_hash: Mapped[str] = mapped_column(sa.String(64))
    last_webhook_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_test_notification_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the last test notification told us about the workspace's payload template.
    last_test_report: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The problem notification Borealis installed through Settings 2.0 (POST /dynatrace/webhook/install):
    # its objectId and alerting profile, until it is removed.
    notification_object_id: Mapped[str | None] = mapped_column(sa.String(500))
    notification_profile_id: Mapped[str | None] = mapped_column(sa.String(500))
    notification_profile_name: Mapped[str | None] = mapped_column(sa.String(500))
    notification_installed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def connected(self) -> bool:
        return self.token_ciphertext is not None

    def forget_notification(self) -> None:
        """Stop tracking the installed notification (removed, or left in another environment)."""
        self.notification_object_id = None
        self.notification_profile_id = None
        self.notification_profile_name = None
        self.notification_installed_at = None


class CachedEntity(Base):
    """One monitored entity as ``GET /api/v2/entities/{id}`` returned it; fetched again once expired."""

    __tablename__ = "entity_cache"
    __table_args__ = (sa.UniqueConstraint("connection_id", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    entity_id: Mapped[str] = mapped_column(sa.String(200))
    entity_type: Mapped[str | None] = mapped_column(sa.String(200))
    display_name: Mapped[str | None] = mapped_column(sa.Text)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class EntityRelation(Base):
    """One edge of the topology (``from --relation--> to``), as listed in ``source_entity_id``'s
    document; replaced whenever that entity is fetched again, and ignored once it expires."""

    __tablename__ = "entity_relations"
    __table_args__ = (
        sa.Index("ix_entity_relations_from", "connection_id", "from_entity_id"),
        sa.Index("ix_entity_relations_to", "connection_id", "to_entity_id"),
        sa.Index("ix_entity_relations_source", "connection_id", "source_entity_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(sa.ForeignKey("connections.id", ondelete="CASCADE"))
    source_entity_id: Mapped[str] = mapped_column(sa.String(200))
    from_entity_id: Mapped[str] = mapped_column(sa.String(200))
    relation: Mapped[str] = mapped_column(sa.String(200))
    to_entity_id: Mapped[str] = mapped_column(sa.String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
