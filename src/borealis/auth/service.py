"""Account operations. Callers own the transaction."""

from __future__ import annotations

import re

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Session

from borealis import crypto
from borealis.audit import service as audit
from borealis.audit.models import Actor
from borealis.auth import sessions, throttle
from borealis.auth.models import ApiKey, User
from borealis.config import Settings
from borealis.db import utcnow
from borealis.errors import Conflict, InvalidInput, NotFound

API_KEY_PREFIX = "brl_"
MIN_PASSWORD_CHARS = 8
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_hasher = PasswordHasher()


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise InvalidInput(f"'{email}' is not an email address")
    return email


def get_by_email(*, db_session: Session, email: str) -> User | None:
    """The user with this email (case-insensitive), or None."""
    return db_session.scalar(sa.select(User).where(User.email == email.strip().lower()))


def count(*, db_session: Session) -> int:
    """How many users exist (zero means the first-run set-up is open)."""
    return db_session.scalar(sa.select(sa.func.count()).select_from(User)) or 0


def create(*, db_session: Session, email: str, password: str | None = None, is_admin: bool = False) -> User:
    """A new user; the email must be free."""
    email = normalize_email(email)
    if get_by_email(db_session=db_session, email=email):
        raise Conflict(f"a user with email {email} already exists")
    if password is not None:
        _check_password(password)
    user = User(
        email=email,
        password_hash=_hasher.hash(password) if password else None,
        is_admin=is_admin,
    )
    db_session.add(user)
    db_session.flush()
    return user


def set_password(
    *, db_session: Session, user: User, password: str, keep_session_id: str | None = None
) -> int:
    """Give the user a new password and end their web sessions but ``keep_session_id`` (the one it was
    changed from): whoever knew the old password may be signed in. Returns how many sessions ended."""
    _check_password(password)
    user.password_hash = _hasher.hash(password)
    sessions.audit.info("password changed: %s", user.email)
    return sessions.revoke_all(db_session=db_session, user_id=user.id, keep_session_id=keep_session_id)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_CHARS} characters")


def authenticate(*, db_session: Session, email: str, password: str) -> User | None:
    """The user if the password is theirs, else None (same work either way)."""
    user = get_by_email(db_session=db_session, email=email)
    stored = user.password_hash if user else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or stored is None:
        return None
    if _hasher.check_needs_rehash(stored):
        user.password_hash = _hasher.hash(password)
    return user


_DUMMY_HASH = _hasher.hash("borealis-timing-equalizer")


def log_in(
    *, db_session: Session, email: str, password: str, address: str | None, settings: Settings
) -> User | None:
    """The user if the password is theirs, else None; ``LoginLocked`` while the account or the address
    is locked. Every way of proving a password goes through here, so none can skip the throttle. A
    failure is written before this returns or raises: the caller commits either way."""
    keys = throttle.keys_for(email=email, address=address, settings=settings)
    now = utcnow()
    throttle.check(db_session=db_session, keys=keys, now=now)
    user = authenticate(db_session=db_session, email=email, password=password)
    if user is not None:
        throttle.record_success(db_session=db_session, email=email)
        return user
    locked_until = throttle.record_failure(db_session=db_session, keys=keys, settings=settings, now=now)
    if locked_until is not None:
        raise throttle.LoginLocked(throttle.seconds_until(locked_until, now))
    return None


def create_api_key(
    *, db_session: Session, user: User, workspace_id: str, actor: Actor, name: str = "default"
) -> tuple[ApiKey, str]:
    """A new key of the user's in a workspace; the plain key is returned once and only its hash is
    stored. The caller checks that the user is a member there."""
    plain = crypto.new_secret(API_KEY_PREFIX)
    api_key = ApiKey(
        user_id=user.id,
        workspace_id=workspace_id,
        name=name.strip() or "default",
        prefix=plain[: len(API_KEY_PREFIX) + 6],
        key_hash=crypto.digest(plain),
    )
    db_session.add(api_key)
    audit.record(
        db_session=db_session,
        workspace_id=workspace_id,
        actor=actor,
        action="api_key.created",
        target=api_key.prefix,
        details={"name": api_key.name, "owner": user.email},
    )
    db_session.flush()
    return api_key, plain


def list_api_keys(*, db_session: Session, workspace_id: str, user_id: str | None = None) -> list[ApiKey]:
    """A workspace's keys (only ``user_id``'s when given), newest first, revoked ones included."""
    query = sa.select(ApiKey).where(ApiKey.workspace_id == workspace_id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list(db_session.scalars(query.order_by(ApiKey.created_at.desc())))


def revoke_api_key(
    *, db_session: Session, workspace_id: str, key_id_or_prefix: str, actor: Actor, user_id: str | None = None
) -> ApiKey:
    """Revoke a key of the workspace (only one of ``user_id``'s when given), named by id or by its
    shown prefix."""
    query = sa.select(ApiKey).where(
        ApiKey.workspace_id == workspace_id,
        sa.or_(ApiKey.id == key_id_or_prefix, ApiKey.prefix == key_id_or_prefix),
    )
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    api_key = db_session.scalar(query)
    if api_key is None:
        raise NotFound(f"no API key '{key_id_or_prefix}' here; the list of keys names each by its prefix")
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
        audit.record(
            db_session=db_session,
            workspace_id=workspace_id,
            actor=actor,
            action="api_key.revoked",
            target=api_key.prefix,
            details={"name": api_key.name},
        )
    return api_key


def key_and_creator(*, db_session: Session, plain_key: str) -> tuple[ApiKey, User] | None:
    """An active key and the user who created it, or None. What the key may do is its creator's role in
    the key's workspace, which the caller looks up on every request."""
    if not plain_key.startswith(API_KEY_PREFIX):
        return None
    row = db_session.execute(
        sa.select(ApiKey, User)
        .join(User, ApiKey.user_id == User.id)
        .where(ApiKey.key_hash == crypto.digest(plain_key), ApiKey.revoked_at.is_(None))
    ).first()
    return (row[0], row[1]) if row else None
