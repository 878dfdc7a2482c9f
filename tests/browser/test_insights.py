"""The insights page in Chromium: the chart's bars and the tables hold the hand-computed figures."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.support.insights import seed_figures

pytestmark = pytest.mark.browser


def test_the_insights_page_draws_and_tabulates_the_figures(page: Page, signed_in, database):
    seed_figures(database, signed_in.workspace_id)
    page.goto("/")
    page.get_by_role("link", name="Insights").click()
    page.get_by_role("link", name="7 days").click()
    expect(page.locator("#incident-total")).to_have_text("4")
    bars = page.locator("#per-day-chart rect.chart__bar")
    expect(bars).to_have_count(7)
    counts = [int(value) for value in bars.evaluate_all("(rects) => rects.map((r) => r.dataset.count)")]
    assert counts[-4:-1] == [1, 1, 2]
    heights = bars.evaluate_all("(rects) => rects.map((r) => r.getBBox().height)")
    assert heights[-2] == max(heights) > heights[-3] > 0  # the busiest day is drawn tallest
    times = page.locator("#times-table")
    expect(times.get_by_role("row", name="Acknowledge")).to_contain_text("2 min")  # median 120 s
    expect(times.get_by_role("row", name="Acknowledge")).to_contain_text("5 min")  # p90 300 s
    expect(times.get_by_role("row", name="Resolve")).to_contain_text("15 min")  # median 900 s
    expect(page.locator("#causes-table tbody tr").first).to_contain_text("db-host")
    expect(page.locator('#precision-table tr[data-verdict="CONFIRMED"]')).to_contain_text("50 %")
    expect(page.locator('#precision-table tr[data-verdict="all"]')).to_contain_text("33 %")
    screenshot(page, "insights")
    page.get_by_role("link", name="30 days").click()
    expect(page.locator("#incident-total")).to_have_text("5")
    expect(page.locator("#per-day-chart rect.chart__bar")).to_have_count(30)
