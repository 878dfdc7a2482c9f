"""Responses that join concepts: each domain's schemas stand alone, these add what another layer knows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from borealis.dynatrace.schemas import InstalledNotificationRead, MissingScopeRead, WriteBackRead
from borealis.incidents.schemas import IncidentProblemRead, IncidentSummary, TimelineEvent
from borealis.rca.schemas import RcaSummary
from borealis.schemas import CamelModel
from borealis.sync.models import SyncStateRead


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
    # Borealis installed the problem notification itself (POST /dynatrace/webhook/install).
    webhook_installed: bool = False
    webhook_install: InstalledNotificationRead | None = None
    # Reconciliation with the API (last run, its result, next run) and the user's jobs per state.
    sync: SyncStateRead | None = None
    jobs: dict[str, int] = Field(default_factory=dict)
    # Whether RCAs are written back onto the Dynatrace problems, and why (not).
    write_back: WriteBackRead | None = None


class VerifiedStatusRead(StatusRead):
    """``?verify=true``: ``tokenValid`` is null when Dynatrace could not be asked (see ``tokenError``)."""

    token_valid: bool | None = None
    token_error: str | None = None


class IncidentDetail(IncidentSummary):
    problems: list[IncidentProblemRead]
    timeline: list[TimelineEvent]
    # The latest root-cause analysis in short (the whole report: GET /incidents/{id}/rca).
    rca: RcaSummary | None = None
