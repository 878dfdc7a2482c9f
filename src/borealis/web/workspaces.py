"""The workspace pages: the header's switcher, the members page (invite, roles, removal) and a new
workspace. They act on the session's current workspace, like every page."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from borealis.api.deps import CurrentCaller, DbSession, Owner, current_session_id
from borealis.auth import sessions
from borealis.errors import BorealisError, InvalidInput, NotAuthenticated
from borealis.schemas import ID_PATTERN
from borealis.web.routing import PageRoute
from borealis.web.security import flash, verify_csrf
from borealis.web.templating import render
from borealis.workspaces import service
from borealis.workspaces.models import Role

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])

FormText = Annotated[str, Form()]
ROLES = [
    (Role.VIEWER, "Viewer: reads everything"),
    (Role.RESPONDER, "Responder: works incidents"),
    (Role.OWNER, "Owner: members, connection, settings"),
]


def _back(path: str = "/members") -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _role(value: str) -> Role:
    try:
        return Role(value.strip())
    except ValueError:
        raise InvalidInput(f"Choose a role: {', '.join(role.value for role in Role)}.") from None


@router.post("/workspace")
def switch_workspace(
    request: Request, caller: CurrentCaller, db_session: DbSession, workspace_id: FormText = ""
) -> Response:
    """Act in another of the member's workspaces from now on, in this browser."""
    session_id = current_session_id(request)
    if session_id is None:
        raise NotAuthenticated("switching workspaces is for the web session; an API key keeps its own")
    found = None
    if re.fullmatch(ID_PATTERN, workspace_id):
        found = service.membership(db_session=db_session, workspace_id=workspace_id, user_id=caller.user.id)
    if found is None:
        flash(request, "You are not a member of that workspace.", "error")
        return _back("/incidents")
    sessions.choose_workspace(db_session=db_session, session_id=session_id, workspace_id=workspace_id)
    db_session.commit()
    workspace, role = found
    flash(request, f"You are working in {workspace.name} as {role.value}.")
    return _back("/incidents")


@router.get("/members")
def members_page(request: Request, caller: CurrentCaller, db_session: DbSession) -> Response:
    context: dict[str, Any] = {
        "title": "Members",
        "active": "members",
        "user": caller.user,
        "me": caller,
        "members": service.members(db_session=db_session, workspace_id=caller.workspace_id),
        "roles": ROLES,
        "owner": caller.may(Role.OWNER),
    }
    return render(request, "members.html", context)


def _act(request: Request, action: Any) -> Response:
    """Run a change and come back to the members page with what happened, or why it was refused."""
    try:
        flash(request, action())
    except BorealisError as exc:
        flash(request, exc.message, "error")
    return _back()


@router.post("/members")
def invite_member(
    request: Request, caller: Owner, db_session: DbSession, username: FormText = "", role: FormText = "viewer"
) -> Response:
    def action() -> str:
        _, user = service.add_member(
            db_session=db_session,
            workspace_id=caller.workspace_id,
            username=username,
            role=_role(role),
            actor=caller.actor,
        )
        db_session.commit()
        return f"{user.email} is now a {role.strip()} of {caller.workspace.name}."

    return _act(request, action)


@router.post("/members/{user_id}/role")
def change_role(
    request: Request, caller: Owner, db_session: DbSession, user_id: str, role: FormText = ""
) -> Response:
    def action() -> str:
        _, user = service.set_role(
            db_session=db_session,
            workspace_id=caller.workspace_id,
            user_id=user_id,
            role=_role(role),
            actor=caller.actor,
        )
        db_session.commit()
        return f"{user.email} is now a {role.strip()}."

    return _act(request, action)


@router.post("/members/{user_id}/remove")
def remove_member(request: Request, caller: Owner, db_session: DbSession, user_id: str) -> Response:
    def action() -> str:
        service.remove_member(
            db_session=db_session, workspace_id=caller.workspace_id, user_id=user_id, actor=caller.actor
        )
        db_session.commit()
        return "The member is removed; their keys for this workspace no longer work."

    return _act(request, action)


@router.post("/workspaces/new")
def create_workspace(
    request: Request, caller: CurrentCaller, db_session: DbSession, name: FormText = ""
) -> Response:
    """A new workspace, with the member as its owner, and the session switched to it."""
    session_id = current_session_id(request)
    try:
        workspace = service.create(db_session=db_session, name=name, owner=caller.user, actor=caller.actor)
    except BorealisError as exc:
        flash(request, exc.message, "error")
        return _back()
    if session_id is not None:
        sessions.choose_workspace(db_session=db_session, session_id=session_id, workspace_id=workspace.id)
    db_session.commit()
    flash(
        request,
        f"{workspace.name} is created and you are its owner. Invite your team below, then connect Dynatrace.",
    )
    return _back()
