"""The investigation window and the gathering plan: which queries an RCA makes, over which time range,
and the key metrics and log attributes of each entity type. Pure: no database, no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from borealis.rca.anomaly import ONSET_LEAD, RULES, resolution_for
from borealis.rca.evidence import EntityRef, entity_ref, entity_type_of, from_millis


@dataclass(frozen=True)
class ProblemFacts:
    """What Borealis already knows about one problem of the incident (from its stored record)."""

    pid: str
    title: str
    display_id: str | None = None
    state: str | None = None
    severity: str | None = None
    impact: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    impacted: tuple[EntityRef, ...] = ()
    root_cause: EntityRef | None = None
    url: str | None = None
    # The latest v2 problem details we hold (webhook {ProblemDetailsJSONv2} or an earlier API fetch).
    details: dict[str, Any] | None = None

    @classmethod
    def from_problem(cls, problem: dict[str, Any], *, url: str | None = None) -> ProblemFacts:
        """The facts of a problem in the v2 API shape (``GET /api/v2/problems/{id}``), kept as details."""
        impacted = tuple(ref for ref in map(entity_ref, problem.get("impactedEntities") or []) if ref)
        return cls(
            pid=str(problem["problemId"]),
            title=str(problem.get("title") or ""),
            display_id=problem.get("displayId"),
            state=problem.get("status"),
            severity=problem.get("severityLevel"),
            impact=problem.get("impactLevel"),
            start=from_millis(problem.get("startTime")),
            end=from_millis(problem.get("endTime")),
            impacted=impacted,
            root_cause=entity_ref(problem.get("rootCauseEntity")),
            url=url,
            details=problem,
        )


@dataclass(frozen=True)
class Window:
    """The time range the investigation looks at: a little before the first start (changes that led up to
    it) until the last end (or now), and the baseline before it that metrics are judged against."""

    start: datetime
    end: datetime
    incident_start: datetime
    baseline: timedelta = timedelta(hours=2)

    @classmethod
    def around(
        cls,
        problems: Sequence[ProblemFacts],
        *,
        now: datetime,
        lookback: timedelta = timedelta(minutes=30),
        baseline: timedelta = timedelta(hours=2),
        max_span: timedelta = timedelta(hours=24),
    ) -> Window:
        starts = [p.start for p in problems if p.start is not None]
        first = min(starts) if starts else now - timedelta(hours=1)
        ends = [p.end for p in problems if p.end is not None]
        still_open = any(p.end is None for p in problems) or not ends
        last = now if still_open else max(ends) + timedelta(minutes=5)
        last = min(max(last, first + timedelta(minutes=10)), first + max_span, max(now, first))
        return cls(start=first - lookback, end=max(last, first), incident_start=first, baseline=baseline)

    @property
    def span(self) -> timedelta:
        return self.end - self.start

    @property
    def baseline_start(self) -> datetime:
        return self.incident_start - self.baseline

    @property
    def baseline_end(self) -> datetime:
        """Where normal ends: a little before the start, since the cause goes wrong before Dynatrace
        opens the problem on the symptom."""
        return self.incident_start - ONSET_LEAD

    def metric_resolution(self, points: int = 240) -> str:
        """A resolution that gives at most about ``points`` points over the baseline and the window."""
        return resolution_for(self.end - self.baseline_start, points)


class Action(StrEnum):
    PROBLEM = "problem"
    ENTITY = "entity"
    EVENTS = "events"
    LOGS = "logs"
    METRICS = "metrics"


SCOPE_OF: dict[Action, str] = {
    Action.PROBLEM: "problems.read",
    Action.ENTITY: "entities.read",
    Action.EVENTS: "events.read",
    Action.LOGS: "logs.read",
    Action.METRICS: "metrics.read",
}


@dataclass(frozen=True)
class Step:
    """One query of the plan; ``targets`` are problem ids (PROBLEM) or entity ids of one type."""

    action: Action
    targets: tuple[str, ...]
    start: datetime | None = None
    end: datetime | None = None

    @property
    def scope(self) -> str:
        return SCOPE_OF[self.action]

    def describe(self) -> str:
        names = ", ".join(self.targets[:3]) + (
            f" and {len(self.targets) - 3} more" if len(self.targets) > 3 else ""
        )
        return {
            Action.PROBLEM: f"problem details of {names}",
            Action.ENTITY: f"entity and relationships of {names}",
            Action.EVENTS: f"events on {names}",
            Action.LOGS: f"error logs of {names}",
            Action.METRICS: f"key metrics of {names}",
        }[self.action]


def problem_steps(problems: Sequence[ProblemFacts]) -> list[Step]:
    """First round: the details of every problem of the incident."""
    return [Step(Action.PROBLEM, (p.pid,)) for p in problems]


# Key metrics per entity type: the few an on-call engineer opens first, judged by the rules in ``anomaly``.
KEY_METRICS: dict[str, tuple[str, ...]] = {
    "SERVICE": (
        "builtin:service.response.time",
        "builtin:service.errors.total.rate",
        "builtin:service.requestCount.total",
    ),
    "HOST": ("builtin:host.cpu.usage", "builtin:host.mem.usage"),
    "PROCESS_GROUP_INSTANCE": ("builtin:tech.generic.cpu.usage", "builtin:tech.generic.mem.workingSetSize"),
}


def entity_metrics(entity_id: str) -> tuple[str, ...]:
    return KEY_METRICS.get(entity_type_of(entity_id) or "", ())


def metric_label(metric_id: str) -> str:
    rule = RULES.get(metric_id)
    return rule.label if rule else metric_id


# Log records carry the entity they came from in these attributes.
LOG_ATTRIBUTES = {
    "HOST": "dt.entity.host",
    "SERVICE": "dt.entity.service",
    "PROCESS_GROUP": "dt.entity.process_group",
    "PROCESS_GROUP_INSTANCE": "dt.entity.process_group_instance",
    "KUBERNETES_CLUSTER": "dt.entity.kubernetes_cluster",
    "CLOUD_APPLICATION": "dt.entity.cloud_application",
}


def log_attribute(entity_id: str) -> str | None:
    return LOG_ATTRIBUTES.get(entity_type_of(entity_id) or "")


def error_log_query(entity_id: str) -> str:
    attribute = log_attribute(entity_id)
    return f'status="ERROR" AND {attribute}="{entity_id}"'


def entity_selector(entity_ids: Sequence[str]) -> str:
    return "entityId(" + ",".join(f'"{entity_id}"' for entity_id in entity_ids) + ")"
