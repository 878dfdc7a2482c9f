"""Waiting for what another thread or process does, without asserting how fast it happens."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    """Poll until ``condition`` is truthy; the deadline only guards against hanging, it asserts no speed."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.05)
