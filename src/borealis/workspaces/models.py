"""A workspace owns every per-team record; a membership gives one user one role in it."""

from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from borealis.db import Base, UTCDateTime, new_uuid, utcnow


class Role(enum.StrEnum):
    """What a member may do; each role may do everything the ones below it may."""

    VIEWER = "viewer"
    RESPONDER = "responder"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.RESPONDER: 1, Role.OWNER: 2}


class Workspace(Base):
    """A team's space. Its row is also the correlation lock of everything in it
    (``incidents.service.lock_workspace``)."""

    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(sa.String(200))
    # The seed's RCA preference: every new incident gets an analysis.
    rca_enabled: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    # Write each RCA back onto the Dynatrace problems as a comment (when the token has problems.write).
    write_back: Mapped[bool] = mapped_column(sa.Boolean, default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Membership(Base):
    __tablename__ = "workspace_members"

    workspace_id: Mapped[str] = mapped_column(
        sa.ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
