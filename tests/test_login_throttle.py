"""Login throttling over real HTTP: per account and per client address, growing locks, an audit line."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import sqlalchemy as sa

from borealis.app import create_app
from borealis.auth.models import LoginThrottle
from borealis.db import utcnow
from tests.support.forms import log_in
from tests.support.server import serve_in_thread

HTML = {"Accept": "text/html,application/xhtml+xml"}
PASSWORD = "correct horse battery"
WRONG = "not the password at all"


@contextmanager
def browser_from(live_server, address: str = "127.0.0.1") -> Iterator[httpx.Client]:
    """A cookie-keeping page client whose connections come from ``address`` (any 127.x is loopback)."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(base_url=live_server.url, headers=HTML, timeout=30, transport=transport) as http:
        yield http


def fail_until_locked(http: httpx.Client, email: str, free: int) -> httpx.Response:
    for attempt in range(free):
        answer = log_in(http, email, WRONG)
        assert answer.status_code == 401, f"attempt {attempt + 1}: {answer.status_code}"
    return log_in(http, email, WRONG)


def move_every_lock(database, *, to: timedelta) -> None:
    """Let every lock end ``to`` from now: in the past, as if its time had passed, or far enough ahead
    that a slow machine cannot outlast the first lock's one second."""
    with database.session(write=True) as session:
        session.execute(
            sa.update(LoginThrottle)
            .where(LoginThrottle.locked_until.is_not(None))
            .values(locked_until=utcnow() + to)
        )
        session.commit()


def end_every_lock(database) -> None:
    move_every_lock(database, to=timedelta(seconds=-1))


def hold_every_lock(database) -> None:
    move_every_lock(database, to=timedelta(hours=1))


def test_wrong_passwords_lock_the_account_and_then_the_right_one_is_refused_too(
    live_server, make_account, settings, database
):
    make_account("sre@example.com", password=PASSWORD)
    with browser_from(live_server) as http:
        locked = fail_until_locked(http, "sre@example.com", settings.login_free_failures)
        assert locked.status_code == 429
        assert locked.headers["retry-after"] == "1"
        assert "Too many failed logins" in locked.text
        assert "Try again in 1 second" in locked.text

        hold_every_lock(database)
        refused = log_in(http, "sre@example.com", PASSWORD)
        assert refused.status_code == 429
        assert 3500 < int(refused.headers["retry-after"]) <= 3600
        assert "Try again in 60 minutes" in refused.text
        assert http.get("/settings").status_code == 303


def test_once_the_lock_has_passed_the_right_password_works_and_resets_the_account(
    live_server, make_account, settings, database
):
    make_account("sre@example.com", password=PASSWORD)
    with browser_from(live_server) as http:
        assert fail_until_locked(http, "sre@example.com", settings.login_free_failures).status_code == 429
        end_every_lock(database)
        # Each failure past the free ones locks for twice as long as the one before.
        again = log_in(http, "sre@example.com", WRONG)
        assert again.status_code == 429
        assert again.headers["retry-after"] == "2"
        end_every_lock(database)

        assert log_in(http, "sre@example.com", PASSWORD).status_code == 303
        assert http.get("/settings").status_code == 200
    with database.session() as session:
        kinds = session.scalars(sa.select(LoginThrottle.kind)).all()
    assert kinds == ["address"]  # the account starts afresh, the address keeps its count
    with browser_from(live_server) as http:
        for _ in range(settings.login_free_failures):
            assert log_in(http, "sre@example.com", WRONG).status_code == 401


def test_a_locked_account_does_not_lock_another_account_from_another_address(
    live_server, make_account, settings, database
):
    make_account("sre@example.com", password=PASSWORD)
    make_account("other@example.com", password=PASSWORD)
    with browser_from(live_server, "127.0.0.1") as attacker:
        assert fail_until_locked(attacker, "sre@example.com", settings.login_free_failures).status_code == 429
    hold_every_lock(database)
    with browser_from(live_server, "127.0.0.2") as colleague:
        assert log_in(colleague, "other@example.com").status_code == 303
        assert colleague.get("/settings").status_code == 200
    # The account's lock holds whatever address the next attempt comes from.
    with browser_from(live_server, "127.0.0.3") as elsewhere:
        assert log_in(elsewhere, "sre@example.com").status_code == 429


def test_an_address_trying_many_accounts_is_locked(live_server, make_account, settings, database):
    make_account("sre@example.com", password=PASSWORD)
    with browser_from(live_server, "127.0.0.4") as sprayer:
        for number in range(settings.login_address_free_failures):
            answer = log_in(sprayer, f"user{number}@example.com", WRONG)
            assert answer.status_code == 401, f"account {number}: {answer.status_code}"
        locked = log_in(sprayer, "someone-new@example.com", WRONG)
        assert locked.status_code == 429
        assert locked.headers["retry-after"] == "1"
        hold_every_lock(database)
        # The address is locked for every account, a real one with its right password too.
        assert log_in(sprayer, "sre@example.com").status_code == 429
    with browser_from(live_server, "127.0.0.5") as owner:
        assert log_in(owner, "sre@example.com").status_code == 303


def test_an_unknown_email_is_throttled_like_a_known_one(live_server, make_account, settings):
    make_account("sre@example.com", password=PASSWORD)
    with browser_from(live_server) as http:
        known = fail_until_locked(http, "sre@example.com", settings.login_free_failures)
    with browser_from(live_server, "127.0.0.6") as http:
        unknown = fail_until_locked(http, "Nobody@Example.com", settings.login_free_failures)
    assert (known.status_code, known.headers["retry-after"]) == (429, "1")
    assert (unknown.status_code, unknown.headers["retry-after"]) == (429, "1")
    assert notice(known) == notice(unknown)


def notice(page: httpx.Response) -> str:
    match = re.search(r'id="login-error">([^<]+)<', page.text)
    assert match, "the page shows no login error"
    return match.group(1)


def test_each_lockout_writes_one_audit_line_without_the_password(
    live_server, make_account, settings, database, caplog
):
    make_account("sre@example.com", password=PASSWORD)
    caplog.set_level(logging.WARNING, logger="borealis.audit")
    with browser_from(live_server) as http:
        fail_until_locked(http, "SRE@example.com", settings.login_free_failures)
        hold_every_lock(database)
        log_in(http, "sre@example.com", WRONG)  # refused by the lock: not counted, no new line
        end_every_lock(database)
        log_in(http, "sre@example.com", WRONG)
    lines = [record for record in caplog.records if record.name == "borealis.audit"]
    assert [record.getMessage() for record in lines] == [
        "login lockout: account 'sre@example.com' locked for 1 second after 6 failed logins",
        "login lockout: account 'sre@example.com' locked for 2 seconds after 7 failed logins",
    ]
    assert all(record.levelno == logging.WARNING for record in lines)
    assert lines[0].keyKind == "account"
    assert lines[0].failures == settings.login_free_failures + 1
    assert not any(
        WRONG in record.getMessage() or PASSWORD in record.getMessage() for record in caplog.records
    )


def test_a_lock_holds_in_another_app_on_the_same_database(live_server, make_account, settings, database):
    """The count lives in the database: a second app on it, as another worker process would be, sees the lock."""
    make_account("sre@example.com", password=PASSWORD)
    with browser_from(live_server) as http:
        assert fail_until_locked(http, "sre@example.com", settings.login_free_failures).status_code == 429
    hold_every_lock(database)
    with (
        serve_in_thread(create_app(settings, database), lifespan="off") as other,
        browser_from(other) as http,
    ):
        assert log_in(http, "sre@example.com").status_code == 429
