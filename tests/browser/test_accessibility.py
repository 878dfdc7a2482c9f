"""Structural accessibility of every main page: language, one h1, a name for every control, keyboard focus."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page

from tests.browser.conftest import log_in
from tests.support.webhooks import encode, notification, wire_connection

pytestmark = pytest.mark.browser

UNNAMED_CONTROLS = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href], summary'
)).filter((el) => {
    const named = el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
        || (el.labels && el.labels.length) || (el.textContent || '').trim();
    return !named;
}).map((el) => el.outerHTML.slice(0, 120))"""

NOT_FOCUSABLE = """() => Array.from(document.querySelectorAll('a[href], button, input:not([type=hidden]), select, summary'))
    .filter((el) => el.tabIndex < 0).map((el) => el.outerHTML.slice(0, 120))"""


def check(page: Page, path: str) -> None:
    page.goto(path)
    assert page.evaluate("document.documentElement.lang") == "en", path
    assert page.locator("h1").count() == 1, path
    assert page.evaluate(UNNAMED_CONTROLS) == [], path
    assert page.evaluate(NOT_FOCUSABLE) == [], path


def test_every_main_page_names_its_controls(page: Page, make_account, database, app, live_server):
    check(page, "/setup")
    account = make_account("sre@example.com", password="correct horse battery")
    check(page, "/login")
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    answer = httpx.post(
        f"{live_server.url}{wired.url}",
        content=encode(notification("-7", problem_id="P-7", title="Database slow")),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    alert = account.client.get("/dynatrace/alerts").json()["alerts"][0]
    log_in(page, account.email)
    for path in (
        "/dynatrace",
        "/dynatrace/alerts",
        f"/dynatrace/alerts/{alert['id']}",
        "/incidents",
        f"/incidents/{alert['incidentId']}",
        "/settings",
    ):
        check(page, path)
