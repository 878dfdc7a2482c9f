"""Web sessions kept in the database, so that logging out, changing the password or an administrator can
end them: a signed cookie alone stays good until it expires, wherever a copy of it went.

The cookie carries a random token and the row only its SHA-256, the way API keys are kept. Callers own
the transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis import crypto
from borealis.auth.models import User, UserSession
from borealis.config import Settings
from borealis.db import utcnow
from borealis.errors import NotFound

# How stale ``last_seen_at`` may get before a request moves it: not a write on every request.
TOUCH_EVERY = timedelta(minutes=1)
USER_AGENT_CHARS = 200

audit = logging.getLogger("borealis.audit")


def start(
    *, db_session: Session, user_id: str, user_agent: str | None, address: str | None, settings: Settings
) -> tuple[UserSession, str]:
    """A new session and its token, for the cookie only. The user's ended sessions are cleared away."""
    now = utcnow()
    db_session.execute(
        sa.delete(UserSession).where(UserSession.user_id == user_id, sa.not_(_live(settings, now)))
    )
    token = crypto.new_secret()
    user_session = UserSession(
        token_hash=crypto.digest(token),
        user_id=user_id,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.session_lifetime_seconds),
        user_agent=(user_agent or "")[:USER_AGENT_CHARS] or None,
        address=(address or "")[:64] or None,
    )
    db_session.add(user_session)
    db_session.flush()
    return user_session, token


def find_live(
    *, db_session: Session, token: str, settings: Settings, now: datetime
) -> tuple[UserSession, User] | None:
    """The session a cookie's token names, with its user, unless it is revoked, expired or idle."""
    row = db_session.execute(
        sa.select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == crypto.digest(token), _live(settings, now))
    ).first()
    return (row[0], row[1]) if row else None


def needs_touch(user_session: UserSession, now: datetime) -> bool:
    return now - user_session.last_seen_at >= TOUCH_EVERY


def touch(*, db_session: Session, session_id: str, now: datetime) -> None:
    """Note that the session is in use (a no-op if another request did within the minute)."""
    db_session.execute(
        sa.update(UserSession)
        .where(UserSession.id == session_id, UserSession.last_seen_at < now - TOUCH_EVERY)
        .values(last_seen_at=now)
    )


def choose_workspace(*, db_session: Session, session_id: str, workspace_id: str) -> None:
    """Make the workspace the one this session acts in (the caller checked the membership)."""
    db_session.execute(
        sa.update(UserSession).where(UserSession.id == session_id).values(workspace_id=workspace_id)
    )


def list_live(*, db_session: Session, user: User, settings: Settings) -> list[UserSession]:
    """The user's sessions still in force, the most recently used first."""
    return list(
        db_session.scalars(
            sa.select(UserSession)
            .where(UserSession.user_id == user.id, _live(settings, utcnow()))
            .order_by(UserSession.last_seen_at.desc(), UserSession.created_at.desc())
        )
    )


def revoke(*, db_session: Session, user: User, session_id: str) -> UserSession:
    """End one of the user's sessions; anyone else's is not found."""
    user_session = db_session.scalar(
        sa.select(UserSession).where(UserSession.id == session_id, UserSession.user_id == user.id)
    )
    if user_session is None:
        raise NotFound(f"no session '{session_id}' for {user.email}")
    if user_session.revoked_at is None:
        user_session.revoked_at = utcnow()
        audit.info("session revoked: %s ended session %s", user.email, session_id)
    return user_session


def revoke_token(*, db_session: Session, token: str) -> None:
    """End the session a cookie's token names (logging out)."""
    db_session.execute(
        sa.update(UserSession)
        .where(UserSession.token_hash == crypto.digest(token), UserSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def revoke_all(*, db_session: Session, user_id: str, keep_session_id: str | None = None) -> int:
    """End every session of the user but ``keep_session_id``; returns how many had not expired yet."""
    now = utcnow()
    condition = [
        UserSession.user_id == user_id,
        UserSession.revoked_at.is_(None),
        UserSession.expires_at > now,
    ]
    if keep_session_id is not None:
        condition.append(UserSession.id != keep_session_id)
    result: Any = db_session.execute(sa.update(UserSession).where(*condition).values(revoked_at=now))
    ended = int(result.rowcount or 0)
    audit.info("sessions revoked: %d of user %s ended", ended, user_id)
    return ended


def _live(settings: Settings, now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        UserSession.revoked_at.is_(None),
        UserSession.expires_at > now,
        UserSession.last_seen_at > now - timedelta(seconds=settings.session_idle_seconds),
    )
