"""An unexpected error answers 500 with the request id, in the body and the X-Request-ID header."""

from __future__ import annotations

import httpx

from borealis.app import create_app
from tests.support.server import serve_in_thread


def test_an_unexpected_error_carries_the_request_id(settings, database):
    app = create_app(settings, database)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with serve_in_thread(app) as server:
        answer = httpx.get(f"{server.url}/boom", headers={"X-Request-ID": "trace-42"}, timeout=30)
        fresh = httpx.get(f"{server.url}/boom", timeout=30)
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "trace-42"
    assert answer.json()["error"]["requestId"] == "trace-42"
    assert answer.json()["error"]["code"] == "internal_error"
    assert "a bug" not in answer.text
    assert fresh.status_code == 500
    assert fresh.json()["error"]["requestId"] == fresh.headers["x-request-id"]
