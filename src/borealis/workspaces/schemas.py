"""Wire shapes of the /workspaces endpoints (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from borealis.schemas import CamelModel
from borealis.workspaces.models import Role


class WorkspaceCreate(CamelModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)


class WorkspaceRead(CamelModel):
    id: str
    name: str
    # The caller's role in it.
    role: Role


class WorkspaceListItem(WorkspaceRead):
    # Whether this request acts in it (an API key's workspace, or the web session's choice).
    current: bool


class WorkspaceList(CamelModel):
    items: list[WorkspaceListItem]


class MemberCreate(CamelModel):
    model_config = ConfigDict(extra="forbid")

    # The account's login name: its email.
    username: str = Field(min_length=1, max_length=320)
    role: Role = Role.VIEWER


class MemberUpdate(CamelModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class MemberRead(CamelModel):
    user_id: str
    username: str
    role: Role
    joined_at: datetime


class MemberList(CamelModel):
    items: list[MemberRead]


class AuditEntryRead(CamelModel):
    id: int
    at: datetime
    actor: str
    actor_id: str | None
    address: str | None
    via: str
    action: str
    target: str | None
    details: dict[str, Any]


class AuditPage(CamelModel):
    items: list[AuditEntryRead]
    # Pass as ``before`` for the next (older) page; null on the last page.
    next_before: int | None
