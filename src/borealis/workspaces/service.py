"""Workspaces and their members. Callers own the transaction.

Every change that could leave a workspace without an owner first locks the workspace's row, so two
owners demoting each other at once cannot both succeed."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.audit import service as audit
from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.auth.models import User
from borealis.errors import Conflict, InvalidInput, NotFound
from borealis.schemas import checked_id, storable
from borealis.workspaces.models import Membership, Role, Workspace

MAX_NAME_CHARS = 200
# The name of the workspace every account starts with, where it is the owner.
PERSONAL = "Personal"


def clean_name(name: str) -> str:
    name = " ".join(storable(name, field="name").split())
    if not name:
        raise InvalidInput(
            'a workspace needs a name: send {"name": "..."} with at least one character',
            details={"field": "name"},
        )
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(
            f"a workspace name has at most {MAX_NAME_CHARS} characters", details={"field": "name"}
        )
    return name


def create(*, db_session: Session, name: str, owner: User, actor: Actor) -> Workspace:
    """A new workspace with ``owner`` as its first owner."""
    workspace = Workspace(name=clean_name(name))
    db_session.add(workspace)
    db_session.flush()
    db_session.add(Membership(workspace_id=workspace.id, user_id=owner.id, role=Role.OWNER.value))
    audit.record(
        db_session=db_session,
        workspace_id=workspace.id,
        actor=actor,
        action="workspace.created",
        target=workspace.name,
        details={"owner": owner.email},
    )
    db_session.flush()
    return workspace


def create_user(
    *, db_session: Session, email: str, password: str | None = None, is_admin: bool = False
) -> tuple[User, Workspace]:
    """A new account with a personal workspace of its own, where it is the owner: every user can work
    on their own from the start, and teams invite them into shared workspaces."""
    user = auth_service.create(db_session=db_session, email=email, password=password, is_admin=is_admin)
    actor = Actor(user_id=user.id, email=user.email, via="account created")
    return user, create(db_session=db_session, name=PERSONAL, owner=user, actor=actor)


def ensure_one(*, db_session: Session, user: User) -> None:
    """Give an account that belongs to no workspace (removed from every one) a personal workspace
    again, so that logging in always leads somewhere."""
    if not for_user(db_session=db_session, user_id=user.id):
        actor = Actor(user_id=user.id, email=user.email, via="login")
        create(db_session=db_session, name=PERSONAL, owner=user, actor=actor)


def get(*, db_session: Session, workspace_id: str) -> Workspace | None:
    return db_session.get(Workspace, workspace_id)


def for_user(*, db_session: Session, user_id: str) -> list[tuple[Workspace, Role]]:
    """The user's workspaces with their role in each, oldest membership first (their personal one)."""
    rows = db_session.execute(
        sa.select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.user_id == user_id)
        .order_by(Membership.created_at, Workspace.id)
    ).all()
    return [(workspace, Role(role)) for workspace, role in rows]


def all_with_counts(*, db_session: Session) -> list[tuple[Workspace, int]]:
    """Every workspace with its number of members, oldest first (for the operator's command line)."""
    counts = (
        sa.select(Membership.workspace_id, sa.func.count().label("members"))
        .group_by(Membership.workspace_id)
        .subquery()
    )
    rows = db_session.execute(
        sa.select(Workspace, sa.func.coalesce(counts.c.members, 0))
        .outerjoin(counts, counts.c.workspace_id == Workspace.id)
        .order_by(Workspace.created_at, Workspace.id)
    ).all()
    return [(workspace, int(count)) for workspace, count in rows]


def membership(*, db_session: Session, workspace_id: str, user_id: str) -> tuple[Workspace, Role] | None:
    """The workspace and the user's role there, or None when they are not a member."""
    row = db_session.execute(
        sa.select(Workspace, Membership.role)
        .join(Membership, Membership.workspace_id == Workspace.id)
        .where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
    ).first()
    return (row[0], Role(row[1])) if row is not None else None


def members(*, db_session: Session, workspace_id: str) -> list[tuple[Membership, User]]:
    """The workspace's members, owners first, then by email."""
    rows = db_session.execute(
        sa.select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace_id)
        .order_by(User.email)
    ).all()
    return sorted(((membership, user) for membership, user in rows), key=lambda row: -Role(row[0].role).rank)


def is_member(*, db_session: Session, workspace_id: str, user_id: str) -> bool:
    return membership(db_session=db_session, workspace_id=workspace_id, user_id=user_id) is not None


def add_member(
    *, db_session: Session, workspace_id: str, username: str, role: Role, actor: Actor
) -> tuple[Membership, User]:
    """Give an existing account a role in the workspace. Accounts are created by an admin
    (``borealis users create``); the username is the account's email."""
    user = auth_service.get_by_email(db_session=db_session, email=storable(username, field="username"))
    if user is None:
        raise InvalidInput(
            f"no account with username '{username.strip()}'; an admin creates it with "
            "`borealis users create EMAIL`, then add it here"
        )
    if is_member(db_session=db_session, workspace_id=workspace_id, user_id=user.id):
        raise Conflict(
            f"{user.email} is already a member; change their role with PATCH .../members/{user.id}"
        )
    membership = Membership(workspace_id=workspace_id, user_id=user.id, role=role.value)
    db_session.add(membership)
    audit.record(
        db_session=db_session,
        workspace_id=workspace_id,
        actor=actor,
        action="member.added",
        target=user.email,
        details={"role": role.value},
    )
    db_session.flush()
    return membership, user


def set_role(
    *, db_session: Session, workspace_id: str, user_id: str, role: Role, actor: Actor
) -> tuple[Membership, User]:
    """Change a member's role (idempotent)."""
    membership, user = _membership(db_session, workspace_id, user_id)
    before = Role(membership.role)
    if before is role:
        return membership, user
    if before is Role.OWNER:
        _keep_an_owner(db_session, workspace_id, "demote")
    membership.role = role.value
    audit.record(
        db_session=db_session,
        workspace_id=workspace_id,
        actor=actor,
        action="member.role_changed",
        target=user.email,
        details={"from": before.value, "to": role.value},
    )
    db_session.flush()
    return membership, user


def remove_member(*, db_session: Session, workspace_id: str, user_id: str, actor: Actor) -> None:
    """Take a member out of the workspace; their API keys for it stop working with their next request."""
    membership, user = _membership(db_session, workspace_id, user_id)
    if membership.role == Role.OWNER.value:
        _keep_an_owner(db_session, workspace_id, "remove")
    db_session.delete(membership)
    audit.record(
        db_session=db_session,
        workspace_id=workspace_id,
        actor=actor,
        action="member.removed",
        target=user.email,
        details={"role": membership.role},
    )
    db_session.flush()


# The workspace's on/off settings, each with the name its audit entry and the API give it.
SWITCHES = {"rca_enabled": "rcaEnabled", "write_back": "writeBack"}


def set_switch(
    *, db_session: Session, workspace_id: str, name: str, enabled: bool, actor: Actor
) -> Workspace:
    """Turn one of the workspace's switches (``SWITCHES``) on or off; a change goes to the audit log."""
    workspace = db_session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound("the workspace is gone")
    if getattr(workspace, name) != enabled:
        setattr(workspace, name, enabled)
        audit.record(
            db_session=db_session,
            workspace_id=workspace_id,
            actor=actor,
            action=f"settings.{name.removesuffix('_enabled')}_changed",
            details={SWITCHES[name]: enabled},
        )
    db_session.flush()
    return workspace


def _membership(db_session: Session, workspace_id: str, user_id: str) -> tuple[Membership, User]:
    checked_id(user_id, field="userId")
    # The workspace's row first: changes to its members happen one at a time. FOR NO KEY UPDATE, so
    # the rows that merely refer to the workspace (a delivery's new problem) are written meanwhile.
    db_session.execute(
        sa.select(Workspace.id).where(Workspace.id == workspace_id).with_for_update(key_share=True)
    )
    row = db_session.execute(
        sa.select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.workspace_id == workspace_id, Membership.user_id == user_id)
    ).first()
    if row is None:
        raise NotFound(f"no member with user id '{user_id}' in this workspace; GET .../members lists them")
    return row[0], row[1]


def _keep_an_owner(db_session: Session, workspace_id: str, verb: str) -> None:
    owners = db_session.scalar(
        sa.select(sa.func.count())
        .select_from(Membership)
        .where(Membership.workspace_id == workspace_id, Membership.role == Role.OWNER.value)
    )
    if (owners or 0) <= 1:
        raise Conflict(
            f"cannot {verb} the last owner: a workspace keeps at least one; make another member owner first"
        )
