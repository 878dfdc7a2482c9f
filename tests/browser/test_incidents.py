"""Incidents in Chromium: the list, why each problem joined, manual actions, and the RCA report."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from borealis.rca.report import (
    Walk,
)
from tests.browser.conftest import screenshot
from tests.support.builders import webhook_body
from tests.support.jobs import run_pending
from tests.support.pages import connect
from tests.support.rca_scenarios import deployment_breaks_service
from tests.support.reports import store_finished_rca, walk_report
from tests.support.webhooks import encode, notification, wire_connection

pytestmark = pytest.mark.browser

SHARED_HOST = [{"type": "HOST", "name": "db-1", "entity": "HOST-00000000000000D1"}]


def deliver(url: str, body: dict) -> None:
    answer = httpx.post(url, content=encode(body), headers={"Content-Type": "application/json"})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def webhook(signed_in, database, app, live_server) -> str:
    wired = wire_connection(database, app.state.secret_box, signed_in.workspace_id)
    return f"{live_server.url}{wired.url}"


def test_related_problems_share_an_incident_that_says_why(page: Page, webhook):
    deliver(webhook, notification("-1", problem_id="P-1", title="Database slow", entities=SHARED_HOST))
    deliver(webhook, notification("-2", problem_id="P-2", title="Checkout errors", entities=SHARED_HOST))
    deliver(
        webhook,
        notification(
            "-3",
            problem_id="P-3",
            title="Unrelated batch job",
            entities=[{"type": "HOST", "name": "batch-9", "entity": "HOST-0000000000000B09"}],
            tags="",
        ),
    )
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/incidents$"))
    expect(page.locator("#incidents-count")).to_contain_text("of 2 incidents")
    screenshot(page, "incidents")

    page.get_by_role("row").filter(has_text="2 open / 2").get_by_role("link").first.click()
    expect(page.get_by_role("heading", name="Problems and why each joined")).to_be_visible()
    problems = page.locator("table").filter(has_text="Why it is here")
    expect(problems.get_by_role("row")).to_have_count(3)
    joined = problems.get_by_role("row").filter(has_text="P-2")
    expect(joined).to_contain_text("HOST-00000000000000D1")
    expect(page.locator("#timeline")).to_contain_text("P-2")


def test_resolve_reopen_move_and_merge_by_hand(page: Page, webhook):
    deliver(webhook, notification("-1", problem_id="P-1", title="Database slow", entities=SHARED_HOST))
    deliver(webhook, notification("-2", problem_id="P-2", title="Checkout errors", entities=SHARED_HOST))
    page.goto("/incidents")
    page.get_by_role("link", name=re.compile("Database slow|Checkout errors")).first.click()
    incident_url = page.url

    page.get_by_role("button", name="Resolve incident").click()
    expect(page.get_by_role("status").first).to_contain_text("resolved")
    expect(page.locator("#incident-badges")).to_contain_text("resolved")
    page.get_by_role("button", name="Reopen incident").click()
    expect(page.locator("#incident-badges")).to_contain_text("open")

    page.get_by_label("Move P-2 to").select_option("new")
    page.get_by_role("button", name="Move P-2").click()
    status = page.get_by_role("status").first
    expect(status).to_contain_text("moved to incident #")
    new_id = re.search(r"#(\d+)", status.inner_text()).group(1)
    expect(page.locator("table").filter(has_text="Why it is here").get_by_role("row")).to_have_count(2)
    expect(page.locator("#timeline")).to_contain_text("moved by hand")

    page.get_by_label("Merge another incident into this one").select_option(new_id)
    page.get_by_role("button", name="Merge", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text(f"Incident #{new_id} is merged into this one")
    expect(page.locator("table").filter(has_text="Why it is here").get_by_role("row")).to_have_count(3)
    assert page.url == incident_url

    page.goto(f"/incidents/{new_id}")
    expect(page.get_by_text("This incident was merged into")).to_be_visible()


def test_rca_runs_on_demand_and_its_report_appears_without_a_reload(
    page: Page, signed_in, fake_dynatrace, app, live_server
):
    connect(page, fake_dynatrace.environment_url, fake_dynatrace.add_token())
    webhook_url = page.locator("#webhook-url").inner_text()
    scenario = deployment_breaks_service()
    scenario.load_into(fake_dynatrace)
    for problem in scenario.problems:
        assert httpx.post(webhook_url, json=webhook_body(problem)).status_code == 200

    page.goto("/incidents")
    page.locator("#incidents-live").get_by_role("link").first.click()
    rca = page.locator("#rca")
    expect(rca).to_contain_text("No analysis yet")
    page.get_by_role("button", name="Run root-cause analysis").click()
    expect(rca).to_contain_text("queued")
    page.evaluate("window.__notReloaded = true")

    run_pending(app)
    expect(rca).to_contain_text("Verdict:")
    assert page.evaluate("window.__notReloaded") is True
    expect(rca.locator(".verdict")).to_contain_text("CONFIRMED")
    expect(rca.get_by_role("heading", name="Root cause")).to_be_visible()
    for heading in ("Impact", "Ruled out", "Not checked", "Next steps"):
        expect(rca.get_by_role("heading", name=heading, exact=True)).to_be_visible()

    first_cite = rca.locator(".cites").first.locator("details").first
    expect(first_cite.locator(".cite__body")).to_be_hidden()
    first_cite.locator("summary").click()
    expect(first_cite.locator(".cite__body")).to_contain_text("Source:")
    screenshot(page, "incident")
    expect(page.get_by_role("button", name="Re-run root-cause analysis")).to_be_visible()


def test_an_incident_of_another_user_is_not_found(
    page: Page, webhook, make_account, database, app, live_server
):
    other = make_account("other@example.com")
    wired = wire_connection(database, app.state.secret_box, other.workspace_id)
    deliver(f"{live_server.url}{wired.url}", notification("-50", problem_id="P-50", title="Not yours"))
    incident_id = other.client.get("/incidents").json()["incidents"][0]["id"]
    assert page.goto(f"/incidents/{incident_id}").status == 404
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    answer = page.request.post(f"/incidents/{incident_id}/resolve", form={"csrf_token": token})
    assert answer.status == 404
    assert other.client.get(f"/incidents/{incident_id}").json()["status"] == "open"


def test_the_rca_walk_is_drawn_before_it_is_read(page: Page, signed_in, webhook, database):
    deliver(webhook, notification("-60", problem_id="P-60", title="Checkout slow", entities=SHARED_HOST))
    incident_id = signed_in.client.get("/incidents").json()["incidents"][0]["id"]
    report = walk_report()
    store_finished_rca(database, incident_id, report)

    page.goto(f"/incidents/{incident_id}")
    rca = page.locator("#rca")
    expect(rca.locator(".verdict")).to_contain_text("LIKELY")
    graph = rca.locator("svg.walk-graph__svg")
    expect(graph).to_be_visible()
    expect(graph).to_have_accessible_name(
        re.compile(
            r"the path: frontend \(symptom, anomalous\) → checkout-service \(anomalous, impacted\) → orders-db \(cause\)"
        )
    )
    cause = graph.locator('[data-state="cause"]')
    expect(cause).to_have_count(1)
    expect(cause).to_have_attribute("data-role", "cause")
    expect(cause.locator("text").first).to_have_text("orders-db")
    expect(cause).to_contain_text("cause")
    expect(graph.locator("g.walk-node")).to_have_count(len(report.walk.nodes))
    expect(graph.locator("line.walk-edge--path")).to_have_count(2)
    for state in ("anomalous", "healthy", "not_checked"):
        expect(graph.locator(f'[data-state="{state}"]').first).to_be_attached()
    # A name from Dynatrace is text, never markup.
    expect(graph.locator("text.walk-node__name", has_text="cache <script>")).to_have_count(1)
    assert page.locator("#rca script").count() == 0
    legend = rca.locator(".walk-legend")
    for words in ("Cause", "Anomalous", "Checked, healthy", "Not checked", "The path"):
        expect(legend).to_contain_text(words)

    sparklines = rca.locator("svg.spark")
    expect(sparklines).to_have_count(3)
    for index, hop in enumerate(report.walk.path):
        spark = sparklines.nth(index)
        expect(spark).to_be_visible()
        expect(spark).to_have_attribute("aria-label", re.compile(re.escape(hop.figure)))
        expect(spark.locator("polyline").first).to_be_attached()
        expect(spark.locator(".spark__band")).to_have_count(1)
        expect(spark.locator(".spark__onset")).to_have_count(1)
        expect(rca.locator(".walk-hop").nth(index)).to_contain_text(hop.figure)
    # A null in the series breaks the line in two.
    expect(sparklines.nth(0).locator("polyline")).to_have_count(2)
    expect(rca.locator(".walk__calls")).to_have_text("23 Dynatrace API calls, 7 entities checked")
    ranking = rca.locator("ol.candidates > li")
    expect(ranking).to_have_count(2)
    expect(ranking.first).to_contain_text("orders-db")
    expect(ranking.first).to_contain_text("score 0.82")
    screenshot(page, "incident-rca-walk")

    page.set_viewport_size({"width": 390, "height": 844})
    expect(graph).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    box = graph.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 390
    screenshot(page, "incident-rca-walk-narrow")


def test_a_report_without_a_walk_shows_no_walk(page: Page, signed_in, webhook, database):
    deliver(webhook, notification("-61", problem_id="P-61", title="Checkout slow", entities=SHARED_HOST))
    incident_id = signed_in.client.get("/incidents").json()["incidents"][0]["id"]
    report = walk_report().model_copy(update={"walk": Walk(), "candidates": []})
    store_finished_rca(database, incident_id, report)

    page.goto(f"/incidents/{incident_id}")
    rca = page.locator("#rca")
    expect(rca.locator(".verdict")).to_contain_text("LIKELY")
    expect(rca.locator(".walk")).to_have_count(0)
    expect(rca.get_by_role("heading", name="Candidates, ranked")).to_have_count(0)
    expect(rca.get_by_role("heading", name="Root cause")).to_be_visible()
