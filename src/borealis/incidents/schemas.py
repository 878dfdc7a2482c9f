"""Wire shapes of the /incidents endpoints (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, StrictBool

from borealis.incidents.correlation import (
    DEFAULT_MAX_HOPS,
    DEFAULT_THRESHOLD,
    DEFAULT_WINDOW_MINUTES,
    CorrelationSettings,
)
from borealis.schemas import ID_PATTERN, MAX_BIGINT, CamelModel


class AffectedEntity(CamelModel):
    entity_id: str
    name: str | None = None
    type: str | None = None


class Person(CamelModel):
    user_id: str
    username: str


class IncidentSummary(CamelModel):
    id: int
    title: str
    status: str
    priority: str
    started_at: datetime
    resolved_at: datetime | None
    problem_count: int
    open_problem_count: int
    affected_entities: list[AffectedEntity]
    merged_into_id: int | None
    created_at: datetime
    updated_at: datetime
    # The on-call workflow: the first acknowledgement, who has it, and how long each took.
    acknowledged_at: datetime | None = None
    acknowledged_by: Person | None = None
    assignee: Person | None = None
    time_to_acknowledge_seconds: float | None = None
    time_to_resolve_seconds: float | None = None


class IncidentList(CamelModel):
    incidents: list[IncidentSummary]
    total: int
    limit: int
    offset: int


class IncidentProblemRead(CamelModel):
    """A problem of the incident, with why it is in this incident."""

    alert_id: int
    display_id: str | None
    pid: str
    title: str | None
    state: str
    severity: str | None
    priority: str
    problem_url: str | None
    root_cause_entity_id: str | None
    start_time: datetime | None
    end_time: datetime | None
    strategy: str
    score: float | None
    reason: str
    related_alert_id: int | None
    attached_at: datetime


class TimelineEvent(CamelModel):
    id: int
    at: datetime
    kind: str
    actor: str
    # The member of a manual action (None for the system's, or once the account is gone).
    by: Person | None = None
    alert_id: int | None
    message: str
    details: dict[str, Any]


class MergeRequest(CamelModel):
    model_config = ConfigDict(extra="forbid")

    source_incident_id: int = Field(ge=1, le=MAX_BIGINT)


class MoveRequest(CamelModel):
    """``targetIncidentId: null`` (or left out) moves the problem to a new incident."""

    model_config = ConfigDict(extra="forbid")

    target_incident_id: int | None = Field(default=None, ge=1, le=MAX_BIGINT)


class Signals(CamelModel):
    """Which signals count towards the score."""

    model_config = ConfigDict(extra="forbid")

    root_cause: StrictBool = True
    entities: StrictBool = True
    topology: StrictBool = True
    tags: StrictBool = True
    management_zones: StrictBool = True
    title: StrictBool = True
    time: StrictBool = True


class CorrelationSettingsRead(CamelModel):
    window_minutes: int
    threshold: float
    max_hops: int
    signals: Signals

    @classmethod
    def of(cls, settings: CorrelationSettings) -> CorrelationSettingsRead:
        return cls(
            window_minutes=settings.window_minutes,
            threshold=settings.threshold,
            max_hops=settings.max_hops,
            signals=Signals(**{name: settings.enabled(name) for name in Signals.model_fields}),
        )


class SignalsUpdate(CamelModel):
    model_config = ConfigDict(extra="forbid")

    root_cause: StrictBool | None = None
    entities: StrictBool | None = None
    topology: StrictBool | None = None
    tags: StrictBool | None = None
    management_zones: StrictBool | None = None
    title: StrictBool | None = None
    time: StrictBool | None = None


class CorrelationSettingsUpdate(CamelModel):
    """Any subset of the settings; what is left out keeps its current value."""

    model_config = ConfigDict(extra="forbid")

    window_minutes: int | None = Field(
        default=None, ge=1, le=7 * 24 * 60, description=f"default {DEFAULT_WINDOW_MINUTES}"
    )
    threshold: float | None = Field(default=None, gt=0, le=1, description=f"default {DEFAULT_THRESHOLD}")
    max_hops: int | None = Field(default=None, ge=0, le=5, description=f"default {DEFAULT_MAX_HOPS}")
    signals: SignalsUpdate | None = None


class AssignRequest(CamelModel):
    """``userId: null`` takes the incident off whoever has it."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(pattern=ID_PATTERN)


class AcknowledgementRead(CamelModel):
    incident_id: int
    acknowledged_at: datetime
    acknowledged_by: Person | None
    # False when it was acknowledged already: nothing changed, and ``acknowledgedBy`` was first.
    first: bool


class NoteWrite(CamelModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="Markdown, up to 10,000 characters")


class NoteRevisionRead(CamelModel):
    text: str
    written_at: datetime
    replaced_at: datetime


class NoteRead(CamelModel):
    id: int
    incident_id: int
    author: Person | None
    text: str
    # The text rendered from Markdown, safe to put in a page (raw HTML in the text is shown as text).
    html: str
    created_at: datetime
    updated_at: datetime
    # Earlier texts of an edited note, oldest first.
    history: list[NoteRevisionRead]


class NoteList(CamelModel):
    notes: list[NoteRead]
