"""Chromium driven by Playwright against the live server; every test gets a fresh browser context."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PASSWORD = "correct horse battery"
# A zone with a 45-minute offset: no UTC time can pass for local time by accident.
VIEWER_TIMEZONE = "Asia/Kathmandu"
# Generous: live regions poll every few seconds and CI machines are slow. A bound, not a measurement.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def browser_context(chromium: Browser, base_url: str, **options) -> BrowserContext:
    """A fresh context on ``base_url``, as every browser test sees the application."""
    context = chromium.new_context(
        base_url=base_url,
        locale="en-GB",
        timezone_id=VIEWER_TIMEZONE,
        **options,
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    context.set_default_timeout(30_000)
    return context


@pytest.fixture
def page(chromium: Browser, live_server, database) -> Iterator[Page]:
    """A laptop-sized tab on the live server."""
    context = browser_context(chromium, live_server.url, viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def phone(chromium: Browser, live_server, database) -> Iterator[Page]:
    """A phone-sized tab on the live server."""
    context = browser_context(
        chromium, live_server.url, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    tab = context.new_page()
    yield tab
    context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page under artifacts/ for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login).*$"))


@pytest.fixture
def signed_in(page: Page, make_account):
    """A user with a password, logged in on ``page``."""
    account = make_account("sre@example.com", password=PASSWORD)
    log_in(page, account.email)
    return account
