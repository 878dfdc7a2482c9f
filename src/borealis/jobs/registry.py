"""Job kinds and their handlers, registered by name at start-up.

Every kind Borealis runs is listed once, in ``register_handlers``: the worker (and the test harness)
call it before claiming work, so a reader finds every handler here rather than by a package scan. A
worker only claims kinds it has a handler for. A plug-in module given to ``borealis worker --import``
adds its own with the ``register`` decorator::

    from borealis.jobs.registry import register
    from borealis.jobstore import JobContext

    @register("report.mail")
    def mail(ctx: JobContext) -> dict | None:
        with ctx.session() as db_session:
            ...
            db_session.commit()
        return {"sent": 3}          # stored as the job's result

Handlers run in worker threads and may block (HTTP). They own their transactions: keep them short
(SQLite has one writer), and never hold one across a slow call. What a handler may raise, and how it
commits its last write with the job's completion, is in ``borealis.jobstore.context``.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from borealis.jobstore.context import JobContext

Handler = Callable[[JobContext], "dict[str, Any] | None"]


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    handler: Handler
    # Back-off before attempt n+1: backoff_base * 2**(n-1) seconds, at most backoff_cap, with jitter.
    backoff_base: float
    backoff_cap: float
    # Claimed before the jobs of every other kind: short work that other work, or a person, waits on.
    first: bool = False


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._lock = threading.Lock()

    def add(
        self,
        kind: str,
        handler: Handler,
        *,
        backoff_base: float = 10.0,
        backoff_cap: float = 900.0,
        first: bool = False,
    ) -> None:
        """``handler`` runs the jobs of ``kind``; adding the same handler again changes nothing. With
        ``first`` a worker claims jobs of this kind before any other (``tiers``)."""
        spec = HandlerSpec(
            kind=kind, handler=handler, backoff_base=backoff_base, backoff_cap=backoff_cap, first=first
        )
        with self._lock:
            existing = self._specs.get(kind)
            if existing is not None and _qualname(existing.handler) != _qualname(handler):
                raise ValueError(f"job kind {kind!r} already has the handler {_qualname(existing.handler)}")
            self._specs[kind] = spec

    def register(
        self, kind: str, *, backoff_base: float = 10.0, backoff_cap: float = 900.0
    ) -> Callable[[Handler], Handler]:
        """Decorator form of ``add``, for plug-in modules."""

        def decorator(handler: Handler) -> Handler:
            self.add(kind, handler, backoff_base=backoff_base, backoff_cap=backoff_cap)
            return handler

        return decorator

    def get(self, kind: str) -> HandlerSpec | None:
        return self._specs.get(kind)

    def kinds(self) -> list[str]:
        return sorted(self._specs)

    def tiers(self) -> list[list[str]]:
        """The kinds in the order a worker claims them: those registered ``first``, then the rest."""
        first = sorted(kind for kind, spec in self._specs.items() if spec.first)
        rest = sorted(kind for kind, spec in self._specs.items() if not spec.first)
        return [tier for tier in (first, rest) if tier]


def _qualname(handler: Handler) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"


REGISTRY = Registry()
register = REGISTRY.register


def register_handlers(registry: Registry = REGISTRY, *, extra_modules: Iterable[str] = ()) -> list[str]:
    """Register every kind Borealis runs, then import the plug-in modules; returns the registered kinds."""
    from borealis.dynatrace.service import BACKFILL_JOB, CLOSE_JOB, SYNC_JOB, WRITE_BACK_JOB
    from borealis.ingest.intake import FOLLOW_UP_JOB
    from borealis.jobs import follow_ups
    from borealis.notifications import service as notifications_service
    from borealis.notifications import tasks as notifications_tasks
    from borealis.rca import service as rca_service
    from borealis.rca import tasks as rca_tasks
    from borealis.sync import tasks as sync_tasks
    from borealis.sync.service import ENRICH_JOB
    from borealis.writeback import tasks as writeback_tasks

    # Incidents are formed by this job, and enrichment and RCA requests come from it: under a backlog of
    # those it still runs at once.
    registry.add(FOLLOW_UP_JOB, follow_ups.run, backoff_base=1.0, backoff_cap=60.0, first=True)
    registry.add(ENRICH_JOB, sync_tasks.enrich_problem, backoff_base=15.0, backoff_cap=600.0)
    registry.add(BACKFILL_JOB, sync_tasks.backfill, backoff_base=30.0, backoff_cap=900.0)
    registry.add(SYNC_JOB, sync_tasks.sync, backoff_base=30.0, backoff_cap=900.0)
    registry.add(rca_service.JOB_KIND, rca_tasks.run_rca, backoff_base=30.0, backoff_cap=600.0)
    registry.add(WRITE_BACK_JOB, writeback_tasks.write_back, backoff_base=15.0, backoff_cap=600.0)
    registry.add(CLOSE_JOB, writeback_tasks.close_problems, backoff_base=15.0, backoff_cap=600.0)
    registry.add(
        notifications_service.DISPATCH_JOB, notifications_tasks.dispatch, backoff_base=5.0, backoff_cap=60.0
    )
    registry.add(
        notifications_service.DELIVER_JOB, notifications_tasks.deliver, backoff_base=10.0, backoff_cap=900.0
    )
    for name in extra_modules:
        importlib.import_module(name)
    return registry.kinds()
