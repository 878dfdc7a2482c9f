"""Installing the webhook from the Dynatrace page, in Chromium against the fake Dynatrace."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from borealis.simulation import ALL_SCOPES
from tests.browser.conftest import screenshot

pytestmark = pytest.mark.browser


def test_install_automatically_then_disconnect_removes_it(page: Page, signed_in, fake_dynatrace):
    page.goto("/dynatrace")
    page.get_by_label("Environment URL").fill(fake_dynatrace.environment_url)
    page.get_by_label("API token").fill(fake_dynatrace.add_token(ALL_SCOPES))
    page.get_by_role("button", name="Connect", exact=True).click()

    page.get_by_role("button", name="Install automatically").click()
    expect(page.get_by_role("status").first).to_contain_text("Created the problem notification 'Borealis'")
    section = page.locator("#webhook-install")
    expect(section.get_by_text("installed", exact=True)).to_be_visible()
    expect(section).to_contain_text("alerting profile Default")
    expect(page.get_by_role("button", name="Install again")).to_be_visible()
    assert len(fake_dynatrace.problem_notifications()) == 1
    screenshot(page, "dynatrace-webhook-installed")

    page.get_by_text("Disconnect…").click()
    page.get_by_role("button", name="Disconnect Dynatrace").click()
    expect(page.get_by_text("Removed the problem notification 'Borealis' from Dynatrace.")).to_be_visible()
    assert fake_dynatrace.problem_notifications() == []
