"""A browser-like client's forms: the CSRF field every form carries, and logging in through one."""

from __future__ import annotations

import re

import httpx

PASSWORD = "correct horse battery"


def csrf_from(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, "the page has no CSRF field"
    return match.group(1)


def log_in(http: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    token = csrf_from(http.get("/login"))
    return http.post("/login", data={"email": email, "password": password, "csrf_token": token})
