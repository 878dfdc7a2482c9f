"""The settings page's sessions and password forms, as a person uses them in Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, log_in, screenshot

pytestmark = pytest.mark.browser


def test_another_browsers_session_is_listed_and_revoked(
    page: Page, signed_in, chromium: Browser, live_server
):
    other = chromium.new_context(base_url=live_server.url, user_agent="Borealis test phone")
    phone = other.new_page()
    try:
        log_in(phone, signed_in.email)
        page.goto("/settings#sessions")
        sessions = page.get_by_role("region", name="Sessions")
        expect(sessions.get_by_role("row")).to_have_count(3)  # the header and two sessions
        expect(sessions.get_by_role("row").filter(has_text="this session")).to_have_count(1)
        screenshot(page, "settings-sessions")

        page.once("dialog", lambda dialog: dialog.accept())
        sessions.get_by_role("row").filter(has_text="Borealis test phone").get_by_role("button").click()
        expect(page.get_by_role("status").first).to_contain_text("is ended")
        expect(sessions.get_by_role("row")).to_have_count(2)

        phone.goto("/settings")
        expect(phone).to_have_url(re.compile(r"/login\?next=/settings$"))
    finally:
        other.close()


def test_the_password_is_changed_from_the_settings_page(page: Page, signed_in):
    page.goto("/settings")
    page.get_by_label("Current password").fill("not the password")
    page.get_by_label("New password", exact=True).fill("a brand new passphrase")
    page.get_by_label("New password again").fill("a brand new passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-error")).to_contain_text("Nothing was changed")

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a brand new passphrase")
    page.get_by_label("New password again").fill("a brand new passphrase")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("status").first).to_contain_text("Your password is changed")
