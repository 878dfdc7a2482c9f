"""The alerts table and the problem page, fed by real webhook deliveries."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.support.webhooks import BASE_MS, encode, notification, wire_connection

pytestmark = pytest.mark.browser


@pytest.fixture
def wired(signed_in, database, app):
    return wire_connection(database, app.state.secret_box, signed_in.workspace_id)


def deliver(live_server, wired, body: dict) -> None:
    answer = httpx.post(
        f"{live_server.url}{wired.url}", content=encode(body), headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200, answer.text


def test_a_new_problem_appears_in_the_table_without_a_reload(page: Page, wired, live_server):
    page.goto("/dynatrace/alerts")
    expect(page.get_by_text("No problems yet.")).to_be_visible()
    page.evaluate("window.__notReloaded = true")

    deliver(
        live_server, wired, notification("-111", problem_id="P-2001", title="Checkout failure rate increase")
    )
    row = page.get_by_role("row").filter(has_text="Checkout failure rate increase")
    expect(row).to_be_visible()
    expect(row).to_contain_text("OPEN")
    expect(row).to_contain_text("P-2001")
    expect(row.get_by_role("link", name=re.compile(r"^#\d+$"))).to_be_visible()
    assert page.evaluate("window.__notReloaded") is True

    deliver(
        live_server,
        wired,
        notification(
            "-111",
            problem_id="P-2001",
            title="Checkout failure rate increase",
            state="RESOLVED",
            observed_ms=BASE_MS + 60_000,
            end_ms=BASE_MS + 60_000,
        ),
    )
    expect(row).to_contain_text("RESOLVED")
    assert page.evaluate("window.__notReloaded") is True
    screenshot(page, "alerts")


def test_filters_and_pages_are_deep_links(page: Page, wired, live_server):
    for number in range(30):
        deliver(
            live_server,
            wired,
            notification(
                f"-{5000 + number}",
                problem_id=f"P-{5000 + number}",
                title=f"Disk full on db-{number}" if number % 2 else f"Slow response {number}",
                severity="RESOURCE_CONTENTION" if number % 2 else "PERFORMANCE",
                state="OPEN",
            ),
        )
    page.goto("/dynatrace/alerts")
    expect(page.locator("#alerts-count")).to_contain_text("of 30 problems")
    page.get_by_role("link", name="Older →").click()
    expect(page).to_have_url(re.compile(r"offset=25"))
    expect(page.locator("#alerts-count")).to_contain_text(re.compile(r"Showing 26\W30 of 30"))

    page.goto("/dynatrace/alerts")
    page.get_by_label("Severity").select_option("RESOURCE_CONTENTION")
    page.get_by_label("Search").fill("db-1")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"severity=RESOURCE_CONTENTION"))
    # db-1, db-11, ... db-19 with odd numbers: 1, 11, 13, 15, 17, 19
    expect(page.locator("#alerts-count")).to_contain_text("of 6 problems matching")
    page.reload()
    expect(page.get_by_label("Severity")).to_have_value("RESOURCE_CONTENTION")
    expect(page.get_by_label("Search")).to_have_value("db-1")

    page.goto("/dynatrace/alerts?state=MERGED")
    expect(page.get_by_text("No problem matches these filters.")).to_be_visible()


def test_problem_page_shows_history_raw_payloads_and_the_dynatrace_link(page: Page, wired, live_server):
    deliver(live_server, wired, notification("-777", problem_id="P-777", title="Memory exhausted"))
    deliver(
        live_server,
        wired,
        notification(
            "-777",
            problem_id="P-777",
            title="Memory exhausted",
            state="closed",
            observed_ms=BASE_MS + 120_000,
            end_ms=BASE_MS + 120_000,
        ),
    )
    page.goto("/dynatrace/alerts")
    page.get_by_role("link", name="Memory exhausted").click()
    expect(page.get_by_role("heading", name="Memory exhausted")).to_be_visible()
    link = page.get_by_role("link", name="Open in Dynatrace")
    expect(link).to_have_attribute("href", re.compile(r"problemdetails;pid=-777$"))
    history = page.locator(".notification")
    expect(history).to_have_count(2)
    expect(page.get_by_text("Dynatrace sent the state as closed")).to_be_visible()
    raw = history.first.locator("pre")
    expect(raw).to_be_hidden()
    history.first.get_by_text("Raw payload").click()
    expect(raw).to_contain_text('"PID": "-777"')
    screenshot(page, "problem")


def test_a_payload_link_that_is_not_http_is_never_rendered(page: Page, wired, live_server):
    body = notification("-666", problem_id="P-666", title="Sneaky link")
    body["ProblemURL"] = "javascript:alert(1)"
    deliver(live_server, wired, body)
    page.goto("/dynatrace/alerts")
    expect(page.get_by_role("row").filter(has_text="Sneaky link")).to_be_visible()
    expect(page.locator('a[href^="javascript"]')).to_have_count(0)


def test_another_users_problem_is_not_found(page: Page, wired, live_server, make_account, database, app):
    other = make_account("other@example.com")
    other_wired = wire_connection(database, app.state.secret_box, other.workspace_id)
    deliver(live_server, other_wired, notification("-999000", problem_id="P-9", title="Not yours"))
    alert_id = other.client.get("/dynatrace/alerts").json()["alerts"][0]["id"]
    response = page.goto(f"/dynatrace/alerts/{alert_id}")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()
