"""The postmortem as JSON (camelCase); ``render.py`` writes the same content as Markdown."""

from __future__ import annotations

from datetime import datetime

from borealis.incidents.schemas import AffectedEntity, Person
from borealis.rca.evidence import EntityRef
from borealis.schemas import CamelModel


class PostmortemEvent(CamelModel):
    at: datetime
    kind: str
    message: str
    by: Person | None = None
    # A note's text, for the notes on the timeline.
    text: str | None = None


class PostmortemProblem(CamelModel):
    alert_id: int
    display_id: str | None
    title: str | None
    severity: str | None
    state: str
    start_time: datetime | None
    end_time: datetime | None
    problem_url: str | None


class PostmortemEvidence(CamelModel):
    id: str
    summary: str
    link: str | None


class PostmortemCause(CamelModel):
    verdict: str | None
    entity: EntityRef | None
    explanation: str | None
    evidence: list[PostmortemEvidence]
    # The incident's RCA in Borealis.
    link: str


class PostmortemImpact(CamelModel):
    affected_entities: list[AffectedEntity]
    problems: list[PostmortemProblem]
    # Dynatrace's largest estimate of affected users, when the RCA found one.
    users: int | None


class PostmortemFigures(CamelModel):
    time_to_acknowledge_seconds: float | None
    time_to_resolve_seconds: float | None
    # From the start to the resolution, or to now while open.
    duration_seconds: float
    open: bool


class Postmortem(CamelModel):
    incident_id: int
    title: str
    status: str
    priority: str
    started_at: datetime
    resolved_at: datetime | None
    summary: str
    timeline: list[PostmortemEvent]
    impact: PostmortemImpact
    root_cause: PostmortemCause | None
    figures: PostmortemFigures
    acknowledged_by: Person | None
    assignee: Person | None
    # Left for the team to fill in.
    action_items: list[str]
