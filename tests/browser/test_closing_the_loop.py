"""On the incident page, in Chromium: marking the RCA, downloading the postmortem, and closing the
problems in Dynatrace on request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from borealis.dynatrace.service import CLOSE_JOB
from borealis.jobs.registry import register_handlers
from tests.support.builders import webhook_body
from tests.support.jobs import run_pending
from tests.support.pages import connect
from tests.support.rca_scenarios import deployment_breaks_service

pytestmark = pytest.mark.browser


def test_mark_the_rca_download_the_postmortem_and_close_the_problems(
    page: Page, signed_in, fake_dynatrace, app, tmp_path: Path
):
    register_handlers()
    connect(page, fake_dynatrace.environment_url, fake_dynatrace.add_token())
    webhook_url = page.locator("#webhook-url").inner_text()
    scenario = deployment_breaks_service()
    scenario.load_into(fake_dynatrace)
    for problem in scenario.problems:
        assert httpx.post(webhook_url, json=webhook_body(problem)).status_code == 200
    page.goto("/incidents")
    page.locator("#incidents-live").get_by_role("link").first.click()
    page.get_by_role("button", name="Run root-cause analysis").click()
    run_pending(app)
    rca = page.locator("#rca")
    expect(rca).to_contain_text("Verdict:")

    page.reload()
    page.get_by_label("Wrong").check()
    page.get_by_label("The true cause, if it was not this one").fill("SERVICE-PAYMENTS")
    page.get_by_role("button", name="Save the mark").click()
    expect(page.locator("#rca-feedback")).to_contain_text("Marked wrong by sre@example.com")
    expect(page.locator("#rca-feedback")).to_contain_text("SERVICE-PAYMENTS")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download postmortem").click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    text = saved.read_text()
    assert text.startswith("# Postmortem:")
    assert "RCA marked wrong; the true cause: SERVICE-PAYMENTS" in text
    assert text.rstrip().endswith("- [ ]")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Close problems in Dynatrace").click()
    expect(page.get_by_role("status").first).to_contain_text("Closing its problems in Dynatrace")
    [outcome] = run_pending(app, kind=CLOSE_JOB)
    assert outcome["closed"] == len(scenario.problems)
    expect(page.locator("#timeline")).to_contain_text("closed in Dynatrace")
