"""Server-side web sessions over real HTTP: logout, revocation from the settings page, a password change
and an administrator end them, and a copy of the cookie ends with them."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa

from borealis import crypto
from borealis.auth.models import UserSession
from borealis.db import utcnow
from tests.support.forms import csrf_from, log_in
from tests.support.processes import process_env, run_cli

HTML = {"Accept": "text/html,application/xhtml+xml"}
PASSWORD = "correct horse battery"
COOKIE = "borealis_session"
API = "/dynatrace/rca-settings"


@pytest.fixture
def browsers(live_server, database) -> Iterator:
    """Open cookie-keeping page clients, each with its own user agent; all closed at the end."""
    opened: list[httpx.Client] = []

    def open_browser(user_agent: str = "Test browser") -> httpx.Client:
        http = httpx.Client(base_url=live_server.url, headers=HTML | {"User-Agent": user_agent}, timeout=30)
        opened.append(http)
        return http

    yield open_browser
    for http in opened:
        http.close()


def copy_of(http: httpx.Client, live_server) -> httpx.Client:
    """Another client carrying the same cookie, as a thief with a copy of it would."""
    return httpx.Client(base_url=live_server.url, cookies={COOKIE: http.cookies[COOKIE]}, timeout=30)


def signed_in(http: httpx.Client) -> bool:
    """Whether the client's cookie is a live session, asked of the API and of a page."""
    api = http.get(API, headers={"Accept": "application/json"}).status_code
    page = http.get("/settings", headers=HTML)
    assert (api == 200) == (page.status_code == 200), (api, page.status_code)
    if page.status_code != 200:
        assert api == 401
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login")
    return api == 200


def session_rows(database, user_id: str) -> list[UserSession]:
    with database.session() as session:
        return list(session.scalars(sa.select(UserSession).where(UserSession.user_id == user_id)))


def session_ids_on(page: httpx.Response) -> list[str]:
    return re.findall(r'action="/settings/sessions/([^/]+)/revoke"', page.text)


def test_logout_makes_a_copied_cookie_useless_on_the_api_and_the_pages(browsers, make_account, live_server):
    make_account("sre@example.com", password=PASSWORD)
    http = browsers()
    assert log_in(http, "sre@example.com").status_code == 303
    with copy_of(http, live_server) as thief:
        assert signed_in(thief)
        token = csrf_from(http.get("/settings"))
        assert http.post("/logout", data={"csrf_token": token}).headers["location"] == "/login"
        assert not signed_in(thief)
    assert not signed_in(http)


def test_the_database_keeps_only_a_hash_of_the_cookies_token(browsers, make_account, database):
    account = make_account("sre@example.com", password=PASSWORD)
    http = browsers()
    log_in(http, "sre@example.com")
    signed = http.cookies[COOKIE].split(".")[0]
    content = json.loads(base64.b64decode(signed + "=" * (-len(signed) % 4)))
    [row] = session_rows(database, account.user_id)
    assert row.token_hash == crypto.digest(content["session"])
    assert content["session"] not in {row.id, row.token_hash}


def test_revoking_a_session_on_the_settings_page_ends_that_one_only(browsers, make_account, live_server):
    make_account("sre@example.com", password=PASSWORD)
    laptop, phone = browsers("Laptop browser"), browsers("Phone browser")
    log_in(laptop, "sre@example.com")
    log_in(phone, "sre@example.com")
    page = laptop.get("/settings")
    assert len(session_ids_on(page)) == 2
    phone_row = re.search(r'<tr id="session-([^"]+)">\s*<td>\s*Phone browser', page.text)
    laptop_row = re.search(
        r'<tr id="session-([^"]+)">\s*<td>\s*Laptop browser\s*<span[^>]*>this session<', page.text
    )
    assert phone_row
    assert laptop_row
    assert "127.0.0.1" in page.text

    with copy_of(phone, live_server) as thief:
        answer = laptop.post(
            f"/settings/sessions/{phone_row.group(1)}/revoke", data={"csrf_token": csrf_from(page)}
        )
        assert answer.status_code == 303
        assert not signed_in(phone)
        assert not signed_in(thief)
    assert signed_in(laptop)
    assert session_ids_on(laptop.get("/settings")) == [laptop_row.group(1)]

    # Revoking the session one is using logs it out.
    page = laptop.get("/settings")
    answer = laptop.post(
        f"/settings/sessions/{laptop_row.group(1)}/revoke", data={"csrf_token": csrf_from(page)}
    )
    assert answer.headers["location"] == "/login"
    assert not signed_in(laptop)


def test_someone_elses_session_is_neither_listed_nor_revocable(browsers, make_account, database):
    make_account("sre@example.com", password=PASSWORD)
    other = make_account("other@example.com", password=PASSWORD)
    mine, theirs = browsers("My browser"), browsers("Their browser")
    log_in(mine, "sre@example.com")
    log_in(theirs, "other@example.com")
    [their_session] = session_rows(database, other.user_id)
    page = mine.get("/settings")
    assert their_session.id not in page.text
    assert "Their browser" not in page.text
    assert len(session_ids_on(page)) == 1

    answer = mine.post(f"/settings/sessions/{their_session.id}/revoke", data={"csrf_token": csrf_from(page)})
    assert answer.status_code == 404
    assert "text/html" in answer.headers["content-type"]
    assert signed_in(theirs)


def change_password(http: httpx.Client, current: str, new: str, again: str | None = None) -> httpx.Response:
    token = csrf_from(http.get("/settings"))
    form = {
        "current_password": current,
        "new_password": new,
        "new_password_confirmation": new if again is None else again,
        "csrf_token": token,
    }
    return http.post("/settings/password", data=form)


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(
    browsers, make_account, live_server, caplog
):
    make_account("sre@example.com", password=PASSWORD)
    caplog.set_level(logging.INFO, logger="borealis.audit")
    here, elsewhere = browsers("Here"), browsers("Elsewhere")
    log_in(here, "sre@example.com")
    log_in(elsewhere, "sre@example.com")
    new = "a brand new passphrase"

    wrong = change_password(here, "not my password", new)
    assert wrong.status_code == 422
    assert "Nothing was changed" in wrong.text
    mismatch = change_password(here, PASSWORD, new, again=new + "!")
    assert mismatch.status_code == 422
    assert "the two new passwords differ" in mismatch.text
    too_short = change_password(here, PASSWORD, "short")
    assert too_short.status_code == 422
    assert signed_in(elsewhere)

    with copy_of(elsewhere, live_server) as thief:
        changed = change_password(here, PASSWORD, new)
        assert changed.status_code == 303
        assert "1 other session is ended" in here.get("/settings").text
        assert not signed_in(elsewhere)
        assert not signed_in(thief)
    assert signed_in(here)
    audit = [record.getMessage() for record in caplog.records if record.name == "borealis.audit"]
    assert "password changed: sre@example.com" in audit
    assert any(line.startswith("sessions revoked: 1 of user ") for line in audit)
    assert not any(new in line or PASSWORD in line for line in audit)
    with httpx.Client(base_url=str(here.base_url), headers=HTML) as fresh:
        assert log_in(fresh, "sre@example.com", PASSWORD).status_code == 401
        assert log_in(fresh, "sre@example.com", new).status_code == 303


def test_an_expired_or_idle_session_is_refused(browsers, make_account, database, settings):
    account = make_account("sre@example.com", password=PASSWORD)
    expired, idle = browsers(), browsers()
    log_in(expired, "sre@example.com")
    [first] = session_rows(database, account.user_id)
    log_in(idle, "sre@example.com")
    assert signed_in(expired)
    assert signed_in(idle)
    now = utcnow()
    with database.session(write=True) as session:
        session.execute(
            sa.update(UserSession)
            .where(UserSession.id == first.id)
            .values(expires_at=now - timedelta(seconds=1))
        )
        session.execute(
            sa.update(UserSession)
            .where(UserSession.id != first.id)
            .values(last_seen_at=now - timedelta(seconds=settings.session_idle_seconds + 1))
        )
        session.commit()
    assert not signed_in(expired)
    assert not signed_in(idle)


def test_a_session_notes_its_last_use_at_most_once_a_minute(browsers, make_account, database):
    account = make_account("sre@example.com", password=PASSWORD)
    http = browsers()
    log_in(http, "sre@example.com")
    long_ago = utcnow() - timedelta(minutes=5)
    with database.session(write=True) as session:
        session.execute(sa.update(UserSession).values(last_seen_at=long_ago))
        session.commit()
    assert signed_in(http)
    [row] = session_rows(database, account.user_id)
    assert row.last_seen_at > long_ago + timedelta(minutes=4)
    assert signed_in(http)
    [again] = session_rows(database, account.user_id)
    assert again.last_seen_at == row.last_seen_at


def test_an_administrator_ends_a_users_sessions_from_the_command_line(
    browsers, make_account, database_url, tmp_path, live_server
):
    account = make_account("sre@example.com", password=PASSWORD)
    env = process_env(database_url, tmp_path)
    laptop, phone = browsers(), browsers()
    log_in(laptop, "sre@example.com")
    log_in(phone, "sre@example.com")

    revoked = run_cli(env, "users", "revoke-sessions", "sre@example.com")
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout == ""
    assert "2 web session(s) of sre@example.com ended" in revoked.stderr
    assert not signed_in(laptop)
    assert not signed_in(phone)
    # API keys are not sessions: they keep working.
    assert account.client.get(API).status_code == 200

    log_in(laptop, "sre@example.com")
    reset = run_cli(
        env, "users", "set-password", "sre@example.com", "--password-stdin", stdin="reset by the admin\n"
    )
    assert reset.returncode == 0, reset.stderr
    assert "1 web session(s) ended" in reset.stderr
    assert not signed_in(laptop)
    assert log_in(laptop, "sre@example.com", "reset by the admin").status_code == 303

    unknown = run_cli(env, "users", "revoke-sessions", "ghost@example.com")
    assert unknown.returncode == 1
    assert "no user with email ghost@example.com" in unknown.stderr
