"""First run, login, settings and logout, as a person does them in Chromium."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, VIEWER_TIMEZONE, log_in, screenshot

pytestmark = pytest.mark.browser


def test_first_run_creates_the_admin_then_login_and_logout(page: Page):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/setup$"))
    expect(page.get_by_role("heading", name="Set up Borealis")).to_be_visible()
    screenshot(page, "setup")

    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Create administrator").click()
    expect(page.get_by_role("status").first).to_contain_text("signed in as admin@example.com")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("status").first).to_contain_text("logged out")
    screenshot(page, "login")

    page.goto("/setup")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.get_by_label("Email").fill("admin@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match an account")

    log_in(page, "admin@example.com")
    expect(page.get_by_text("admin@example.com")).to_be_visible()


def test_a_deep_link_survives_the_login(page: Page, make_account):
    make_account("sre@example.com", password=PASSWORD)
    page.goto("/settings")
    expect(page).to_have_url(re.compile(r"/login\?next=/settings$"))
    page.get_by_label("Email").fill("sre@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/settings$"))


def test_rca_toggle_is_a_labelled_checkbox_that_persists(page: Page, signed_in):
    page.goto("/settings")
    toggle = page.get_by_label("Analyse the root cause of every new incident automatically")
    expect(toggle).not_to_be_checked()
    toggle.check()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("analysis is on")
    page.reload()
    expect(toggle).to_be_checked()
    expect(page.locator("#rca-state")).to_have_text("on")
    toggle.uncheck()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#rca-state")).to_have_text("off")


def test_api_key_is_shown_once_copied_and_revoked(page: Page, signed_in):
    page.goto("/settings")
    page.get_by_label("Key name").fill("ci-pipeline")
    page.get_by_role("button", name="Create API key").click()
    key = page.locator("#new-api-key")
    expect(key).to_have_text(re.compile(r"^brl_"))
    page.get_by_role("button", name="Copy key").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == key.inner_text()
    screenshot(page, "settings")

    page.goto("/settings")
    expect(page.locator("#new-api-key")).to_have_count(0)
    row = page.get_by_role("row").filter(has_text="ci-pipeline")
    expect(row.get_by_text("active")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke ci-pipeline").click()
    expect(page.get_by_role("status").first).to_contain_text("is revoked")
    expect(page.get_by_role("row").filter(has_text="ci-pipeline").get_by_text("revoked")).to_be_visible()


def test_dates_show_in_the_viewers_time_zone(page: Page, signed_in):
    page.goto("/settings")
    created = page.get_by_role("row").filter(has_text="default").locator("time").first
    stamp = datetime.fromisoformat(created.get_attribute("datetime").replace("Z", "+00:00"))
    local = stamp.astimezone(ZoneInfo(VIEWER_TIMEZONE))
    expect(created).to_contain_text(local.strftime("%H:%M"))
    expect(created).not_to_contain_text("UTC")


def test_keyboard_users_can_skip_to_the_content(page: Page, signed_in):
    page.goto("/settings")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))


def test_settings_fit_a_phone_screen(phone: Page, make_account):
    make_account("sre@example.com", password=PASSWORD)
    log_in(phone, "sre@example.com")
    phone.goto("/settings")
    overflow = phone.evaluate("document.documentElement.scrollWidth") - phone.viewport_size["width"]
    assert overflow <= 0
    screenshot(phone, "settings-phone")


def test_grouping_settings_are_saved_and_a_bad_value_is_explained(page: Page, signed_in):
    page.goto("/settings")
    expect(page.get_by_label("Time window (minutes)")).to_have_value("60")
    page.get_by_label("Time window (minutes)").fill("15")
    page.get_by_label("Similar titles").uncheck()
    page.get_by_role("button", name="Save grouping settings").click()
    expect(page.get_by_role("status").first).to_contain_text("Correlation settings saved")
    expect(page.get_by_label("Time window (minutes)")).to_have_value("15")
    expect(page.get_by_label("Similar titles")).not_to_be_checked()
    expect(page.get_by_label("Shared tags")).to_be_checked()
    assert signed_in.client.get("/incidents/correlation-settings").json()["windowMinutes"] == 15

    # The browser's own checks are bypassed to reach the server's.
    page.get_by_label("Score threshold").evaluate(
        "input => { input.form.noValidate = true; input.value = '7'; }"
    )
    page.get_by_role("button", name="Save grouping settings").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.get_by_label("Score threshold")).to_have_attribute("aria-invalid", "true")
    assert signed_in.client.get("/incidents/correlation-settings").json()["threshold"] != 7


def test_settings_say_how_reports_are_written(page: Page, signed_in):
    page.goto("/settings")
    expect(page.locator("#llm-status")).to_contain_text("No LLM is configured")
