"""A write authenticated only by the session cookie must prove it came from our pages; an API key need not."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.support.webhooks import followed_up, notification, wire_connection

PASSWORD = "correct horse battery"


@pytest.fixture
def signed_in(live_server, make_account, app, database, client):
    """A browser-like client signed in by cookie, its account, and one open incident of theirs."""
    account = make_account("csrf@example.com", password=PASSWORD)
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    assert client.post(wired.url, json=notification()).status_code == 200
    followed_up(database)
    [incident] = account.client.get("/incidents").json()["incidents"]
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        login = http.get("/login", headers={"Accept": "text/html"})
        token = _meta_token(login)
        http.post("/login", data={"email": account.email, "password": PASSWORD, "csrf_token": token})
        yield http, account, incident["id"]


def _meta_token(page: httpx.Response) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match, "the page carries no csrf-token meta tag"
    return match.group(1)


def _page_token(http: httpx.Client) -> str:
    return _meta_token(http.get("/settings", headers={"Accept": "text/html"}))


def test_the_cookie_alone_cannot_rotate_the_webhook_or_resolve_an_incident(signed_in, live_server):
    http, account, incident_id = signed_in
    before = account.client.get("/dynatrace/webhook-url").json()
    plain = {"Content-Type": "text/plain"}

    rotate = http.post("/dynatrace/webhook-url/rotate", content="{}", headers=plain)
    resolve = http.post(f"/incidents/{incident_id}/resolve", content="{}", headers=plain)

    for answer in (rotate, resolve):
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "csrf_rejected"
        assert answer.json()["error"]["requestId"]
    assert account.client.get("/dynatrace/webhook-url").json() == before
    assert account.client.get(f"/incidents/{incident_id}").json()["status"] == "open"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},  # a token stolen is not enough from another site
        {"Referer": "http://127.0.0.1:1/page"},  # another port is another origin
        {"Origin": "null"},
        {},  # a write through the API names its origin
    ],
)
def test_the_token_must_come_from_our_own_origin(signed_in, live_server, headers):
    http, account, incident_id = signed_in
    token = _page_token(http)
    answer = http.post(f"/incidents/{incident_id}/resolve", headers={"X-CSRF-Token": token, **headers})
    assert answer.status_code == 403, answer.text
    assert account.client.get(f"/incidents/{incident_id}").json()["status"] == "open"


def test_a_stale_token_from_our_origin_is_refused(signed_in, live_server):
    http, _, incident_id = signed_in
    answer = http.post(
        f"/incidents/{incident_id}/resolve", headers={"X-CSRF-Token": "stale", "Origin": live_server.url}
    )
    assert answer.status_code == 403
    assert "Reload the page" in answer.json()["error"]["message"]


def test_the_page_script_with_token_and_origin_may_write(signed_in, live_server):
    http, _, incident_id = signed_in
    answer = http.post(
        f"/incidents/{incident_id}/resolve",
        headers={"X-CSRF-Token": _page_token(http), "Origin": live_server.url},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "resolved"


def test_an_api_key_needs_neither_token_nor_origin(signed_in):
    _, account, incident_id = signed_in
    answer = account.client.post(f"/incidents/{incident_id}/resolve", headers={"Origin": "http://elsewhere"})
    assert answer.status_code == 200, answer.text


def test_a_page_form_from_another_site_is_refused_even_with_the_token(signed_in):
    http, account, incident_id = signed_in
    answer = http.post(
        f"/incidents/{incident_id}/resolve",
        data={"csrf_token": _page_token(http)},
        headers={"Accept": "text/html", "Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert account.client.get(f"/incidents/{incident_id}").json()["status"] == "open"


def test_reads_through_the_cookie_need_no_token(signed_in):
    http, _, incident_id = signed_in
    assert http.get(f"/incidents/{incident_id}").status_code == 200
