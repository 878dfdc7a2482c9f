"""Login throttling: failed logins are counted per account and per client address in the database, so
every process and worker sees the same counts and a restart forgets nothing.

After a few free failures each further one locks its key for a delay that doubles up to a cap. While a
key is locked every login through it is refused, the right password too: otherwise a guesser would only
have to wait for the answer that is not a refusal. An unknown email is counted like a known one, so the
throttle tells nobody which accounts exist.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from borealis import crypto
from borealis.auth.models import LoginThrottle
from borealis.config import Settings
from borealis.errors import BorealisError

ACCOUNT = "account"
ADDRESS = "address"
# Doubling stops mattering long before this; it keeps 2**n a float.
_MAX_DOUBLINGS = 40

audit = logging.getLogger("borealis.audit")
_throttles = LoginThrottle.__table__


class LoginLocked(BorealisError):
    """Too many failed logins for the account or from the address; ``retry_after`` is in seconds."""

    status_code = 429
    code = "too_many_attempts"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many failed logins for this account or from this address. "
            f"Try again in {describe_wait(retry_after)}.",
            details={"retryAfter": retry_after},
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Key:
    """What failures are counted against, and how many it gets free."""

    kind: str
    subject: str
    free_failures: int

    @property
    def digest(self) -> str:
        return crypto.digest(f"{self.kind}:{self.subject}")


def keys_for(*, email: str, address: str | None, settings: Settings) -> list[Key]:
    """The account (the email as typed, normalized, whether or not it exists) and the client address."""
    keys = [Key(ACCOUNT, email.strip().lower(), settings.login_free_failures)]
    if address:
        keys.append(Key(ADDRESS, address, settings.login_address_free_failures))
    return keys


def check(*, db_session: Session, keys: list[Key], now: datetime) -> None:
    """Raise ``LoginLocked`` while any of the keys is locked."""
    until = db_session.scalar(
        sa.select(sa.func.max(_throttles.c.locked_until)).where(
            _throttles.c.key_hash.in_([key.digest for key in keys]), _throttles.c.locked_until > now
        )
    )
    if until is not None:
        raise LoginLocked(seconds_until(until, now))


def record_failure(
    *, db_session: Session, keys: list[Key], settings: Settings, now: datetime
) -> datetime | None:
    """Count a failed login against every key; returns the end of the longest lock it started, if any."""
    forgotten_before = now - timedelta(seconds=settings.login_failures_forgotten_after_seconds)
    _forget(db_session, before=forgotten_before, now=now)
    latest: datetime | None = None
    for key in sorted(keys, key=lambda key: key.digest):  # one order for every writer
        failures = _count(db_session, key, now=now, forgotten_before=forgotten_before)
        if failures <= key.free_failures:
            continue
        seconds = lock_seconds(failures - key.free_failures, settings=settings)
        until = now + timedelta(seconds=seconds)
        db_session.execute(
            sa.update(_throttles).where(_throttles.c.key_hash == key.digest).values(locked_until=until)
        )
        audit.warning(
            "login lockout: %s %r locked for %s after %d failed logins",
            key.kind,
            key.subject[:320],
            describe_wait(math.ceil(seconds)),
            failures,
            extra={
                "event": "login_lockout",
                "keyKind": key.kind,
                "key": key.subject[:320],
                "failures": failures,
                "lockSeconds": seconds,
            },
        )
        latest = until if latest is None else max(latest, until)
    return latest


def record_success(*, db_session: Session, email: str) -> None:
    """A login went through: the account starts afresh (the address keeps its count, or one account of
    the guesser's own would wipe out the record of its spraying)."""
    digest = Key(ACCOUNT, email.strip().lower(), 0).digest
    db_session.execute(sa.delete(_throttles).where(_throttles.c.key_hash == digest))


def lock_seconds(over: int, *, settings: Settings) -> float:
    """The lock after the ``over``-th failure beyond the free ones: the first lock, doubled each time."""
    doubled = settings.login_lock_seconds * 2.0 ** min(over - 1, _MAX_DOUBLINGS)
    return min(doubled, settings.login_lock_max_seconds)


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds to wait, at least one (what ``Retry-After`` says)."""
    return max(1, math.ceil((moment - now).total_seconds()))


def describe_wait(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    return f"{math.ceil(seconds / 60)} minutes"


def _count(db_session: Session, key: Key, *, now: datetime, forgotten_before: datetime) -> int:
    """Add one failure to the key's row (made on its first), starting over when the last one is old."""
    insert: Any = postgresql.insert if db_session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = (
        insert(_throttles)
        .values(key_hash=key.digest, kind=key.kind, failures=1, last_failure_at=now, locked_until=None)
        .on_conflict_do_update(
            index_elements=["key_hash"],
            set_={
                "failures": sa.case(
                    (_throttles.c.last_failure_at < forgotten_before, 1),
                    else_=_throttles.c.failures + 1,
                ),
                "last_failure_at": now,
            },
        )
        .returning(_throttles.c.failures)
    )
    return int(db_session.execute(statement).scalar_one())


def _forget(db_session: Session, *, before: datetime, now: datetime) -> None:
    """Drop the rows of keys quiet since ``before`` and no longer locked (the index makes this cheap)."""
    db_session.execute(
        sa.delete(_throttles).where(
            _throttles.c.last_failure_at < before,
            sa.or_(_throttles.c.locked_until.is_(None), _throttles.c.locked_until <= now),
        )
    )
