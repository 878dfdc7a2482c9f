"""Wire shapes of the /destinations endpoints (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from borealis.schemas import CamelModel


class DestinationCreate(CamelModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(description="slack, teams or webhook")
    name: str = Field(default="", max_length=200)
    url: str = Field(max_length=2048, description="the incoming-webhook URL; encrypted, never shown again")
    events: list[str] = Field(min_length=1, max_length=20)
    filters: dict[str, Any] = Field(default_factory=dict)


class DestinationRead(CamelModel):
    id: str
    kind: str
    name: str
    url_hint: str
    events: list[str]
    filters: dict[str, Any]
    enabled: bool
    created_at: datetime


class DestinationCreated(DestinationRead):
    # A generic webhook's signing secret, shown this once (null for Slack and Teams).
    secret: str | None = None


class DestinationList(CamelModel):
    items: list[DestinationRead]


class DeliveryRead(CamelModel):
    id: int
    event: str
    incident_id: int | None
    status: str
    status_code: int | None
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class DeliveryList(CamelModel):
    items: list[DeliveryRead]
