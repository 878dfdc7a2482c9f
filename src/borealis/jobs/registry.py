"""Job kinds and their handlers.

A domain adds a kind in its own ``tasks.py`` module (``borealis/problems/tasks.py``, ...)::

    from borealis.jobs import JobContext, register

    @register("problem.enrich")
    def enrich(ctx: JobContext) -> dict | None:
        with ctx.session() as db_session:
            ...
            db_session.commit()
        return {"entities": 3}          # stored as the job's result

Every worker imports ``borealis.<package>.tasks`` at start (``load_handlers``), so no central list needs
editing. A worker only claims kinds it has a handler for. Handlers run in worker threads and may block
(HTTP). They own their transactions: keep them short (SQLite has one writer), and never hold one across a
slow call. A handler that wants its last write and the job's completion to commit together calls
``ctx.complete(db_session, result)`` before its final commit: if the lease was lost meanwhile, that
raises ``LeaseLost`` and nothing of the attempt is committed.

Raise ``Retry`` to try again later (``delay`` overrides the back-off, e.g. a 429's Retry-After),
``PermanentFailure`` to stop at once; any other exception is retried with back-off until the job's
attempts run out, then the job is ``failed`` with the reason.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import Database
from borealis.jobs import outcomes

logger = logging.getLogger("borealis.jobs")

TASK_MODULE = "tasks"


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
    user_id: str | None
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


Handler = Callable[[JobContext], "dict[str, Any] | None"]


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    handler: Handler
    # Back-off before attempt n+1: backoff_base * 2**(n-1) seconds, at most backoff_cap, with jitter.
    backoff_base: float
    backoff_cap: float


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._lock = threading.Lock()

    def register(
        self, kind: str, *, backoff_base: float = 10.0, backoff_cap: float = 900.0
    ) -> Callable[[Handler], Handler]:
        """Decorator: ``handler`` runs the jobs of ``kind``."""

        def decorator(handler: Handler) -> Handler:
            spec = HandlerSpec(kind=kind, handler=handler, backoff_base=backoff_base, backoff_cap=backoff_cap)
            with self._lock:
                existing = self._specs.get(kind)
                if existing is not None and _qualname(existing.handler) != _qualname(handler):
                    raise ValueError(
                        f"job kind {kind!r} already has the handler {_qualname(existing.handler)}"
                    )
                self._specs[kind] = spec
            return handler

        return decorator

    def get(self, kind: str) -> HandlerSpec | None:
        return self._specs.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._specs)


def _qualname(handler: Handler) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"


REGISTRY = Registry()
register = REGISTRY.register


def load_handlers(extra_modules: Iterable[str] = ()) -> list[str]:
    """Import every ``borealis.<package>.tasks`` module and the extra ones; returns the registered kinds."""
    import borealis

    for package in pkgutil.iter_modules(borealis.__path__):
        if not package.ispkg:
            continue
        package_path = [str(Path(borealis.__path__[0]) / package.name)]
        if any(module.name == TASK_MODULE for module in pkgutil.iter_modules(package_path)):
            importlib.import_module(f"borealis.{package.name}.{TASK_MODULE}")
    for name in extra_modules:
        importlib.import_module(name)
    return REGISTRY.kinds()
