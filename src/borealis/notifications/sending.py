"""Sending one delivery over HTTPS: the body for the destination's kind, signed for a generic webhook,
and what the receiver answered."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.errors import BorealisError
from borealis.notifications import formats
from borealis.notifications.models import Destination
from borealis.notifications.service import check_url, destination_secret, destination_url

TIMEOUT_SECONDS = 10.0
MAX_RETRY_AFTER = 3600.0


@dataclass(frozen=True, slots=True)
class Sent:
    status_code: int | None
    error: str | None
    # Seconds the receiver asked us to wait (Retry-After), if it did.
    retry_after: float | None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def worth_retrying(self) -> bool:
        """A network failure, a 408, 425, 429 or a 5xx may pass; another 4xx will not."""
        return self.status_code is None or self.status_code in (408, 425, 429) or self.status_code >= 500


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return None


def send(
    destination: Destination, event: dict[str, Any], *, settings: Settings, secret_box: SecretBox
) -> Sent:
    try:
        url = check_url(destination_url(destination, secret_box), settings=settings)  # again: DNS may change
    except BorealisError as exc:
        return Sent(None, exc.message, None)
    body = json.dumps(formats.body_for(destination.kind, event), separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "borealis"}
    secret = destination_secret(destination, secret_box)
    if destination.kind == "webhook" and secret:
        headers[formats.SIGNATURE_HEADER] = formats.signature(secret, int(time.time()), body)
    try:
        response = httpx.post(
            url, content=body, headers=headers, timeout=TIMEOUT_SECONDS, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        return Sent(None, f"{type(exc).__name__}: the receiver could not be reached", None)
    error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
    return Sent(response.status_code, error, _retry_after(response.headers.get("retry-after")))
