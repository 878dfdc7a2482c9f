"""Request dependencies shared by every domain: the database session, settings and the caller."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from borealis import csrf
from borealis.auth import service as auth_service
from borealis.auth import sessions
from borealis.auth.models import User
from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import Database, session_scope, utcnow
from borealis.errors import NotAuthenticated
from borealis.ingest.intake import pending_follow_ups
from borealis.jobs import follow_ups

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


def get_current_user(
    request: Request,
    db_session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_api_key)] = None,
) -> User:
    """The caller: an API key in ``Authorization: Bearer``, else the UI's signed session cookie."""
    if credentials is not None:
        user = auth_service.user_for_api_key(db_session=db_session, plain_key=credentials.credentials)
        if user is None:
            raise NotAuthenticated(
                "the API key is unknown or revoked; create one with `borealis api-keys create`"
            )
    else:
        user = session_user(request, db_session)
        if user is not None and request.method not in csrf.SAFE_METHODS:
            # The cookie comes with any request the browser sends; prove this one came from our pages.
            csrf.verify(request, sent=request.headers.get(csrf.CSRF_HEADER), origin_required=True)
    if user is not None:
        return user
    raise NotAuthenticated(
        "authentication required: send 'Authorization: Bearer <api key>' or log in to the web UI"
    )


def session_user(request: Request, db_session: Session) -> User | None:
    """The user of the cookie's session while that session is in force. A cookie naming one that was
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
    user_session, user = found
    request.state.user_session_id = user_session.id
    if sessions.needs_touch(user_session, now):
        _touch(request, db_session, user_session.id, now)
    return user


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


def _follow_ups_done(request: Request, db_session: Session, user_id: str) -> None:
    """Carry out the caller's waiting follow-ups first, so what they read includes everything already
    acknowledged (the webhook answers before correlating; see ``borealis.jobs.follow_ups``). Under a storm the
    wait is bounded: after ``FOLLOW_UP_WAIT`` seconds the request goes on and the rest follows."""
    if not pending_follow_ups(db_session=db_session, user_id=user_id):
        return
    database = request.app.state.database
    if request.method in csrf.SAFE_METHODS or not database.is_sqlite:
        # Short transactions of their own, like the follow-up job's.
        follow_ups.follow_up_all(database=database, user_ids=[user_id], seconds=FOLLOW_UP_WAIT)
        if request.method in csrf.SAFE_METHODS:
            # A new snapshot, which includes them (a changing request on PostgreSQL reads committed
            # rows statement by statement, and keeps what it wrote so far).
            db_session.rollback()
        return
    # On SQLite a changing request holds the write lock from its start: in its own transaction, which
    # the view commits.
    deadline = time.monotonic() + FOLLOW_UP_WAIT
    while follow_ups.follow_up(db_session=db_session, user_ids=[user_id], limit=follow_ups.JOB_STEP) == (
        follow_ups.JOB_STEP
    ):
        if time.monotonic() > deadline:
            break


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_correlated_user(request: Request, db_session: DbSession, user: CurrentUser) -> User:
    """The caller, once the follow-ups of their acknowledged deliveries are carried out: what a route
    that reads or changes incidents needs (the webhook answers before correlating). Other routes take
    ``CurrentUser`` and wait for nothing."""
    _follow_ups_done(request, db_session, user.id)
    return user


CorrelatedUser = Annotated[User, Depends(get_correlated_user)]
