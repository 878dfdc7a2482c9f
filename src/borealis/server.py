"""The HTTP server: uvicorn, with the webhook's fast path and deadlines for clients that send too slowly.

uvicorn closes an idle keep-alive connection, but a client that sends its headers or its body a few
bytes at a time holds a connection (and, for the body, a request) open for as long as it likes. Here
the headers of a request must be complete within ``header_timeout`` seconds of its first byte (or of
the connection), and the body must keep arriving: no pause longer than ``body_timeout`` seconds.
Either one missed gets 408 and the connection is closed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # uvicorn[standard]: the C parser

from borealis.config import Settings
from borealis.ingest.webhook import WebhookFastPath


class _Deadlines:
    """The deadlines, over a uvicorn HTTP/1.1 protocol that says, after the bytes it was given, which
    part of a request it waits for (``_waiting_for``: "headers", "body" or None)."""

    header_timeout = 10.0
    body_timeout = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm(self.header_timeout, "headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        waiting_for = self._waiting_for()
        if waiting_for == "headers":
            # Part of a request's headers (a byte cancels uvicorn's keep-alive timer): they get a deadline.
            if self._deadline is None:
                self._arm(self.header_timeout, "headers")
        elif waiting_for == "body":
            self._arm(self.body_timeout, "body")
        else:
            self._disarm()

    def _waiting_for(self) -> str | None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, part, seconds)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, part: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if part == "body" and self.flow.read_paused:
            # We stopped reading (the application is behind), not the client: wait on.
            self._arm(seconds, part)
            return
        cycle = self.cycle
        if cycle is None or not cycle.response_started or cycle.response_complete:
            self.transport.write(_timeout_answer(part, seconds))
        if cycle is not None:
            # The application reading the body hears that the client is gone, and answers no one.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()


class TimedHttpToolsProtocol(_Deadlines, HttpToolsProtocol):
    """uvicorn's httptools protocol (its fast C parser) with the deadlines; the parser's callbacks say
    where in a request it is."""

    _part: str | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._part = "headers"

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._part = "body"

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._part = None

    def _waiting_for(self) -> str | None:
        return self._part


def _timeout_answer(part: str, seconds: float) -> bytes:
    request_id = secrets.token_hex(8)
    what = "headers" if part == "headers" else "body"
    message = (
        f"the request's {what} did not arrive in time (more than {seconds:g} s without them); send it again"
    )
    body = json.dumps({"error": {"code": "request_timeout", "message": message, "requestId": request_id}})
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return (head + body).encode()


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """The one server configuration: the CLI's server and the tests' both run it, with the webhook's
    fast path around the application."""
    protocol = type(
        "TimedProtocol",
        (TimedHttpToolsProtocol,),
        {"header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout},
    )
    return uvicorn.Config(
        WebhookFastPath(app),
        http=protocol,
        timeout_keep_alive=settings.keep_alive_timeout,
        access_log=False,
        log_config=None,
        **options,
    )


@dataclass
class RunningServer:
    url: str
    port: int


@contextmanager
def running_in_thread(config: uvicorn.Config, *, host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """Serve ``config`` from a thread on a loopback port the kernel chooses until the block ends: the
    demo's simulated Dynatrace and the tests' servers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield RunningServer(url=f"http://{host}:{port}", port=port)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()
