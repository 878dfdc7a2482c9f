"""What a job handler is given and what it may raise: the contract between the queue and its handlers.

Raise ``Retry`` to try again later (``delay`` overrides the back-off, e.g. a 429's Retry-After),
``PermanentFailure`` to stop at once; any other exception is retried with back-off until the job's
attempts run out, then the job is ``failed`` with the reason. A handler that wants its last write and the
job's completion to commit together calls ``ctx.complete(db_session, result)`` before its final commit:
if the lease was lost meanwhile, that raises ``LeaseLost`` and nothing of the attempt is committed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import Database
from borealis.errors import BorealisError
from borealis.jobstore import outcomes
from borealis.logs import redact


class Retry(Exception):
    """Try this job again later: after ``delay`` seconds, else the kind's back-off. It counts as an
    attempt unless ``count_attempt=False`` (waiting out a rate limit is not the job failing)."""

    def __init__(self, reason: str, *, delay: float | None = None, count_attempt: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay
        self.count_attempt = count_attempt


class PermanentFailure(Exception):
    """Retrying cannot help (bad payload, the thing it works on is gone): fail the job now."""


class LeaseLost(Exception):
    """Another worker owns this job now (our lease ran out); this attempt's work must not commit."""


@dataclass
class JobContext:
    """What a handler gets: the job, a way to open sessions, the settings and the secret box."""

    job_id: int
    kind: str
    workspace_id: str | None
    key: str | None
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    database: Database
    settings: Settings
    secret_box: SecretBox
    owner: str
    # Set when the worker is shutting down: a long handler can stop early and raise Retry.
    stopping: threading.Event = field(default_factory=threading.Event)
    completed: bool = False

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    def session(self, *, write: bool = True) -> Session:
        """A new session (SQLite's write lock taken at BEGIN unless ``write=False``); commit it yourself."""
        return self.database.session(write=write)

    def complete(self, db_session: Session, result: dict[str, Any] | None = None) -> None:
        """Mark the job done inside ``db_session``, so it commits with the handler's own changes."""
        if not outcomes.complete(db_session=db_session, job_id=self.job_id, owner=self.owner, result=result):
            raise LeaseLost(f"job {self.job_id} is no longer ours: its lease ran out")
        self.completed = True


def describe(exc: BaseException) -> str:
    """The reason stored on a failed job: what went wrong, secrets masked."""
    if isinstance(exc, BorealisError):
        text = exc.message
    elif isinstance(exc, Retry):
        text = exc.reason
    elif isinstance(exc, PermanentFailure):
        text = str(exc) or "permanent failure"
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return redact(text)
