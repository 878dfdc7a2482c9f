"""``/workspaces``: a caller's workspaces, their members and roles, and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from borealis.api.deps import Caller, CurrentCaller, DbSession
from borealis.audit import service as audit
from borealis.audit.models import AuditEntry
from borealis.auth.models import User
from borealis.errors import Forbidden, NotFound
from borealis.schemas import API_ERRORS, MAX_BIGINT, UuidId, error_responses
from borealis.workspaces import service
from borealis.workspaces.models import Membership, Role, Workspace
from borealis.workspaces.schemas import (
    AuditEntryRead,
    AuditPage,
    MemberCreate,
    MemberList,
    MemberRead,
    MemberUpdate,
    WorkspaceCreate,
    WorkspaceList,
    WorkspaceListItem,
    WorkspaceRead,
)

router = APIRouter(prefix="/workspaces", tags=["workspaces"], responses=API_ERRORS)
# Routes with a body answer 400 when it cannot be read.
MEMBER_ERRORS = error_responses(400, 404, 409)


class Access:
    """The caller's standing in the workspace named in the path."""

    def __init__(self, caller: Caller, workspace: Workspace, role: Role) -> None:
        self.caller = caller
        self.workspace = workspace
        self.role = role

    def require(self, needed: Role) -> Access:
        if not self.role.allows(needed):
            raise Forbidden(f"this needs the {needed.value} role in the workspace; you are {self.role.value}")
        return self


def workspace_access(workspace_id: UuidId, caller: CurrentCaller, db_session: DbSession) -> Access:
    """A workspace the caller belongs to. An API key reaches only its own; any other workspace is as
    unknown as a missing one."""
    found = None
    if caller.api_key_prefix is None or workspace_id == caller.workspace_id:
        found = service.membership(db_session=db_session, workspace_id=workspace_id, user_id=caller.user.id)
    if found is None:
        raise NotFound(f"workspace {workspace_id} does not exist; GET /workspaces lists yours")
    workspace, role = found
    return Access(caller, workspace, role)


def owner_access(access: Annotated[Access, Depends(workspace_access)]) -> Access:
    return access.require(Role.OWNER)


MemberAccess = Annotated[Access, Depends(workspace_access)]
OwnerAccess = Annotated[Access, Depends(owner_access)]


def _member(membership: Membership, user: User) -> MemberRead:
    return MemberRead(
        user_id=user.id, username=user.email, role=Role(membership.role), joined_at=membership.created_at
    )


@router.post(
    "", response_model=WorkspaceRead, status_code=status.HTTP_201_CREATED, responses=error_responses(400)
)
def create_workspace(body: WorkspaceCreate, caller: CurrentCaller, db_session: DbSession) -> WorkspaceRead:
    """A new workspace for a team; the caller is its first owner. Invite members with
    POST /workspaces/{id}/members."""
    workspace = service.create(db_session=db_session, name=body.name, owner=caller.user, actor=caller.actor)
    db_session.commit()
    return WorkspaceRead(id=workspace.id, name=workspace.name, role=Role.OWNER)


@router.get("", response_model=WorkspaceList)
def list_workspaces(caller: CurrentCaller, db_session: DbSession) -> WorkspaceList:
    """The caller's workspaces with their role in each; ``current`` marks the one this request acts in."""
    return WorkspaceList(
        items=[
            WorkspaceListItem(
                id=workspace.id, name=workspace.name, role=role, current=workspace.id == caller.workspace_id
            )
            for workspace, role in service.for_user(db_session=db_session, user_id=caller.user.id)
        ]
    )


@router.get("/{workspace_id}/members", response_model=MemberList, responses=error_responses(404))
def list_members(access: MemberAccess, db_session: DbSession) -> MemberList:
    """The workspace's members and their roles, owners first."""
    rows = service.members(db_session=db_session, workspace_id=access.workspace.id)
    return MemberList(items=[_member(membership, user) for membership, user in rows])


@router.post(
    "/{workspace_id}/members",
    response_model=MemberRead,
    status_code=status.HTTP_201_CREATED,
    responses=MEMBER_ERRORS,
)
def add_member(body: MemberCreate, access: OwnerAccess, db_session: DbSession) -> MemberRead:
    """Give an existing account a role here (owners). The username is the account's email; an
    administrator creates accounts with ``borealis users create``."""
    membership, user = service.add_member(
        db_session=db_session,
        workspace_id=access.workspace.id,
        username=body.username,
        role=body.role,
        actor=access.caller.actor,
    )
    db_session.commit()
    return _member(membership, user)


@router.patch("/{workspace_id}/members/{user_id}", response_model=MemberRead, responses=MEMBER_ERRORS)
def set_member_role(
    user_id: UuidId, body: MemberUpdate, access: OwnerAccess, db_session: DbSession
) -> MemberRead:
    """Change a member's role (owners). The last owner cannot be demoted (409); the member's API keys
    act with the new role from their next request."""
    membership, user = service.set_role(
        db_session=db_session,
        workspace_id=access.workspace.id,
        user_id=user_id,
        role=body.role,
        actor=access.caller.actor,
    )
    db_session.commit()
    return _member(membership, user)


@router.delete(
    "/{workspace_id}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(404, 409),
)
def remove_member(user_id: UuidId, access: OwnerAccess, db_session: DbSession) -> Response:
    """Take a member out (owners). The last owner cannot be removed (409); the member's API keys for
    this workspace stop working at once."""
    service.remove_member(
        db_session=db_session, workspace_id=access.workspace.id, user_id=user_id, actor=access.caller.actor
    )
    db_session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _entry(entry: AuditEntry) -> AuditEntryRead:
    return AuditEntryRead(
        id=entry.id,
        at=entry.at,
        actor=entry.actor_email,
        actor_id=entry.actor_id,
        address=entry.address,
        via=entry.via,
        action=entry.action,
        target=entry.target,
        details=entry.details,
    )


@router.get("/{workspace_id}/audit", response_model=AuditPage, responses=error_responses(404))
def get_audit(
    access: OwnerAccess,
    db_session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_BIGINT)] = None,
) -> AuditPage:
    """Every change to members, roles, the connection, settings, API keys and the webhook secret, newest
    first (owners): who, what, when, and from which address. Secrets are never in it. Entries older
    than the retention (``BOREALIS_AUDIT_RETENTION_DAYS``) are removed."""
    entries = audit.page(
        db_session=db_session, workspace_id=access.workspace.id, limit=limit + 1, before=before
    )
    more = len(entries) > limit
    entries = entries[:limit]
    return AuditPage(items=[_entry(entry) for entry in entries], next_before=entries[-1].id if more else None)
