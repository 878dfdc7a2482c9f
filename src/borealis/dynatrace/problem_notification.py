"""One problem notification as Borealis understands it, whichever way it came: a webhook delivery or an
API problem object. ``None`` in a field means "not told"; the parsers (``payload``, ``problem_details``)
fill it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

OPEN = "OPEN"
RESOLVED = "RESOLVED"
MERGED = "MERGED"


SEVERITIES = (
    "AVAILABILITY",
    "ERROR",
    "PERFORMANCE",
    "RESOURCE_CONTENTION",
    "CUSTOM_ALERT",
    "MONITORING_UNAVAILABLE",
    "INFO",
)
IMPACTS = ("APPLICATION", "SERVICE", "SERVICES", "INFRASTRUCTURE", "ENVIRONMENT")
_PRIORITY_BY_SEVERITY = {
    "AVAILABILITY": "critical",
    "ERROR": "high",
    "PERFORMANCE": "medium",
    "RESOURCE_CONTENTION": "medium",
    "CUSTOM_ALERT": "medium",
    "MONITORING_UNAVAILABLE": "low",
    "INFO": "info",
}


_V2_SUFFIX = re.compile(r"^(-?\d+)_\d+V\d+$")


SUGGESTED_TEMPLATE_HINT = (
    "use the payload template from GET /dynatrace/webhook-url in the Dynatrace custom integration"
)


class PayloadRejected(Exception):
    """The body cannot be used at all; the message says what is missing and how to fix it."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # True when the body is not a JSON object at all (400); False when it lacks what we need (422).
        self.malformed = malformed


@dataclass(slots=True)
class ProblemNotification:
    """One delivery, normalized. ``None`` means "not told" (keep what is known); an empty list means
    Dynatrace said "none"."""

    pid: str | None
    display_id: str | None = None
    api_problem_id: str | None = None
    state: str | None = None
    state_raw: str | None = None
    title: str | None = None
    severity: str | None = None
    impact: str | None = None
    problem_url: str | None = None
    impacted_entity: str | None = None
    impacted_entity_names: str | None = None
    impacted_entities: list[dict[str, Any]] | None = None
    tags: list[dict[str, Any]] | None = None
    tags_raw: str | None = None
    management_zones: list[dict[str, Any]] | None = None
    root_cause_entity: dict[str, Any] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    # The newest Dynatrace timestamp in the delivery: how "newer" is judged.
    observed_at: datetime | None = None
    details: dict[str, Any] | None = None
    details_format: str | None = None
    is_test: bool = False
    content_hash: str = ""
    present_fields: frozenset[str] = frozenset()
    unreplaced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def pid_key(self) -> str | None:
        return pid_key(self.pid) if self.pid else None

    @property
    def priority(self) -> str | None:
        return priority_for(self.severity)


def pid_key(pid: str) -> str:
    """The identity of a problem: ``-123_1578561060000V2`` and ``-123`` are the same problem."""
    if "_" not in pid:
        return pid
    match = _V2_SUFFIX.match(pid)
    return match.group(1) if match else pid


def priority_for(severity: str | None) -> str | None:
    """critical/high/medium/low/info from Dynatrace's severity; an unknown severity is medium."""
    if not severity:
        return None
    return _PRIORITY_BY_SEVERITY.get(severity.upper(), "medium")
