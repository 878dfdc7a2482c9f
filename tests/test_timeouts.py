"""Slow clients: headers that do not arrive, a body that stops, an idle keep-alive connection."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from borealis.app import create_app
from tests.support.server import RunningServer, serve_in_thread
from tests.support.webhooks import wire_connection

# Far longer than the deadlines below: reaching it means the server never gave up on the client.
SOCKET_WAIT = 10.0


@pytest.fixture(scope="module")
def strict_server(settings, database) -> Iterator[RunningServer]:
    strict = settings.model_copy(
        update={"header_timeout": 0.5, "body_timeout": 0.5, "keep_alive_timeout": 0.5}
    )
    with serve_in_thread(create_app(strict, database)) as server:
        yield server


def _connect(server: RunningServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_WAIT)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def _answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_headers_that_never_finish_get_408_and_the_connection_closes(strict_server):
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: borealis\r\n")
        status, body = _answer(_read_all(sock))
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert "headers" in body["error"]["message"]
    assert body["error"]["requestId"]


def test_trickled_headers_cannot_stretch_the_deadline(strict_server):
    with _connect(strict_server) as sock:
        started = time.monotonic()
        closed = False
        for byte in b"GET /healthz HTTP/1.1\r\nHost: borealis\r\nX-Slow: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > SOCKET_WAIT:
                break
        if not closed:
            raw = _read_all(sock)
            assert raw == b"" or _answer(raw)[0] == 408
    assert time.monotonic() - started < SOCKET_WAIT


def test_a_connection_that_sends_nothing_is_closed(strict_server):
    with _connect(strict_server) as sock:
        raw = _read_all(sock)
    assert raw == b"" or _answer(raw)[0] == 408


@pytest.mark.parametrize(
    "path", ["/dynatrace/connect", "/dynatrace/webhook/00000000-0000-0000-0000-000000000000"]
)
def test_a_body_that_stops_gets_408(strict_server, path):
    with _connect(strict_server) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: borealis\r\nContent-Type: application/json\r\n"
            'Content-Length: 100\r\n\r\n{"a": 1'.encode()
        )
        status, body = _answer(_read_all(sock))
    assert status == 408
    assert "body" in body["error"]["message"]


def test_an_idle_keep_alive_connection_is_closed(strict_server):
    with _connect(strict_server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: borealis\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        # Nothing more is sent: the server hangs up after the keep-alive timeout.
        assert _read_all(sock) == b""


def test_a_steady_client_is_not_cut_off(strict_server):
    """A body sent in pieces, each within the deadline, reaches the application whole."""

    def pieces() -> Iterator[bytes]:
        for piece in (
            b'{"environmentUrl": ',
            b'"https://abc12345.live.dynatrace.com", ',
            b'"apiToken": "x"}',
        ):
            time.sleep(0.2)
            yield piece

    answer = httpx.post(f"{strict_server.url}/dynatrace/connect", content=pieces(), timeout=SOCKET_WAIT)
    # Unauthenticated: the application read the whole body and answered, no 408.
    assert answer.status_code == 401


def test_a_webhook_body_cut_off_is_not_taken_for_a_delivery(strict_server, account, app, database):
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    start = b'{"ProblemID": "P-1", "PID": "1", "State": "OPEN", "ProblemTitle": "cut"}'
    with _connect(strict_server) as sock:
        sock.sendall(
            f"POST {wired.url} HTTP/1.1\r\nHost: borealis\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(start) + 50}\r\n\r\n".encode()
            + start
        )
        status, _ = _answer(_read_all(sock))
    assert status == 408
    # The part that came is valid JSON on its own: still nothing is stored of it.
    assert account.client.get("/dynatrace/rejected-deliveries").json()["deliveries"] == []
    assert account.client.get("/dynatrace/alerts").json()["total"] == 0
