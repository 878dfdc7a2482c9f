"""Wire shapes of the /dynatrace endpoints (seed field names, camelCase)."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field, SecretStr, StrictBool

from borealis.schemas import CamelModel


class RcaSettings(CamelModel):
    rca_enabled: StrictBool


class WriteBackIn(CamelModel):
    model_config = ConfigDict(extra="forbid")

    enabled: StrictBool


class WriteBackRead(CamelModel):
    """Whether each RCA is written onto the incident's Dynatrace problems as a comment."""

    # The workspace's switch (on by default).
    enabled: bool
    # Switched on, connected, and the token has problems.write: RCAs are written back now.
    active: bool
    # Why it is (not) active, and what to change.
    reason: str


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


class AlertingProfileRead(CamelModel):
    id: str = Field(description="The profile's settings objectId (what alertingProfile takes)")
    name: str
    default: bool = Field(default=False, description="Used when an install names no profile")


class AlertingProfilesRead(CamelModel):
    alerting_profiles: list[AlertingProfileRead]


class WebhookInstallIn(CamelModel):
    alerting_profile: str | None = Field(
        default=None,
        max_length=500,
        description="An alerting profile's objectId (GET /dynatrace/alerting-profiles); the profile named "
        "Default, else the first, when left out",
    )


class WebhookInstallRead(CamelModel):
    installed: bool
    action: str = Field(description="created or updated")
    object_id: str
    display_name: str
    # Where Dynatrace sends problems; the secret is not in it but in the secret header below.
    webhook_url: str
    secret_header: str
    alerting_profile: AlertingProfileRead
    alerting_profile_choice: str = Field(
        description="requested, default, or first (no profile named Default)"
    )
    removed_duplicates: list[str] = Field(default_factory=list)
    message: str
    warnings: list[str] = Field(default_factory=list)


class InstalledNotificationRead(CamelModel):
    object_id: str
    display_name: str
    alerting_profile: AlertingProfileRead | None
    installed_at: datetime | None


class WebhookRemovalRead(CamelModel):
    removed: bool
    object_id: str
    message: str


class ConnectRead(CamelModel):
    success: bool
    environment_url: str
    version: str | None
    scopes: list[str]
    missing_scopes: list[MissingScopeRead]
    token_expires_at: datetime | None
    warnings: list[str]
    connected_at: datetime | None


class DisconnectRead(CamelModel):
    success: bool
    connected: bool
    # What happened to the problem notification Borealis had installed (absent when there was none).
    webhook_removal: WebhookRemovalRead | None = None


class WebhookUrlRead(CamelModel):
    webhook_url: str
    suggested_payload: str
    instructions: list[str]
    # The alternative to ?token=: the URL without it plus this header (Dynatrace sends extra headers).
    headers: dict[str, str]
    # After a rotation: whether the notification Borealis installed now sends the new secret.
    installed_notification: str | None = None
