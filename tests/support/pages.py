"""What a person does on a page, step by step, for the browser tests."""

from __future__ import annotations

from playwright.sync_api import Page


def connect(page: Page, environment_url: str, token: str) -> None:
    page.goto("/dynatrace")
    page.get_by_label("Environment URL").fill(environment_url)
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Connect", exact=True).click()
