"""Every main page at phone width: nothing wider than the screen except tables, which scroll inside."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import log_in, screenshot
from tests.support.reports import store_finished_rca, walk_report
from tests.support.webhooks import encode, notification, wire_connection

pytestmark = pytest.mark.browser


def overflow(page: Page) -> int:
    """How far the page reaches past the phone's width (a mobile browser would widen its viewport)."""
    return page.evaluate("document.documentElement.scrollWidth") - page.viewport_size["width"]


def test_main_pages_fit_a_phone(phone: Page, make_account, database, app, live_server):
    account = make_account("sre@example.com", password="correct horse battery")
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
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


def test_an_rca_with_its_walk_fits_a_phone(phone: Page, make_account, database, app, live_server):
    account = make_account("sre@example.com", password="correct horse battery")
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    answer = httpx.post(
        f"{live_server.url}{wired.url}",
        content=encode(notification("-43", problem_id="P-43", title="Checkout slow")),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    incident_id = account.client.get("/incidents").json()["incidents"][0]["id"]
    store_finished_rca(database, incident_id, walk_report())
    log_in(phone, account.email)

    phone.goto(f"/incidents/{incident_id}")
    graph = phone.locator("#rca svg.walk-graph__svg")
    expect(graph).to_be_visible()
    expect(phone.locator("#rca svg.spark")).to_have_count(3)
    assert overflow(phone) <= 0, "the incident page with its RCA walk is wider than the screen"
    for svg in (graph, *phone.locator("#rca svg.spark").all()):
        box = svg.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= phone.viewport_size["width"]
    screenshot(phone, "incident-rca-phone")
