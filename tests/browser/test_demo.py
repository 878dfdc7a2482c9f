"""``borealis demo`` in Chromium: log in with the printed account and read an RCA report, within a minute."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import browser_context, log_in, screenshot
from tests.support.demo import running_demo

pytestmark = pytest.mark.browser


def test_a_newcomer_sees_incidents_with_rca_reports_within_a_minute(chromium: Browser, tmp_path):
    started = time.monotonic()
    with running_demo(tmp_path) as demo:
        context = browser_context(chromium, demo.url, viewport={"width": 1280, "height": 860})
        page = context.new_page()
        try:
            log_in(page, demo.email, demo.password)
            page.goto("/incidents")
            expect(page.locator("#incidents-count")).to_contain_text("of 3 incidents")
            page.get_by_role("link", name=re.compile("Failure rate increase")).first.click()
            rca = page.locator("#rca")
            expect(rca.locator(".verdict")).to_contain_text(re.compile("LIKELY|CONFIRMED"))
            expect(rca.get_by_role("heading", name="Root cause")).to_be_visible()
            assert time.monotonic() - started < 60
            screenshot(page, "demo-incident")
        finally:
            context.close()
