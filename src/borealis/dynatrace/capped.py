"""Dynatrace clients for background work, with a cap on concurrent calls per connection.

The cap is a semaphore per connection shared by every thread of this process (worker slots, request
threads): at most ``BOREALIS_DYNATRACE_MAX_CONCURRENT_CALLS`` calls of one connection are in flight at
once, however many jobs run. It is per process: with P worker processes the environment sees at most
P times the cap, and Dynatrace's own 429 answers (honoured by the client: ``Retry-After``, else
``X-RateLimit-Reset``) are the backstop shared by all of them. A slot is held only while a request is
on the wire, never during a 429 back-off.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx

from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.dynatrace import service as dynatrace_service
from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.errors import RateLimited, Transient
from borealis.dynatrace.models import Connection
from borealis.dynatrace.transport import QueryValue
from borealis.jobstore import Retry


class CallLimiter:
    """One bounded semaphore per key, created on first use with the limit asked for then."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}

    def slots(self, key: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            semaphore = self._slots.get(key)
            if semaphore is None:
                semaphore = self._slots[key] = threading.BoundedSemaphore(max(1, limit))
            return semaphore

    def forget(self, key: str) -> None:
        with self._lock:
            self._slots.pop(key, None)


LIMITER = CallLimiter()


class CappedClient(DynatraceClient):
    """A ``DynatraceClient`` whose every request first takes one of its connection's slots."""

    def __init__(
        self,
        environment_url: str,
        token: str,
        *,
        slots: threading.BoundedSemaphore,
        **options: Any,
    ) -> None:
        super().__init__(environment_url, token, **options)
        self._slots = slots

    def _send(
        self, method: str, path: str, *, params: Mapping[str, QueryValue], json_body: Any, label: str
    ) -> httpx.Response:
        with self._slots:
            return super()._send(method, path, params=params, json_body=json_body, label=label)


def api_client(
    *,
    connection: Connection,
    settings: Settings,
    secret_box: SecretBox,
    limiter: CallLimiter = LIMITER,
    **options: Any,
) -> DynatraceClient:
    """A client for the connection whose calls share the connection's cap; the caller closes it."""
    slots = limiter.slots(connection.id, settings.dynatrace_max_concurrent_calls)
    return dynatrace_service.client_for(
        connection=connection,
        settings=settings,
        secret_box=secret_box,
        client_factory=CappedClient,
        slots=slots,
        **options,
    )


def retry_later(error: Transient) -> Retry:
    """The retry for a job that met a transient Dynatrace error: after a 429's own wait, which spends no
    attempt (waiting out a rate limit is not the job failing), else after the kind's back-off."""
    limited = isinstance(error, RateLimited)
    return Retry(error.message, delay=error.retry_after if limited else None, count_attempt=not limited)
