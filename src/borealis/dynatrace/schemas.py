"""Wire shapes of the /dynatrace endpoints (seed field names, camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, SecretStr, StrictBool

from borealis.schemas import CamelModel
from borealis.sync.models import SyncStateRead


class RcaSettings(CamelModel):
    rca_enabled: StrictBool


class ConnectIn(CamelModel):
    environment_url: str = Field(
        max_length=2048,
        description="SaaS https://{env-id}.live.dynatrace.com, Managed https://{domain}/e/{env-id}, "
        "or a Gov/custom domain",
        examples=["https://abc12345.live.dynatrace.com"],
    )
    api_token: SecretStr = Field(
        description="A Dynatrace API token (dt0c01.…); stored encrypted, never shown"
    )


class MissingScopeRead(CamelModel):
    scope: str
    enables: str


class ConnectRead(CamelModel):
    success: bool
    environment_url: str
    version: str | None
    scopes: list[str]
    missing_scopes: list[MissingScopeRead]
    token_expires_at: datetime | None
    warnings: list[str]
    connected_at: datetime | None


class StatusRead(CamelModel):
    connected: bool
    environment_url: str | None = None
    version: str | None = None
    scopes: list[str] = Field(default_factory=list)
    missing_scopes: list[MissingScopeRead] = Field(default_factory=list)
    token_expires_at: datetime | None = None
    warnings: list[str] = Field(default_factory=list)
    connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    last_webhook_at: datetime | None = None
    last_test_notification_at: datetime | None = None
    # What the last "Send test notification" told us about the payload template.
    last_test_notification: dict[str, Any] | None = None
    # Dynatrace has reached the webhook at least once (a problem or a test notification).
    webhook_configured: bool = False
    # Reconciliation with the API (last run, its result, next run) and the user's jobs per state.
    sync: SyncStateRead | None = None
    jobs: dict[str, int] = Field(default_factory=dict)


class VerifiedStatusRead(StatusRead):
    """``?verify=true``: ``tokenValid`` is null when Dynatrace could not be asked (see ``tokenError``)."""

    token_valid: bool | None = None
    token_error: str | None = None


class DisconnectRead(CamelModel):
    success: bool
    connected: bool


class WebhookUrlRead(CamelModel):
    webhook_url: str
    suggested_payload: str
    instructions: list[str]
    # The alternative to ?token=: the URL without it plus this header (Dynatrace sends extra headers).
    headers: dict[str, str]
