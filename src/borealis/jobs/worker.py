"""The worker: claims jobs under a lease and runs them in N threads; fires schedules; stops gracefully.

One dispatcher thread claims a job whenever a slot is free (polling with back-off while idle, woken at
once by a commit in this process that enqueued a job), renews the leases of the jobs it holds, fires due
schedules and fails jobs whose last attempt's worker died. Slot threads run the handlers. ``stop`` stops
claiming, lets running jobs finish for ``grace_seconds``, then gives back the leases of the rest so
another worker takes them over at once.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from borealis.audit import service as audit
from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import Database, utcnow
from borealis.jobs.registry import REGISTRY, Registry
from borealis.jobstore import leases, outcomes, schedules, wakeup
from borealis.jobstore.context import JobContext, LeaseLost, PermanentFailure, Retry, describe
from borealis.logs import job_context_var
from borealis.observability import record_job

logger = logging.getLogger("borealis.jobs")

T = TypeVar("T")


class Worker:
    def __init__(
        self,
        *,
        database: Database,
        settings: Settings,
        secret_box: SecretBox,
        concurrency: int = 4,
        lease_seconds: float = 60.0,
        grace_seconds: float = 25.0,
        poll_min: float = 0.1,
        poll_max: float = 2.0,
        schedule_poll: float = 1.0,
        done_retention: timedelta = timedelta(days=7),
        failed_retention: timedelta = timedelta(days=30),
        registry: Registry = REGISTRY,
        name: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.database = database
        self.settings = settings
        self.secret_box = secret_box
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.grace_seconds = grace_seconds
        self.poll_min = poll_min
        self.poll_max = poll_max
        self.schedule_poll = schedule_poll
        self.done_retention = done_retention
        self.failed_retention = failed_retention
        self.registry = registry
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.heartbeat_interval = max(0.2, lease_seconds / 3)
        self.maintenance_interval = max(1.0, lease_seconds / 2)
        self.prune_interval = 3600.0

        self._rng = random.Random()
        self._stopping = threading.Event()
        self._hurry = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._held: dict[int, JobContext] = {}
        self._busy = 0
        self._inbox: queue.Queue[JobContext | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None
        self._next_heartbeat = 0.0
        self._next_schedules = 0.0
        self._next_maintenance = 0.0
        self._next_prune = 0.0

    # --- life cycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher and the slot threads (daemons: a stuck handler cannot keep us alive)."""
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._slot, name=f"borealis-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._dispatcher = threading.Thread(target=self._dispatch, name="borealis-dispatcher", daemon=True)
        self._dispatcher.start()
        wakeup.add_wake_listener(self.wake)
        logger.info(
            "worker started",
            extra={"worker": self.owner, "concurrency": self.concurrency, "kinds": self.registry.kinds()},
        )

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def request_stop(self) -> None:
        """Stop claiming; a second call ends the grace period at once. Safe in a signal handler (it only
        sets events)."""
        if self._stopping.is_set():
            self._hurry.set()
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, grace_seconds: float | None = None) -> None:
        """Stop claiming, let running jobs finish for the grace period, give back the rest."""
        self._stopping.set()
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.join()
        grace = self.grace_seconds if grace_seconds is None else grace_seconds
        deadline = time.monotonic() + grace
        while True:
            with self._idle:
                if self._busy == 0:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._hurry.is_set():
                    break
                self._idle.wait(min(remaining, self.heartbeat_interval, 0.5))
            if time.monotonic() >= self._next_heartbeat:
                self._guarded(self._heartbeat)
        with self._lock:
            unfinished = list(self._held.values())
        if unfinished:
            ids = [context.job_id for context in unfinished]
            if self._guarded(lambda: self._release(ids)) is not None:
                for context in unfinished:
                    record_job(context.kind, "released")
            logger.warning(
                "worker stopped with unfinished jobs; their leases were given back",
                extra={"worker": self.owner, "jobIds": ids},
            )
        for _ in self._threads:
            self._inbox.put(None)
        wakeup.remove_wake_listener(self.wake)
        logger.info("worker stopped", extra={"worker": self.owner})

    def run_until_stopped(self) -> None:
        """Start, block until ``request_stop`` (a signal handler calls it), then stop gracefully."""
        self.start()
        while not self._stopping.wait(1.0):
            pass
        self.stop()

    # --- dispatcher -----------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        idle = self.poll_min
        while not self._stopping.is_set():
            self._wake.clear()
            now = time.monotonic()
            claimed = 0
            try:
                if now >= self._next_heartbeat:
                    self._heartbeat()
                if now >= self._next_schedules:
                    self._next_schedules = now + self.schedule_poll
                    self._fire_schedules()
                if now >= self._next_maintenance:
                    self._next_maintenance = now + self.maintenance_interval
                    self._maintenance()
                claimed = self._fill_slots()
            except Exception:
                logger.exception("worker loop error; retrying", extra={"worker": self.owner})
                idle = self.poll_max
            idle = self.poll_min if claimed else min(idle * 2, self.poll_max)
            now = time.monotonic()
            timeout = min(idle, max(0.0, self._next_heartbeat - now), max(0.0, self._next_schedules - now))
            self._wake.wait(max(timeout, 0.01))

    def _free_slots(self) -> int:
        with self._lock:
            return self.concurrency - self._busy

    def _fill_slots(self) -> int:
        claimed = 0
        tiers = self.registry.tiers()
        while tiers and not self._stopping.is_set() and self._free_slots() > 0:
            context = next(filter(None, (self._claim(kinds) for kinds in tiers)), None)
            if context is None:
                break
            with self._lock:
                self._held[context.job_id] = context
                self._busy += 1
            self._inbox.put(context)
            claimed += 1
        return claimed

    def _claim(self, kinds: list[str]) -> JobContext | None:
        if self.database.is_sqlite:
            # Look before taking SQLite's single write lock, so an idle worker never blocks webhooks.
            with self.database.session() as db_session:
                if not leases.has_ready(db_session=db_session, kinds=kinds):
                    return None
        with self.database.session(write=True) as db_session:
            job = leases.claim(
                db_session=db_session, kinds=kinds, owner=self.owner, lease_seconds=self.lease_seconds
            )
            if job is None:
                return None
            context = JobContext(
                job_id=job.id,
                kind=job.kind,
                workspace_id=job.workspace_id,
                key=job.key,
                payload=dict(job.payload or {}),
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                database=self.database,
                settings=self.settings,
                secret_box=self.secret_box,
                owner=self.owner,
                stopping=self._stopping,
            )
            db_session.commit()
        return context

    def _heartbeat(self) -> None:
        self._next_heartbeat = time.monotonic() + self.heartbeat_interval
        with self._lock:
            ids = list(self._held)
        if not ids:
            return
        with self.database.session(write=True) as db_session:
            still_held = leases.extend_leases(
                db_session=db_session, job_ids=ids, owner=self.owner, lease_seconds=self.lease_seconds
            )
            db_session.commit()
        with self._lock:
            lost = [job_id for job_id in ids if job_id not in still_held and job_id in self._held]
        if lost:
            logger.warning("lost the lease of running jobs", extra={"worker": self.owner, "jobIds": lost})

    def _release(self, ids: list[int]) -> int:
        with self.database.session(write=True) as db_session:
            released = leases.release(db_session=db_session, job_ids=ids, owner=self.owner)
            db_session.commit()
        return released

    def _fire_schedules(self) -> None:
        now = utcnow()
        with self.database.session() as db_session:
            if not schedules.has_due_schedules(db_session=db_session, now=now):
                return
        with self.database.session(write=True) as db_session:
            fired = schedules.fire_due_schedules(db_session=db_session, now=now)
            db_session.commit()
        for job in fired:
            logger.info("schedule fired", extra={"jobId": job.id, "jobKind": job.kind, "key": job.key})

    def _maintenance(self) -> None:
        now = utcnow()
        with self.database.session(write=True) as db_session:
            abandoned = outcomes.fail_abandoned(db_session=db_session, now=now)
            pruned = forgotten = 0
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + self.prune_interval
                pruned = outcomes.prune(
                    db_session=db_session,
                    done_before=now - self.done_retention,
                    failed_before=now - self.failed_retention,
                )
                forgotten = audit.prune(
                    db_session=db_session, before=now - timedelta(days=self.settings.audit_retention_days)
                )
            db_session.commit()
        if abandoned:
            logger.warning("failed jobs whose last attempt's worker died", extra={"count": abandoned})
        if pruned:
            logger.info("pruned old jobs", extra={"count": pruned})
        if forgotten:
            logger.info("removed audit entries past their retention", extra={"count": forgotten})

    # --- slots ----------------------------------------------------------------------------------------

    def _slot(self) -> None:
        while True:
            context = self._inbox.get()
            if context is None:
                return
            try:
                self._execute(context)
            except Exception:
                logger.exception("job bookkeeping failed; the lease will expire and the job run again")
            finally:
                with self._idle:
                    self._held.pop(context.job_id, None)
                    self._busy -= 1
                    self._idle.notify_all()
                self._wake.set()

    def _execute(self, context: JobContext) -> None:
        token = job_context_var.set((context.job_id, context.kind))
        started = time.perf_counter()
        outcome = "lease_lost"
        try:
            outcome = self._run_handler(context)
        finally:
            elapsed = time.perf_counter() - started
            record_job(context.kind, outcome, elapsed)
            log = logger.info if outcome == "done" else logger.warning
            log(
                "job %s",
                outcome,
                extra={
                    "attempt": context.attempt,
                    "outcome": outcome,
                    "durationMs": round(elapsed * 1000, 1),
                },
            )
            job_context_var.reset(token)

    def _run_handler(self, context: JobContext) -> str:
        spec = self.registry.get(context.kind)
        if spec is None:
            return self._fail(context, f"no handler for job kind {context.kind!r}", permanent=True)
        try:
            result = spec.handler(context)
        except LeaseLost:
            return "lease_lost"
        except PermanentFailure as exc:
            return self._fail(context, describe(exc), permanent=True)
        except Retry as exc:
            delay = exc.delay if exc.delay is not None else self._backoff(context, spec)
            return self._fail(context, describe(exc), delay=delay, count_attempt=exc.count_attempt)
        except Exception as exc:
            logger.warning("job attempt raised", exc_info=True)
            return self._fail(context, describe(exc), delay=self._backoff(context, spec))
        if context.completed:
            return "done"
        if result is not None and not isinstance(result, dict):
            result = {"value": result}
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            return self._fail(context, f"the handler's result is not JSON: {describe(exc)}", permanent=True)
        done = self._with_retries(
            lambda: self._in_transaction(
                lambda db_session: outcomes.complete(
                    db_session=db_session, job_id=context.job_id, owner=self.owner, result=result
                )
            )
        )
        return "done" if done else "lease_lost"

    def _backoff(self, context: JobContext, spec: Any) -> float:
        return outcomes.backoff_delay(
            context.attempt, base=spec.backoff_base, cap=spec.backoff_cap, rng=self._rng
        )

    def _fail(
        self,
        context: JobContext,
        error: str,
        *,
        delay: float | None = None,
        permanent: bool = False,
        count_attempt: bool = True,
    ) -> str:
        retry_at = None if permanent or delay is None else utcnow() + timedelta(seconds=max(0.0, delay))
        outcome = self._with_retries(
            lambda: self._in_transaction(
                lambda db_session: outcomes.fail(
                    db_session=db_session,
                    job_id=context.job_id,
                    owner=self.owner,
                    error=error,
                    retry_at=retry_at,
                    count_attempt=count_attempt,
                )
            )
        )
        return outcome or "lease_lost"

    def _in_transaction(self, work: Callable[[Any], T]) -> T:
        with self.database.session(write=True) as db_session:
            value = work(db_session)
            db_session.commit()
            return value

    def _with_retries(self, action: Callable[[], T], attempts: int = 3) -> T:
        """Bookkeeping survives a brief database hiccup; after that the lease decides."""
        for attempt in range(attempts):
            try:
                return action()
            except Exception:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _guarded(self, action: Callable[[], T]) -> T | None:
        try:
            return action()
        except Exception:
            logger.exception("worker bookkeeping failed", extra={"worker": self.owner})
            return None
