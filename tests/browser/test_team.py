"""A team of three in one workspace, as new users would go about it, each in a browser of their own."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, browser_context, log_in, screenshot
from tests.support.builders import problem_body
from tests.support.pages import connect

pytestmark = pytest.mark.browser


@pytest.fixture
def open_tab(chromium: Browser, live_server, database) -> Iterator:
    """``open_tab()``: a laptop-sized tab in a browser context of its own (a person at their desk)."""
    contexts = []

    def factory() -> Page:
        context = browser_context(chromium, live_server.url, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        return context.new_page()

    yield factory
    for context in contexts:
        context.close()


def switch_to(page: Page, workspace: str, role: str) -> None:
    page.get_by_label("Workspace", exact=True).select_option(label=f"{workspace} ({role})")
    expect(page.get_by_role("status").first).to_contain_text(f"You are working in {workspace}")


def test_a_team_of_three_runs_an_incident_in_one_workspace(
    open_tab, make_account, fake_dynatrace, live_server
):
    for role in ("owner", "responder", "viewer"):
        make_account(f"{role}@example.com", password=PASSWORD)

    # 1. The owner makes the team's workspace, connects Dynatrace and invites the two others.
    owner = open_tab()
    log_in(owner, "owner@example.com")
    owner.goto("/members")
    owner.get_by_label("Workspace name").fill("Checkout on call")
    owner.get_by_role("button", name="Create workspace").click()
    expect(owner.get_by_role("status").first).to_contain_text("Checkout on call is created")
    expect(owner.get_by_label("Workspace", exact=True).locator("option:checked")).to_have_text(
        "Checkout on call (owner)"
    )
    connect(owner, fake_dynatrace.environment_url, fake_dynatrace.add_token())
    expect(owner.get_by_role("status").first).to_contain_text("Connected to")
    webhook_url = owner.locator("#webhook-url").inner_text()
    for email, role in (("responder@example.com", "responder"), ("viewer@example.com", "viewer")):
        owner.goto("/members")
        owner.get_by_label("Username").fill(email)
        owner.get_by_label("Role", exact=True).select_option(role)
        owner.get_by_role("button", name="Invite").click()
        expect(owner.get_by_role("status").first).to_contain_text(f"{email} is now a {role}")
    members = owner.locator("#members-table")
    expect(members.locator("tr[data-member]")).to_have_count(3)
    screenshot(owner, "team-members")

    # A problem reaches the team's webhook.
    delivery = httpx.post(
        webhook_url,
        json=problem_body("1", display="P-1", title="Checkout latency", entities=("SERVICE-CHECKOUT",)),
    )
    assert delivery.status_code == 200, delivery.text

    # 2. The responder acknowledges, assigns to the viewer and leaves a note.
    responder = open_tab()
    log_in(responder, "responder@example.com")
    switch_to(responder, "Checkout on call", "responder")
    responder.get_by_role("link", name="Checkout latency").click()
    responder.get_by_role("button", name="Acknowledge").click()
    expect(responder.locator("#acknowledged")).to_contain_text("responder@example.com")
    responder.get_by_label("Assign to").select_option(label="viewer@example.com (viewer)")
    responder.get_by_role("button", name="Assign", exact=True).click()
    expect(responder.locator("#assignee")).to_have_text("viewer@example.com")
    responder.get_by_label("Add a note").fill(
        "Rolled back **checkout v42**; <script>alert(1)</script> latency is recovering."
    )
    responder.get_by_role("button", name="Add note").click()
    note = responder.locator(".note").first
    expect(note.locator("strong")).to_have_text("checkout v42")
    expect(note).to_contain_text("<script>alert(1)</script>")
    screenshot(responder, "team-incident-responder")

    # 3. The viewer sees all of it, and nothing to change it with.
    viewer = open_tab()
    log_in(viewer, "viewer@example.com")
    switch_to(viewer, "Checkout on call", "viewer")
    viewer.goto("/incidents?assignee=mine")
    viewer.get_by_role("link", name="Checkout latency").click()
    expect(viewer.locator("#acknowledged")).to_contain_text("responder@example.com")
    expect(viewer.locator("#assignee")).to_have_text("viewer@example.com")
    expect(viewer.locator("#time-to-acknowledge")).not_to_have_text("—")
    expect(viewer.locator(".note").first).to_contain_text("latency is recovering")
    timeline = viewer.locator("#timeline")
    expect(timeline.locator("li").filter(has_text="acknowledged")).to_contain_text("by responder@example.com")
    expect(timeline.locator("li").filter(has_text="assigned to viewer@example.com")).to_contain_text(
        "by responder@example.com"
    )
    expect(viewer.locator("main").get_by_role("button")).to_have_count(0)
    expect(viewer.locator("main textarea, main select")).to_have_count(0)
    screenshot(viewer, "team-incident-viewer")
    viewer.goto("/dynatrace")
    expect(viewer.locator("#owners-only")).to_be_visible()
    expect(viewer.locator("#webhook-url")).to_have_count(0)
    expect(viewer.locator("main").get_by_role("button")).to_have_count(0)
    viewer.goto("/members")
    expect(viewer.locator("#my-role")).to_have_text("viewer")
    expect(viewer.get_by_role("button", name="Invite")).to_have_count(0)
    expect(viewer.locator("#members-table").get_by_role("button")).to_have_count(0)
    viewer.goto("/settings")
    expect(viewer.get_by_role("button", name="Save grouping settings")).to_have_count(0)
    expect(viewer.get_by_label("Score threshold")).to_be_disabled()
