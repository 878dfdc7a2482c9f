"""A team of an owner, a responder and a viewer in one workspace, each with an API key there, and an
outsider who owns a workspace of their own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.db import Database
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Role

SET_UP = Actor(user_id=None, email="test set-up", via="test")


@dataclass
class Member:
    user_id: str
    email: str
    workspace_id: str
    api_key: str
    client: httpx.Client


@dataclass
class Team:
    workspace_id: str
    owner: Member
    responder: Member
    viewer: Member
    # Owner of another workspace, and a member of nothing here.
    outsider: Member


def add_key(database: Database, base_url: str, *, email: str, workspace_id: str) -> Member:
    """A key of the account's in the workspace, and a client that sends it."""
    with database.session(write=True) as session:
        user = auth_service.get_by_email(db_session=session, email=email)
        assert user is not None
        _, key = auth_service.create_api_key(
            db_session=session, user=user, workspace_id=workspace_id, actor=SET_UP
        )
        session.commit()
        user_id = user.id
    client = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    return Member(user_id=user_id, email=email, workspace_id=workspace_id, api_key=key, client=client)


@contextmanager
def running_team(database: Database, base_url: str, *, password: str | None = None) -> Iterator[Team]:
    """The team, its accounts created with ``password`` (for logging in to the pages)."""
    emails = {role: f"{role}@example.com" for role in ("owner", "responder", "viewer", "outsider")}
    with database.session(write=True) as session:
        users = {
            role: workspaces_service.create_user(db_session=session, email=email, password=password)
            for role, email in emails.items()
        }
        owner = users["owner"][0]
        workspace = workspaces_service.create(db_session=session, name="On call", owner=owner, actor=SET_UP)
        for role in (Role.RESPONDER, Role.VIEWER):
            workspaces_service.add_member(
                db_session=session,
                workspace_id=workspace.id,
                username=emails[role.value],
                role=role,
                actor=SET_UP,
            )
        session.commit()
        workspace_id, outsider_workspace = workspace.id, users["outsider"][1].id
    members = {
        role: add_key(database, base_url, email=emails[role], workspace_id=workspace_id)
        for role in ("owner", "responder", "viewer")
    }
    outsider = add_key(database, base_url, email=emails["outsider"], workspace_id=outsider_workspace)
    team = Team(workspace_id=workspace_id, outsider=outsider, **members)
    try:
        yield team
    finally:
        for member in (team.owner, team.responder, team.viewer, team.outsider):
            member.client.close()
