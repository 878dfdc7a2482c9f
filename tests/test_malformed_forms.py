"""A form the server cannot read gets 400 and one that is too large 413, on every page route: never 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

PASSWORD = "correct horse battery"
HTML = {"Accept": "text/html"}


@pytest.fixture
def browser(live_server, make_account):
    account = make_account("forms@example.com", password=PASSWORD)
    with httpx.Client(base_url=live_server.url, headers=HTML, timeout=30) as http:
        http.get("/login")
        yield http, account


# /login reads fields through the framework; /settings/rca and /logout through the CSRF check first.
PAGE_ROUTES = ["/login", "/settings/rca", "/logout"]


@pytest.mark.parametrize("path", PAGE_ROUTES)
def test_multipart_without_a_boundary_is_400(browser, path):
    http, _ = browser
    answer = http.post(path, content=b"--x\r\n\r\n", headers={"Content-Type": "multipart/form-data"})
    assert answer.status_code == 400, answer.text[:300]
    assert "text/html" in answer.headers["content-type"]


def _chunks(total: int) -> Iterator[bytes]:
    piece = b"a=" + b"x" * 65_534
    for _ in range(total // len(piece)):
        yield piece


@pytest.mark.parametrize("path", PAGE_ROUTES)
def test_a_chunked_form_over_the_limit_is_413(browser, settings, path):
    http, _ = browser
    answer = http.post(
        path,
        content=_chunks(settings.max_body_bytes + 2 * 65_536),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert "content-length" not in answer.request.headers  # really sent chunked
    assert answer.status_code == 413, answer.text[:300]
    assert "text/html" in answer.headers["content-type"]


def test_a_chunked_json_body_over_the_limit_is_413_json(make_account, settings):
    account = make_account()
    answer = account.client.post(
        "/dynatrace/connect",
        content=_chunks(settings.max_body_bytes + 2 * 65_536),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    assert answer.json()["error"]["requestId"] == answer.headers["x-request-id"]
