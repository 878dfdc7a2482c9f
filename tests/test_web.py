"""The web UI over real HTTP: first run, login, CSRF, the settings page, and its sharing of paths with the API."""

from __future__ import annotations

import re

import httpx
import pytest

from borealis.auth import service as auth_service
from borealis.workspaces.models import Workspace
from tests.support.forms import csrf_from, log_in

HTML = {"Accept": "text/html,application/xhtml+xml"}
PASSWORD = "correct horse battery"


@pytest.fixture
def browser_client(live_server, database):
    """A cookie-keeping client that asks for pages, like a browser."""
    with httpx.Client(base_url=live_server.url, headers=HTML, timeout=30) as http:
        yield http


def test_first_visit_goes_to_setup_and_setup_closes_after_the_first_admin(browser_client, database):
    assert browser_client.get("/").headers["location"] == "/setup"
    page = browser_client.get("/setup")
    assert page.status_code == 200
    created = browser_client.post(
        "/setup",
        data={
            "email": "Admin@Example.com",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
            "csrf_token": csrf_from(page),
        },
    )
    assert created.status_code == 303
    with database.session() as session:
        admin = auth_service.get_by_email(db_session=session, email="admin@example.com")
        assert admin is not None
        assert admin.is_admin
        assert auth_service.count(db_session=session) == 1
    # Signed in straight away, and the set-up page is gone for everyone.
    assert browser_client.get("/settings").status_code == 200
    with httpx.Client(base_url=str(browser_client.base_url), headers=HTML) as stranger:
        assert stranger.get("/setup").headers["location"] == "/login"
        token = csrf_from(stranger.get("/login"))
        again = stranger.post(
            "/setup",
            data={
                "email": "intruder@example.com",
                "password": PASSWORD,
                "password_confirmation": PASSWORD,
                "csrf_token": token,
            },
        )
        assert again.status_code == 303
    with database.session() as session:
        assert auth_service.get_by_email(db_session=session, email="intruder@example.com") is None


def test_setup_with_mismatched_passwords_says_so_and_creates_nobody(browser_client, database):
    page = browser_client.get("/setup")
    answer = browser_client.post(
        "/setup",
        data={
            "email": "admin@example.com",
            "password": PASSWORD,
            "password_confirmation": PASSWORD + "x",
            "csrf_token": csrf_from(page),
        },
    )
    assert answer.status_code == 422
    assert "the two passwords differ" in answer.text
    with database.session() as session:
        assert auth_service.count(db_session=session) == 0


def test_pages_behind_login_redirect_to_login_and_back(browser_client, make_account):
    make_account("sre@example.com", password=PASSWORD)
    answer = browser_client.get("/settings")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/settings"
    token = csrf_from(browser_client.get("/login?next=/settings"))
    logged_in = browser_client.post(
        "/login",
        data={"email": "sre@example.com", "password": PASSWORD, "next": "/settings", "csrf_token": token},
    )
    assert logged_in.headers["location"] == "/settings"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_login_never_redirects_off_site(browser_client, make_account, target):
    make_account("sre@example.com", password=PASSWORD)
    token = csrf_from(browser_client.get("/login"))
    answer = browser_client.post(
        "/login",
        data={"email": "sre@example.com", "password": PASSWORD, "next": target, "csrf_token": token},
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


def test_wrong_password_is_refused_with_a_message(browser_client, make_account):
    make_account("sre@example.com", password=PASSWORD)
    answer = log_in(browser_client, "sre@example.com", "not the password")
    assert answer.status_code == 401
    assert "do not match an account" in answer.text
    assert browser_client.get("/settings").status_code == 303


def test_session_cookie_is_httponly_samesite_and_signed(browser_client, make_account):
    make_account("sre@example.com", password=PASSWORD)
    answer = log_in(browser_client, "sre@example.com")
    cookie = answer.headers["set-cookie"].lower()
    assert "borealis_session=" in cookie
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    # A forged cookie is not a session.
    with httpx.Client(base_url=str(browser_client.base_url), headers=HTML) as forger:
        forger.cookies.set("borealis_session", "eyJ1c2VyX2lkIjogIngifQ==.forged.signature")
        assert forger.get("/settings").status_code == 303


def test_a_form_without_the_csrf_token_changes_nothing(browser_client, make_account, database):
    account = make_account("sre@example.com", password=PASSWORD)
    log_in(browser_client, "sre@example.com")
    for token in (None, "wrong-token"):
        data = {"rca_enabled": "on"} | ({"csrf_token": token} if token else {})
        answer = browser_client.post("/settings/rca", data=data)
        assert answer.status_code == 403
        assert "Reload the page" in answer.text
    with database.session() as session:
        assert session.get(Workspace, account.workspace_id).rca_enabled is False


def test_logout_needs_the_token_and_ends_the_session(browser_client, make_account):
    make_account("sre@example.com", password=PASSWORD)
    log_in(browser_client, "sre@example.com")
    assert browser_client.post("/logout", data={"next": "/"}).status_code == 403
    assert browser_client.get("/settings").status_code == 200
    token = csrf_from(browser_client.get("/settings"))
    assert browser_client.post("/logout", data={"csrf_token": token}).headers["location"] == "/login"
    assert browser_client.get("/settings").status_code == 303


def test_rca_toggle_on_the_settings_page_is_the_api_setting(browser_client, make_account):
    account = make_account("sre@example.com", password=PASSWORD)
    log_in(browser_client, "sre@example.com")
    token = csrf_from(browser_client.get("/settings"))
    browser_client.post("/settings/rca", data={"rca_enabled": "on", "csrf_token": token})
    assert account.client.get("/dynatrace/rca-settings").json() == {"rcaEnabled": True}
    browser_client.post("/settings/rca", data={"csrf_token": token})
    assert account.client.get("/dynatrace/rca-settings").json() == {"rcaEnabled": False}
    assert account.client.get("/dynatrace/write-back").json()["enabled"] is False
    browser_client.post("/settings/rca", data={"write_back": "on", "csrf_token": token})
    write_back = account.client.get("/dynatrace/write-back").json()
    assert write_back["enabled"] is True
    assert write_back["reason"] == "Dynatrace is not connected"
    page = browser_client.get("/settings").text
    assert 'id="write-back-reason">Dynatrace is not connected<' in page


def test_api_key_made_in_settings_is_shown_once_works_and_can_be_revoked(
    browser_client, make_account, client
):
    make_account("sre@example.com", password=PASSWORD)
    log_in(browser_client, "sre@example.com")
    token = csrf_from(browser_client.get("/settings"))
    created = browser_client.post("/settings/api-keys", data={"name": "ci", "csrf_token": token})
    assert created.status_code == 201
    key = re.search(r'id="new-api-key"[^>]*>(brl_[^<]+)<', created.text).group(1)
    bearer = {"Authorization": f"Bearer {key}"}
    assert client.get("/dynatrace/rca-settings", headers=bearer).status_code == 200
    listing = browser_client.get("/settings")
    assert key not in listing.text
    key_id = re.search(
        r'action="/settings/api-keys/([^/]+)/revoke"[^>]*data-confirm="Revoke the API key ci', listing.text
    )
    revoked = browser_client.post(f"/settings/api-keys/{key_id.group(1)}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 303
    assert client.get("/dynatrace/rca-settings", headers=bearer).status_code == 401


def test_someone_elses_api_key_cannot_be_revoked(browser_client, make_account, client):
    other = make_account("other@example.com")
    make_account("sre@example.com", password=PASSWORD)
    log_in(browser_client, "sre@example.com")
    token = csrf_from(browser_client.get("/settings"))
    prefix = other.api_key[:10]
    answer = browser_client.post(f"/settings/api-keys/{prefix}/revoke", data={"csrf_token": token})
    assert answer.status_code == 404
    assert "text/html" in answer.headers["content-type"]
    assert other.client.get("/dynatrace/rca-settings").status_code == 200


def test_pages_forbid_inline_code_framing_and_caching(browser_client, make_account):
    page = browser_client.get("/setup")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text
    assert " style=" not in page.text


def test_json_clients_never_get_a_page(client):
    answer = client.get("/settings", headers={"Accept": "application/json"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "http_404"


def test_static_files_are_served(client):
    assert "Intl.DateTimeFormat" in client.get("/static/borealis.js").text
    assert client.get("/static/borealis.css").headers["content-type"].startswith("text/css")


def test_paths_shared_with_the_api_answer_json_clients_with_json(account):
    api = account.client.get("/dynatrace/alerts")
    assert api.headers["content-type"].startswith("application/json")
    assert api.json()["alerts"] == []
    page = account.client.get("/dynatrace/alerts", headers=HTML)
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>Alerts</h1>" in page.text
    assert "/dynatrace/alerts" in account.client.get("/openapi.json").json()["paths"]


def test_a_bad_filter_in_a_hand_made_link_gets_a_page_that_says_so(browser_client, make_account):
    make_account("sre@example.com", password=PASSWORD)
    log_in(browser_client, "sre@example.com")
    answer = browser_client.get("/dynatrace/alerts?state=SLEEPING")
    assert answer.status_code == 422
    assert "text/html" in answer.headers["content-type"]
    assert "must be one of OPEN, RESOLVED, MERGED" in answer.text
