"""Wire shapes of the RCA endpoints and of the RCA section of an incident (camelCase)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from borealis.incidents.schemas import Person
from borealis.rca.evidence import EntityRef
from borealis.rca.models import Feedback
from borealis.rca.report import Report
from borealis.schemas import CamelModel


class RcaRunSummary(CamelModel):
    """An earlier (or the current) run, in one line."""

    id: int
    status: str
    trigger: str
    verdict: str | None
    analyzer: str | None
    reason: str | None
    created_at: datetime
    finished_at: datetime | None


class RcaSummary(CamelModel):
    """The RCA section of ``GET /incidents/{id}``: the state and the answer, the rest at ``link``."""

    id: int
    status: str
    trigger: str
    verdict: str | None
    summary: str | None
    root_cause: EntityRef | None
    analyzer: str | None
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None
    link: str


class FeedbackIn(CamelModel):
    """A responder's mark on the standing report; ``causeEntity`` (the true cause, an entity id or
    name) only for ``partly_right`` and ``wrong``."""

    model_config = ConfigDict(extra="forbid")

    mark: Feedback
    cause_entity: str | None = Field(default=None, max_length=500)


class FeedbackRead(CamelModel):
    mark: str
    cause_entity: str | None
    by: Person | None
    at: datetime | None


class RcaRead(CamelModel):
    """``GET /incidents/{id}/rca``: the latest run with its whole report and its Markdown rendering."""

    id: int
    incident_id: int
    status: str
    trigger: str
    reason: str | None
    analyzer: str | None
    verdict: str | None
    report: Report | None
    markdown: str | None
    usage: dict[str, Any] | None
    attempts: int
    requested_at: datetime
    run_after: datetime
    started_at: datetime | None
    finished_at: datetime | None
    history: list[RcaRunSummary]
    # A responder's mark on this report (None: not marked yet).
    feedback: FeedbackRead | None = None
