"""The webhook's two ways in answer alike: the fast path the server puts around the application, and the
application's own route (what serves deliveries wherever the application runs without the wrapper).
Every case of the webhook tests goes to both, each with a user of its own in the same state; the
statuses, bodies and headers must agree."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from borealis.app import create_app
from tests.support.server import RunningServer, serve_in_thread
from tests.support.shared import WEBHOOK_SAMPLES
from tests.support.webhooks import Wired, encode, notification, wire_connection

JSON = {"Content-Type": "application/json"}


@dataclass
class Way:
    """One way in: a server and a wired user of its own."""

    server: RunningServer
    wired: Wired

    def post(self, path: str, **request: Any) -> httpx.Response:
        return httpx.post(f"{self.server.url}{path}", timeout=30, **request)


@pytest.fixture(scope="module")
def fast_server(settings, database) -> Iterator[RunningServer]:
    with serve_in_thread(create_app(settings, database)) as server:
        yield server


@pytest.fixture(scope="module")
def route_server(settings, database) -> Iterator[RunningServer]:
    """The bare application: uvicorn without the server's wrapper, so the route answers."""
    app = create_app(settings, database)
    with serve_in_thread(app, config=uvicorn.Config(app, log_level="warning", lifespan="on")) as server:
        yield server


@pytest.fixture
def ways(fast_server, route_server, make_account, app, database) -> tuple[Way, Way]:
    fast = make_account("fast@example.com")
    plain = make_account("route@example.com")
    return (
        Way(fast_server, wire_connection(database, app.state.secret_box, fast.workspace_id)),
        Way(route_server, wire_connection(database, app.state.secret_box, plain.workspace_id)),
    )


def _nested(levels: int) -> dict[str, Any]:
    document: dict[str, Any] = {"leaf": True}
    for _ in range(levels):
        document = {"inner": [document]}
    return document


def _too_large(limit: int) -> Iterator[bytes]:
    for _ in range(limit // 65536 + 2):
        yield b"x" * 65536


Case = Callable[[Way, int], httpx.Response]

CASES: dict[str, Case] = {
    "open, secret in the URL": lambda way, _: way.post(way.wired.url, json=notification()),
    "the same again": lambda way, _: way.post(way.wired.url, json=notification()),
    "resolved, secret as bearer": lambda way, _: way.post(
        way.wired.path,
        json=notification(state="RESOLVED"),
        headers={"Authorization": f"Bearer {way.wired.secret}"},
    ),
    "text/plain content type": lambda way, _: way.post(
        way.wired.url,
        content=encode(notification(pid="-7", problem_id="P-7")),
        headers={"Content-Type": "text/plain"},
    ),
    "test notification": lambda way, _: way.post(
        way.wired.url, content=(WEBHOOK_SAMPLES / "webhook-official-docs-testrun-example.json").read_bytes()
    ),
    "missing secret": lambda way, _: way.post(way.wired.path, json=notification()),
    "wrong secret": lambda way, _: way.post(f"{way.wired.path}?token=wrong", json=notification()),
    "unknown user": lambda way, _: way.post(
        f"/dynatrace/webhook/{uuid.uuid4()}?token=x", json=notification()
    ),
    "user id with a slash": lambda way, _: way.post("/dynatrace/webhook/a/b?token=x", json=notification()),
    "not JSON": lambda way, _: way.post(way.wired.url, content=b"{not json", headers=JSON),
    "a JSON array": lambda way, _: way.post(way.wired.url, content=b"[1, 2]", headers=JSON),
    "empty": lambda way, _: way.post(way.wired.url, content=b"", headers=JSON),
    "not UTF-8": lambda way, _: way.post(way.wired.url, content=b'{"PID": "\xff\xfe"}', headers=JSON),
    "no problem identity": lambda way, _: way.post(way.wired.url, json={"State": "OPEN"}),
    "a 5,000-digit number": lambda way, _: way.post(
        way.wired.url, content=b'{"PID": "1", "State": "OPEN", "Count": ' + b"7" * 5000 + b"}", headers=JSON
    ),
    "nested 300 levels": lambda way, _: way.post(
        way.wired.url, json=notification(pid="-8", problem_id="P-8", Extra=_nested(300))
    ),
    "a lone surrogate": lambda way, _: way.post(
        way.wired.url,
        content=json.dumps(notification(pid="-9", problem_id="P-9", title="PH"))
        .replace("PH", "x \\ud800")
        .encode(),
        headers=JSON,
    ),
    "over the limit by its length": lambda way, limit: way.post(way.wired.url, content=b"x" * (limit + 1)),
    "over the limit, chunked": lambda way, limit: way.post(way.wired.url, content=_too_large(limit)),
    "a request id of the caller's": lambda way, _: way.post(
        f"{way.wired.path}?token=wrong", json=notification(), headers={"X-Request-ID": "trace-7"}
    ),
}


def _comparable(response: httpx.Response) -> tuple[Any, ...]:
    """What must agree: the status, the body but for ids of each user's own rows and the request id,
    and the headers a client reads."""
    body = response.json()
    if isinstance(body.get("error"), dict):
        request_id = body["error"].pop("requestId", None)
        assert request_id == response.headers["x-request-id"]
    if isinstance(body.get("alertId"), int):
        body["alertId"] = "an id"
    return (
        response.status_code,
        body,
        response.headers["content-type"],
        "x-request-id" in response.headers,
        response.headers["x-request-id"] if response.request.headers.get("x-request-id") else None,
    )


def test_both_ways_in_answer_every_case_alike(ways, settings):
    fast, route = ways
    differences = {}
    for name, case in CASES.items():
        answers = (
            _comparable(case(fast, settings.max_body_bytes)),
            _comparable(case(route, settings.max_body_bytes)),
        )
        if answers[0] != answers[1]:
            differences[name] = answers
    assert not differences, json.dumps(differences, indent=1, default=str)
