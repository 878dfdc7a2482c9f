"""Request dependencies shared by every domain: the database session, settings and the caller."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from borealis import csrf
from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.auth import sessions
from borealis.auth.models import User, UserSession
from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import Database, session_scope, utcnow
from borealis.errors import Forbidden, NotAuthenticated
from borealis.ingest.intake import pending_follow_ups
from borealis.jobs import follow_ups
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Role, Workspace

logger = logging.getLogger("borealis.auth")

SESSION_USER_KEY = "user_id"
# The cookie's reference to its ``user_sessions`` row: a random token, of which the row keeps the hash.
SESSION_TOKEN_KEY = "session"
# How long a request waits for its user's follow-ups at most (a storm's worth takes longer).
FOLLOW_UP_WAIT = 2.0


def get_database(request: Request) -> Database:
    return request.app.state.database


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_secret_box(request: Request) -> SecretBox:
    return request.app.state.secret_box


def get_db(request: Request) -> Iterator[Session]:
    """The request's one session. Writing methods take SQLite's write lock at BEGIN; the view commits
    before it answers, and whatever it left uncommitted is rolled back."""
    write = request.method not in csrf.SAFE_METHODS
    yield from session_scope(request.app.state.database, write=write)


DbSession = Annotated[Session, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings)]
Secrets = Annotated[SecretBox, Depends(get_secret_box)]


# Declared as a security scheme, so the OpenAPI document says how to authenticate.
_api_key = HTTPBearer(
    scheme_name="apiKey",
    description="An API key: `borealis api-keys create EMAIL`, or the web UI's Settings page.",
    auto_error=False,
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, in which workspace, with which role. Every route acts on ``workspace_id``; an API
    key is bound to the workspace it was created in, a web session to the one its switcher chose."""

    user: User
    workspace: Workspace
    role: Role
    # The API key the request came with (None: the web session).
    api_key_prefix: str | None
    address: str | None

    @property
    def workspace_id(self) -> str:
        return self.workspace.id

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)

    @property
    def actor(self) -> Actor:
        via = f"api key {self.api_key_prefix}" if self.api_key_prefix else "web session"
        return Actor(user_id=self.user.id, email=self.user.email, address=self.address, via=via)


def get_caller(
    request: Request,
    db_session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_api_key)] = None,
) -> Caller:
    """The caller: an API key in ``Authorization: Bearer``, else the UI's signed session cookie. The
    role is looked up on every request, so a member who is demoted or removed loses it at once, and so
    do their keys."""
    address = request.client.host if request.client else None
    if credentials is not None:
        found = auth_service.key_and_creator(db_session=db_session, plain_key=credentials.credentials)
        if found is None:
            raise NotAuthenticated(
                "the API key is unknown or revoked; create one with `borealis api-keys create`"
            )
        api_key, user = found
        membership = workspaces_service.membership(
            db_session=db_session, workspace_id=api_key.workspace_id, user_id=user.id
        )
        if membership is None:
            raise NotAuthenticated(
                "the API key's creator is no longer a member of its workspace; a member creates a new key"
            )
        workspace, role = membership
        return Caller(user, workspace, role, api_key.prefix, address)
    found_session = live_session(request, db_session)
    if found_session is None:
        raise NotAuthenticated(
            "authentication required: send 'Authorization: Bearer <api key>' or log in to the web UI"
        )
    if request.method not in csrf.SAFE_METHODS:
        # The cookie comes with any request the browser sends; prove this one came from our pages.
        csrf.verify(request, sent=request.headers.get(csrf.CSRF_HEADER), origin_required=True)
    user_session, user = found_session
    workspace, role = _session_workspace(db_session, user_session, user)
    return Caller(user, workspace, role, None, address)


def _session_workspace(db_session: Session, user_session: UserSession, user: User) -> tuple[Workspace, Role]:
    """The session's chosen workspace while the user is a member there, else their first one."""
    if user_session.workspace_id is not None:
        membership = workspaces_service.membership(
            db_session=db_session, workspace_id=user_session.workspace_id, user_id=user.id
        )
        if membership is not None:
            return membership
    workspaces = workspaces_service.for_user(db_session=db_session, user_id=user.id)
    if not workspaces:
        raise Forbidden(
            "this account belongs to no workspace: an owner adds it to one, or logging in again makes a personal one"
        )
    return workspaces[0]


def live_session(request: Request, db_session: Session) -> tuple[UserSession, User] | None:
    """The cookie's session and its user while that session is in force. A cookie naming one that was
    revoked, has expired or went idle loses its login, so the browser drops it too."""
    if "session" not in request.scope:
        return None
    token = request.session.get(SESSION_TOKEN_KEY)
    now = utcnow()
    found = None
    if isinstance(token, str) and token:
        settings = request.app.state.settings
        found = sessions.find_live(db_session=db_session, token=token, settings=settings, now=now)
    if found is None:
        request.session.pop(SESSION_USER_KEY, None)
        request.session.pop(SESSION_TOKEN_KEY, None)
        return None
    user_session, _ = found
    request.state.user_session_id = user_session.id
    if sessions.needs_touch(user_session, now):
        _touch(request, db_session, user_session.id, now)
    return found


def current_session_id(request: Request) -> str | None:
    """The id of the session the request came in by (none for an API key)."""
    return getattr(request.state, "user_session_id", None)


def _touch(request: Request, db_session: Session, session_id: str, now: datetime) -> None:
    """Move the session's last use forward. A write request does it in its own transaction (the view
    commits); a read never writes in its session, so a short one of its own does, once a minute."""
    if request.method not in csrf.SAFE_METHODS:
        sessions.touch(db_session=db_session, session_id=session_id, now=now)
        return
    try:
        with request.app.state.database.session(write=True) as writer:
            sessions.touch(db_session=writer, session_id=session_id, now=now)
            writer.commit()
    except sa.exc.OperationalError as exc:
        # Only the idle clock misses a beat: the request itself need not fail for it.
        logger.warning("could not note the session's last use: %s", type(exc).__name__)


def _follow_ups_done(request: Request, db_session: Session, workspace_id: str) -> None:
    """Carry out the workspace's waiting follow-ups first, so what they read includes everything already
    acknowledged (the webhook answers before correlating; see ``borealis.jobs.follow_ups``). Under a storm the
    wait is bounded: after ``FOLLOW_UP_WAIT`` seconds the request goes on and the rest follows."""
    if not pending_follow_ups(db_session=db_session, workspace_id=workspace_id):
        return
    database = request.app.state.database
    if request.method in csrf.SAFE_METHODS or not database.is_sqlite:
        # Short transactions of their own, like the follow-up job's.
        follow_ups.follow_up_all(database=database, workspace_ids=[workspace_id], seconds=FOLLOW_UP_WAIT)
        if request.method in csrf.SAFE_METHODS:
            # A new snapshot, which includes them (a changing request on PostgreSQL reads committed
            # rows statement by statement, and keeps what it wrote so far).
            db_session.rollback()
        return
    # On SQLite a changing request holds the write lock from its start: in its own transaction, which
    # the view commits.
    deadline = time.monotonic() + FOLLOW_UP_WAIT
    while follow_ups.follow_up(
        db_session=db_session, workspace_ids=[workspace_id], limit=follow_ups.JOB_STEP
    ) == (follow_ups.JOB_STEP):
        if time.monotonic() > deadline:
            break


CurrentCaller = Annotated[Caller, Depends(get_caller)]


def needs(role: Role) -> Callable[[Caller], Caller]:
    """A dependency that lets a caller through when their role in the workspace allows ``role``."""

    def check(caller: CurrentCaller) -> Caller:
        if not caller.may(role):
            raise Forbidden(
                f"this needs the {role.value} role in the workspace; you are {caller.role.value}. "
                "An owner can change your role."
            )
        return caller

    return check


def get_correlated_caller(request: Request, db_session: DbSession, caller: CurrentCaller) -> Caller:
    """The caller, once the follow-ups of their workspace's acknowledged deliveries are carried out:
    what a route that reads or changes incidents needs (the webhook answers before correlating). Other
    routes take ``CurrentCaller`` and wait for nothing."""
    _follow_ups_done(request, db_session, caller.workspace_id)
    return caller


CorrelatedCaller = Annotated[Caller, Depends(get_correlated_caller)]
Responder = Annotated[Caller, Depends(needs(Role.RESPONDER))]
Owner = Annotated[Caller, Depends(needs(Role.OWNER))]


def get_correlated_responder(request: Request, db_session: DbSession, caller: Responder) -> Caller:
    """A responder, once their workspace's follow-ups are carried out (see ``get_correlated_caller``)."""
    return get_correlated_caller(request, db_session, caller)


CorrelatedResponder = Annotated[Caller, Depends(get_correlated_responder)]
