"""Wire shapes of the alerts API (the seed's field names, camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from borealis.schemas import CamelModel


class EntityRead(CamelModel):
    entity_id: str | None = None
    name: str | None = None
    type: str | None = None


class TagRead(CamelModel):
    context: str | None = None
    key: str
    value: str | None = None


class ManagementZoneRead(CamelModel):
    id: str | None = None
    name: str | None = None


class AlertRead(CamelModel):
    """One problem as the alerts list shows it."""

    id: int
    problem_id: str | None
    pid: str
    title: str | None
    state: str
    severity: str | None
    impact: str | None
    priority: str
    impacted_entity: str | None
    impacted_entities: list[EntityRead]
    root_cause_entity: EntityRead | None
    problem_url: str | None
    tags: list[TagRead]
    start_time: datetime | None
    end_time: datetime | None
    first_received_at: datetime
    last_received_at: datetime
    notification_count: int
    # The incident this problem belongs to.
    incident_id: int | None = None
    # The latest body Dynatrace sent, only with include=payload.
    payload: Any | None = None


class AlertList(CamelModel):
    alerts: list[AlertRead]
    total: int
    limit: int
    offset: int
    # Keyset pagination: pass as ``cursor`` for the next page (cheap at any depth, unlike offset).
    next_cursor: str | None = None


class NotificationRead(CamelModel):
    id: int
    source: str
    outcome: str
    state: str | None
    state_raw: str | None
    problem_id: str | None
    title: str | None
    observed_at: datetime | None
    received_at: datetime
    last_received_at: datetime
    delivery_count: int
    warnings: list[str]
    payload: Any | None = None


class AlertDetail(AlertRead):
    """One problem with everything kept about it and its notification history."""

    api_problem_id: str | None
    management_zones: list[ManagementZoneRead]
    duplicate_count: int
    details: dict[str, Any] | None
    details_format: str | None
    notifications: list[NotificationRead]


class RejectedDeliveryRead(CamelModel):
    id: int
    received_at: datetime
    reason: str
    content_type: str | None
    raw_body: str


class RejectedDeliveryList(CamelModel):
    deliveries: list[RejectedDeliveryRead]


class WebhookAnswer(CamelModel):
    """What ``POST /dynatrace/webhook/{workspace_id}`` answers a delivery, once it is committed."""

    received: bool
    outcome: Literal["created", "updated", "duplicate", "stale", "test"]
    problem_id: str | None = None
    pid: str | None = None
    state: str | None = None
    alert_id: int | None = None
