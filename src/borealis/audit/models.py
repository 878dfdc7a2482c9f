"""One row per change an owner may need to account for. Never holds a secret: an entry names what
changed (a key's prefix, a secret's rotation), not the value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, BigId, JSONType, UTCDateTime, utcnow


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change and how: the member, the address the request came from, and the way in (the
    web session, or an API key named by its prefix)."""

    user_id: str | None
    email: str
    address: str | None = None
    via: str = "cli"


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (sa.Index("ix_audit_entries_workspace_id_id", "workspace_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(sa.ForeignKey("workspaces.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The member as they were: the entry outlives their account.
    actor_id: Mapped[str | None] = mapped_column(sa.String(36))
    actor_email: Mapped[str] = mapped_column(sa.String(320))
    address: Mapped[str | None] = mapped_column(sa.String(64))
    via: Mapped[str] = mapped_column(sa.String(64))
    # "member.added", "connection.connected", "api_key.revoked", ...
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str | None] = mapped_column(sa.String(320))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
