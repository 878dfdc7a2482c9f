"""Every main page at phone width: nothing wider than the screen except tables, which scroll inside."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, screenshot
from tests.support.webhooks import encode, notification, wire_connection

pytestmark = pytest.mark.browser


def overflow(page: Page) -> int:
    """How far the page reaches past the phone's width (a mobile browser would widen its viewport)."""
    return page.evaluate("document.documentElement.scrollWidth") - page.viewport_size["width"]


def test_main_pages_fit_a_phone(phone: Page, make_account, database, app, live_server):
    account = make_account("sre@example.com", password="correct horse battery")
    wired = wire_connection(database, app.state.secret_box, account.user_id)
    answer = httpx.post(
        f"{live_server.url}{wired.url}",
        content=encode(notification("-42", problem_id="P-42", title="Payment service failure rate increase")),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    log_in(phone, account.email)

    for name, path in [
        ("incidents-phone", "/incidents"),
        ("alerts-phone", "/dynatrace/alerts"),
        ("dynatrace-phone", "/dynatrace"),
        ("settings-phone", "/settings"),
    ]:
        phone.goto(path)
        expect(phone.get_by_role("heading", level=1)).to_be_visible()
        assert overflow(phone) <= 0, f"{path} is wider than the screen"
        screenshot(phone, name)

    phone.goto("/incidents")
    phone.get_by_role("link", name="Payment service failure rate increase").click()
    expect(phone.get_by_role("heading", name="Problems and why each joined")).to_be_visible()
    assert overflow(phone) <= 0
    screenshot(phone, "incident-phone")
