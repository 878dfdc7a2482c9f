"""Connecting Dynatrace and wiring the webhook, in Chromium against the fake Dynatrace."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.support.pages import connect
from tests.support.webhooks import SAMPLES, filled_template

pytestmark = pytest.mark.browser

READ_ONLY = ("problems.read", "entities.read", "events.read", "logs.read", "metrics.read", "DataExport")


def test_connecting_shows_the_status_card_with_scopes(page: Page, signed_in, fake_dynatrace):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/dynatrace$"))
    expect(page.get_by_role("heading", name="Scopes to grant")).to_be_visible()
    screenshot(page, "dynatrace-connect")

    connect(page, fake_dynatrace.environment_url, fake_dynatrace.add_token(READ_ONLY))
    expect(page.get_by_role("status").first).to_contain_text(f"Connected to {fake_dynatrace.url}")
    card = page.locator("#status")
    expect(card).to_contain_text(fake_dynatrace.cluster_version)
    expect(card.get_by_role("link", name=fake_dynatrace.url)).to_be_visible()
    settings_write = card.locator("li").filter(has_text="settings.write")
    expect(settings_write.get_by_text("missing")).to_be_visible()
    expect(card.locator("li").filter(has_text="problems.read").get_by_text("granted")).to_be_visible()
    expect(card.get_by_text("the token lacks settings.write")).to_be_visible()
    screenshot(page, "dynatrace")


def test_a_failed_connect_says_why_and_keeps_the_url_but_not_the_token(page: Page, signed_in, fake_dynatrace):
    fake_dynatrace.add_token()
    connect(page, fake_dynatrace.environment_url, "dt0c01.NOTAREALTOKEN.NOTAREALSECRET")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("does not recognize the token")
    expect(page.get_by_label("API token")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("API token")).to_have_value("")
    expect(page.get_by_label("Environment URL")).to_have_value(fake_dynatrace.environment_url)
    screenshot(page, "dynatrace-error")

    connect(page, "ftp://nowhere", "dt0c01.X.Y")
    expect(page.get_by_role("alert")).to_contain_text("environmentUrl")
    expect(page.get_by_label("Environment URL")).to_have_attribute("aria-invalid", "true")


def test_webhook_url_is_copied_and_rotating_changes_it(page: Page, signed_in, fake_dynatrace):
    connect(page, fake_dynatrace.environment_url, fake_dynatrace.add_token())
    url = page.locator("#webhook-url")
    expect(url).to_contain_text(f"/dynatrace/webhook/{signed_in.workspace_id}?token=")
    page.get_by_role("button", name="Copy webhook URL").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    first = url.inner_text()
    assert page.evaluate("navigator.clipboard.readText()") == first

    page.get_by_role("button", name="Copy payload").click()
    assert '"PID": "{PID}"' in page.evaluate("navigator.clipboard.readText()")

    page.get_by_text("Rotate the secret…").click()
    page.get_by_role("button", name="Rotate webhook secret").click()
    expect(page.get_by_role("status").first).to_contain_text("old URL stops working")
    expect(url).not_to_have_text(first)


def test_disconnect_asks_first_and_reconnecting_brings_back_the_webhook_url(
    page: Page, signed_in, fake_dynatrace
):
    token = fake_dynatrace.add_token()
    connect(page, fake_dynatrace.environment_url, token)
    webhook_url = page.locator("#webhook-url").inner_text()
    disconnect = page.get_by_role("button", name="Disconnect Dynatrace")
    expect(disconnect).to_be_hidden()
    page.get_by_text("Disconnect…").click()
    disconnect.click()
    expect(page.get_by_role("status").first).to_contain_text("disconnected")
    expect(page.get_by_text("disconnected", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="Connect your environment")).to_be_visible()
    expect(page.locator("#webhook-url")).to_have_count(0)

    connect(page, fake_dynatrace.environment_url, token)
    expect(page.locator("#webhook-url")).to_have_text(webhook_url)


def test_test_notification_is_confirmed_live_with_the_template_report(
    page: Page, signed_in, fake_dynatrace, live_server
):
    connect(page, fake_dynatrace.environment_url, fake_dynatrace.add_token())
    status = page.locator("#test-notification")
    expect(status).to_contain_text("Waiting for the test notification")
    page.evaluate("window.__notReloaded = true")
    webhook_url = page.locator("#webhook-url").inner_text()

    official_test_run = Path(SAMPLES, "webhook-official-docs-testrun-example.json").read_bytes()
    answer = httpx.post(webhook_url, content=official_test_run, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200

    expect(status).to_contain_text("Test notification received")
    expect(status).to_contain_text("ProblemSeverity")
    assert page.evaluate("window.__notReloaded") is True
    screenshot(page, "dynatrace-test-notification")

    filled = filled_template()
    assert httpx.post(webhook_url, content=filled, headers={"Content-Type": "application/json"}).is_success
    expect(status).to_contain_text("Template OK")
    assert page.evaluate("window.__notReloaded") is True
