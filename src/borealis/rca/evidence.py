"""Evidence: what a root-cause report may cite, what could not be checked, and the plan to gather it.

Every item the analyzer or the narrative cites is an ``Evidence`` with a short id (``E1``, ``E2``...), the
query that produced it, its time range, a one-line summary and a deep link back to Dynatrace. Whatever a
missing scope, a 429 or an error kept us from looking at is a ``NotChecked`` entry, never silently dropped.
Pure: no database, no network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import quote

from borealis.dynatrace.errors import RateLimited, ResourceNotFound, ScopeMissing
from borealis.errors import BorealisError
from borealis.rca.anomaly import ONSET_LEAD, RULES, Judgement, judge, resolution_for
from borealis.schemas import CamelModel

ENTITY_ID_PATTERN = re.compile(r"\b[A-Z][A-Z0-9_]*-[0-9A-F]{16}\b")


class EvidenceKind(StrEnum):
    PROBLEM = "problem"  # a Dynatrace problem: title, times, impacted entities, its root cause, impact
    FINDING = "finding"  # one entry of the problem's evidenceDetails (Dynatrace's own root-cause analysis)
    ENTITY = "entity"  # an entity with its relationships (the topology)
    EVENT = "event"  # an event on a suspected entity: deployment, configuration change, restart...
    LOGS = "logs"  # error log records of a suspected entity
    METRIC = "metric"  # a key metric of a suspected entity over the window


class EntityRef(CamelModel):
    id: str
    name: str | None = None
    type: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name and self.name != self.id else self.id


class Evidence(CamelModel):
    id: str
    kind: EvidenceKind
    summary: str
    source: str
    start: datetime | None = None
    end: datetime | None = None
    entity: EntityRef | None = None
    link: str | None = None
    event_type: str | None = None
    root_cause_relevant: bool = False
    problem_id: str | None = None
    data: dict[str, Any] = {}


NotCheckedCode = Literal["missing_scope", "rate_limited", "error", "not_found", "budget"]


class NotChecked(CamelModel):
    """Something the report could not look at, and why (so a reader knows the gap is not a finding)."""

    what: str
    reason: str
    code: NotCheckedCode
    scope: str | None = None
    # The entities this gap leaves unexamined, when known (the analyzer treats them as unknown, not healthy).
    entity_ids: list[str] = []

    @classmethod
    def for_error(cls, what: str, error: BorealisError, entity_ids: Sequence[str] = ()) -> NotChecked:
        """The entry for a call that failed: its code from the error's kind, so the next steps can say
        "grant the scope" or "re-run later", and the error's own message, which says what to fix."""
        code: NotCheckedCode = "error"
        scope: str | None = None
        reason = error.message
        if isinstance(error, ScopeMissing):
            reason, code, scope = f"the token lacks the {error.scope} scope", "missing_scope", error.scope
        elif isinstance(error, RateLimited):
            reason, code = f"Dynatrace kept answering 429 (rate limit): {error.message}", "rate_limited"
        elif isinstance(error, ResourceNotFound):
            reason, code = f"Dynatrace does not know it: {error.message}", "not_found"
        return cls(what=what, reason=reason, code=code, scope=scope, entity_ids=list(entity_ids))


# Event types that mean somebody changed something: the strongest hint when they come just before a start.
CHANGE_EVENT_TYPES = frozenset(
    {
        "CUSTOM_DEPLOYMENT",
        "CUSTOM_CONFIGURATION",
        "CUSTOM_CONFIG",
        "DEPLOYMENT",
        "CONFIGURATION_CHANGE",
        "PROCESS_VERSION_CHANGE",
        "MARKED_FOR_TERMINATION",
    }
)
RESTART_EVENT_TYPES = frozenset({"PROCESS_RESTART", "HOST_REBOOT", "CONTAINER_RESTART", "OSI_HOST_REBOOT"})
# Informational events: they describe, they do not show anything going wrong.
INFO_EVENT_TYPES = frozenset({"CUSTOM_ANNOTATION", "CUSTOM_INFO", "MARKED_FOR_TERMINATION"})
INFRASTRUCTURE_TYPES = frozenset(
    {
        "HOST",
        "HOST_GROUP",
        "DISK",
        "NETWORK_INTERFACE",
        "KUBERNETES_NODE",
        "KUBERNETES_CLUSTER",
        "AWS_AVAILABILITY_ZONE",
        "AZURE_REGION",
        "GEOLOC_SITE",
        "DCRUM_APPLICATION",
        "HYPERVISOR",
        "VIRTUALMACHINE",
        "EC2_INSTANCE",
    }
)
APPLICATION_TYPES = frozenset({"APPLICATION", "MOBILE_APPLICATION", "CUSTOM_APPLICATION", "SYNTHETIC_TEST"})


def entity_type_of(entity_id: str) -> str | None:
    """Dynatrace ids carry their type: ``SERVICE-1A2B...`` is a SERVICE."""
    prefix, sep, _ = entity_id.rpartition("-")
    return prefix if sep and prefix else None


def entity_ref(raw: Any) -> EntityRef | None:
    """An entity from any of Dynatrace's shapes: ``{entityId: {id, type}, name}``, ``{id, type}``,
    ``{entity: id, name, type}`` (webhook), or a bare id."""
    if isinstance(raw, str):
        return EntityRef(id=raw, type=entity_type_of(raw)) if raw else None
    if not isinstance(raw, dict):
        return None
    inner = raw.get("entityId")
    if isinstance(inner, dict):
        entity_id = inner.get("id")
        entity_type = inner.get("type")
    else:
        entity_id = inner if isinstance(inner, str) else raw.get("id") or raw.get("entity")
        entity_type = raw.get("type")
    if not isinstance(entity_id, str) or not entity_id:
        return None
    name = raw.get("name") or raw.get("displayName")
    return EntityRef(
        id=entity_id,
        name=str(name) if name else None,
        type=str(entity_type) if entity_type else entity_type_of(entity_id),
    )


def from_millis(value: Any) -> datetime | None:
    """Dynatrace timestamps: UTC milliseconds (number or numeric string); -1 means 'not yet'."""
    try:
        millis = int(value)
    except (TypeError, ValueError):
        return None
    if millis <= 0:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def quote_data(text: Any, limit: int = 160) -> str:
    """Text from Dynatrace or a payload, shortened and on one line, for use inside a summary."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- deep links -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    """Deep links into the Dynatrace web UI of one environment."""

    environment_url: str

    def _base(self) -> str:
        return self.environment_url.rstrip("/")

    @staticmethod
    def _timeframe(start: datetime | None, end: datetime | None) -> str:
        if start is None:
            return ""
        until = end or start + timedelta(hours=1)
        return f"gtf=c_{to_millis(start)}_{to_millis(until)}"

    def problem(self, problem_id: str) -> str:
        return f"{self._base()}/#problems/problemdetails;pid={quote(problem_id, safe='-_')}"

    def entity(self, entity_id: str, start: datetime | None = None, end: datetime | None = None) -> str:
        timeframe = self._timeframe(start, end)
        return f"{self._base()}/ui/entity/{quote(entity_id)}" + (f"?{timeframe}" if timeframe else "")

    def logs(self, query: str, start: datetime, end: datetime) -> str:
        return f"{self._base()}/ui/log-monitoring?{self._timeframe(start, end)}&query={quote(query, safe='')}"


# --- the investigation window and the gathering plan ------------------------------------------------


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


# --- building evidence from Dynatrace's answers -------------------------------------------------------


class EvidenceBook:
    """Collects evidence with stable short ids, once per underlying fact, and the gaps next to them."""

    def __init__(self, links: Links | None = None) -> None:
        self.links = links
        self.items: list[Evidence] = []
        self.not_checked: list[NotChecked] = []
        self._by_key: dict[str, Evidence] = {}

    def add(self, key: str, **fields: Any) -> Evidence:
        """Record a fact under a natural key (``event:<id>``, ``entity:<id>``); a repeat returns the first."""
        if key in self._by_key:
            return self._by_key[key]
        item = Evidence(id=f"E{len(self.items) + 1}", **fields)
        self.items.append(item)
        self._by_key[key] = item
        return item

    def has(self, key: str) -> bool:
        return key in self._by_key

    def entity_document(self, entity_id: str) -> dict[str, Any] | None:
        """The stored document of an entity (relationships, properties), when it was fetched."""
        item = self._by_key.get(f"entity:{entity_id}")
        return item.data if item is not None else None

    def gap(self, entry: NotChecked) -> NotChecked:
        """Record a gap once, however many steps run into it."""
        if entry not in self.not_checked:
            self.not_checked.append(entry)
        return entry

    # Each builder below takes one Dynatrace object in its API shape.

    def add_problem(self, problem: dict[str, Any], *, source: str, url: str | None = None) -> Evidence:
        """A problem and, as separate items, each entry of its evidenceDetails."""
        pid = str(problem.get("problemId") or problem.get("id") or "?")
        display = problem.get("displayId") or problem.get("displayName") or pid
        title = quote_data(problem.get("title") or "untitled problem")
        root = entity_ref(problem.get("rootCauseEntity"))
        start = from_millis(problem.get("startTime"))
        end = from_millis(problem.get("endTime"))
        impacted = [e for e in map(entity_ref, problem.get("impactedEntities") or []) if e]
        parts = [f"Problem {display} '{title}'"]
        if problem.get("severityLevel"):
            parts.append(f"severity {problem['severityLevel']}")
        if problem.get("impactLevel"):
            parts.append(f"impact {problem['impactLevel']}")
        summary = ", ".join(parts)
        if impacted:
            summary += "; impacted: " + ", ".join(e.label for e in impacted[:5])
        summary += f"; Dynatrace root cause: {root.label}" if root else "; Dynatrace named no root cause"
        kept = {key: value for key, value in problem.items() if key != "evidenceDetails"}
        item = self.add(
            f"problem:{pid}",
            kind=EvidenceKind.PROBLEM,
            summary=summary,
            source=source,
            start=start,
            end=end,
            entity=root,
            link=url or (self.links.problem(pid) if self.links else None),
            problem_id=pid,
            data=kept,
        )
        details = (problem.get("evidenceDetails") or {}).get("details") or []
        for index, detail in enumerate(details):
            if isinstance(detail, dict):
                self.add_finding(detail, pid=pid, index=index, source=source)
        return item

    def add_finding(self, detail: dict[str, Any], *, pid: str, index: int, source: str) -> Evidence:
        entity = entity_ref(detail.get("entity"))
        grouping = entity_ref(detail.get("groupingEntity"))
        evidence_type = str(detail.get("evidenceType") or "EVIDENCE")
        name = quote_data(detail.get("displayName") or evidence_type)
        start = from_millis(detail.get("startTime"))
        relevant = bool(detail.get("rootCauseRelevant"))
        summary = f"Dynatrace {evidence_type.lower()} evidence '{name}'"
        if entity:
            summary += f" on {entity.label}"
        if detail.get("metricId") and detail.get("valueBeforeChangePoint") is not None:
            summary += (
                f": {detail['metricId']} went from {_num(detail.get('valueBeforeChangePoint'))}"
                f" to {_num(detail.get('valueAfterChangePoint'))}"
                + (f" {detail['unit']}" if detail.get("unit") else "")
            )
        summary += "; root-cause relevant" if relevant else "; not root-cause relevant"
        key = detail.get("eventId") or f"{pid}#{index}"
        data = dict(detail)
        if grouping:
            data["groupingEntityRef"] = grouping.model_dump()
        return self.add(
            f"finding:{pid}:{key}",
            kind=EvidenceKind.FINDING,
            summary=summary,
            source=f"{source} (evidenceDetails)",
            start=start,
            end=from_millis(detail.get("endTime")),
            entity=entity,
            link=self.links.entity(entity.id, start) if (self.links and entity) else None,
            event_type=str(detail.get("eventType") or detail.get("metricId") or evidence_type),
            root_cause_relevant=relevant,
            problem_id=pid,
            data=data,
        )

    def add_entity(self, entity: dict[str, Any], *, source: str) -> Evidence:
        ref = entity_ref(entity) or EntityRef(id="?")
        relations = []
        for direction in ("fromRelationships", "toRelationships"):
            for name, targets in (entity.get(direction) or {}).items():
                if isinstance(targets, list) and targets:
                    arrow = "→" if direction == "fromRelationships" else "←"
                    relations.append(f"{name} {arrow} {len(targets)}")
        summary = f"Entity {ref.label}, type {ref.type or '?'}"
        summary += "; relationships: " + ", ".join(relations[:8]) if relations else "; no relationships"
        kept = {
            key: entity.get(key)
            for key in (
                "entityId",
                "displayName",
                "type",
                "properties",
                "fromRelationships",
                "toRelationships",
                "tags",
            )
            if entity.get(key) is not None
        }
        return self.add(
            f"entity:{ref.id}",
            kind=EvidenceKind.ENTITY,
            summary=summary,
            source=source,
            entity=ref,
            link=self.links.entity(ref.id) if self.links else None,
            data=kept,
        )

    def add_event(self, event: dict[str, Any], *, source: str) -> Evidence:
        entity = entity_ref(event.get("entityId"))
        event_type = str(event.get("eventType") or "EVENT")
        title = quote_data(event.get("title") or event_type)
        start = from_millis(event.get("startTime"))
        properties = {
            str(p.get("key")): p.get("value")
            for p in event.get("properties") or []
            if isinstance(p, dict) and p.get("key")
        }
        summary = f"{event_type} '{title}'"
        if entity:
            summary += f" on {entity.label}"
        if start:
            summary += f" at {start:%Y-%m-%d %H:%M:%S} UTC"
        for key in ("dt.event.deployment.version", "dt.event.deployment.name", "dt.event.source"):
            if properties.get(key):
                summary += f"; {key.rsplit('.', 1)[-1]}: {quote_data(properties[key], 60)}"
        relevant = str(properties.get("dt.event.is_rootcause_relevant", "")).lower() == "true"
        kept = {
            key: event.get(key)
            for key in ("eventId", "eventType", "title", "startTime", "endTime", "status", "entityId")
            if event.get(key) is not None
        }
        kept["properties"] = properties
        return self.add(
            f"event:{event.get('eventId') or id(event)}",
            kind=EvidenceKind.EVENT,
            summary=summary,
            source=source,
            start=start,
            end=from_millis(event.get("endTime")),
            entity=entity,
            link=self.links.entity(entity.id, start) if (self.links and entity) else None,
            event_type=event_type,
            root_cause_relevant=relevant,
            data=kept,
        )

    def add_logs(
        self,
        records: Sequence[dict[str, Any]],
        *,
        entity: EntityRef,
        query: str,
        window: Window,
        source: str,
    ) -> Evidence:
        stamps = [t for t in (from_millis(r.get("timestamp")) for r in records) if t]
        messages: dict[str, int] = {}
        for record in records:
            text = quote_data(record.get("content") or "", 120)
            messages[text] = messages.get(text, 0) + 1
        common = sorted(messages.items(), key=lambda item: (-item[1], item[0]))[:3]
        if records:
            summary = f"{len(records)} error log record(s) of {entity.label}"
            if stamps:
                summary += f", first at {min(stamps):%H:%M:%S} UTC"
            summary += "; most frequent: " + " | ".join(f"'{text}' x{count}" for text, count in common)
        else:
            summary = f"No error log records of {entity.label} in the window"
        return self.add(
            f"logs:{entity.id}",
            kind=EvidenceKind.LOGS,
            summary=summary,
            source=source,
            start=min(stamps) if stamps else window.start,
            end=max(stamps) if stamps else window.end,
            entity=entity,
            link=self.links.logs(query, window.start, window.end) if self.links else None,
            data={"count": len(records), "query": query, "topMessages": [t for t, _ in common]},
        )

    def add_metric(
        self,
        *,
        metric_id: str,
        entity: EntityRef,
        timestamps: Sequence[Any],
        values: Sequence[Any],
        window: Window,
        source: str,
        judgement: Judgement | None = None,
    ) -> Evidence:
        """One series of one entity, judged against its baseline, with its points (for the sparkline)."""
        label = metric_label(metric_id)
        rule = RULES.get(metric_id)
        if judgement is None and rule is not None:
            judgement = judge(
                rule, timestamps, values, baseline_end=window.baseline_end, start=window.incident_start
            )
        unit = rule.unit if rule else ""
        if judgement is None:
            summary = f"{label} of {entity.label}: too few data points to compare with a baseline"
        else:
            summary = (
                f"{label} of {entity.label}: baseline {format_value(judgement.baseline, unit)}"
                f" ({judgement.baseline_points} points before the start)"
            )
            if judgement.anomalous:
                onset = from_millis(judgement.onset)
                summary += (
                    f", {format_value(judgement.level, unit)} from {onset:%H:%M} UTC"
                    f" ({describe_change(judgement)}, peak {format_value(judgement.peak, unit)})"
                )
            else:
                summary += f"; stayed within it (now {format_value(judgement.level, unit)})"
        data: dict[str, Any] = {
            "metricId": metric_id,
            "unit": unit,
            "timestamps": list(timestamps)[-MAX_POINTS:],
            "values": list(values)[-MAX_POINTS:],
            "anomalous": bool(judgement and judgement.anomalous),
        }
        if judgement is not None:
            data.update(
                kind=rule.kind.value if rule else None,
                direction=judgement.direction.value if judgement.direction else None,
                baseline=_round(judgement.baseline),
                low=_round(judgement.low),
                high=_round(judgement.high),
                level=_round(judgement.level),
                peak=_round(judgement.peak),
                change=_round(judgement.change),
                score=_round(judgement.score),
                magnitude=_round(judgement.magnitude),
                onset=judgement.onset,
                baselinePoints=judgement.baseline_points,
            )
        anomalous = judgement is not None and judgement.anomalous
        return self.add(
            f"metric:{metric_id}:{entity.id}",
            kind=EvidenceKind.METRIC,
            summary=summary,
            source=source,
            start=from_millis(judgement.onset) if anomalous and judgement else window.start,
            end=window.end,
            entity=entity,
            link=self.links.entity(entity.id, window.start, window.end) if self.links else None,
            event_type=metric_id,
            data=data,
        )

    def add_checked_metrics(
        self,
        *,
        metric_ids: Sequence[str],
        healthy: Sequence[EntityRef],
        without_data: Sequence[EntityRef],
        missing: dict[str, list[str]] | None = None,
        window: Window,
        source: str,
    ) -> Evidence:
        """One item for the entities whose key metrics stayed within their baseline (and those that had
        no data): a checked, healthy dependency is a finding too, but not worth an item each."""
        labels = ", ".join(metric_label(m) for m in metric_ids)
        parts = []
        if healthy:
            names = ", ".join(e.name or e.id for e in healthy[:6]) + (" …" if len(healthy) > 6 else "")
            parts.append(f"{len(healthy)} entities stayed within their baseline ({names})")
        if without_data:
            names = ", ".join(e.name or e.id for e in without_data[:6]) + (
                " …" if len(without_data) > 6 else ""
            )
            parts.append(f"{len(without_data)} had no data ({names})")
        ids = sorted(e.id for e in [*healthy, *without_data])
        return self.add(
            f"checked:{','.join(metric_ids)}:{ids[0] if ids else ''}:{len(ids)}",
            kind=EvidenceKind.METRIC,
            summary=f"{labels}: " + "; ".join(parts),
            source=source,
            start=window.baseline_start,
            end=window.end,
            data={
                "metricIds": list(metric_ids),
                "healthy": [e.id for e in healthy],
                "noData": [e.id for e in without_data],
                # Series that had no data for an entity judged on its other series.
                "missing": missing or {},
            },
        )


# Points kept per series: the baseline and the window at the query's resolution.
MAX_POINTS = 300


def describe_change(judgement: Judgement) -> str:
    if judgement.change == float("inf"):
        return "up from nothing"
    if judgement.change <= -0.999:
        return "down to nothing"
    if judgement.change < 0:
        return f"down {-judgement.change:.0%}"
    if judgement.change >= 1:
        return f"{1 + judgement.change:.1f}x"
    return f"up {judgement.change:.0%}"


def format_value(value: float, unit: str) -> str:
    """A metric value as a person reads it: microseconds as ms or s, bytes as MiB, percent as %."""
    if unit == "µs":
        if abs(value) >= 1_000_000:
            return f"{value / 1_000_000:.2g} s" if abs(value) < 10_000_000 else f"{value / 1_000_000:.0f} s"
        return f"{_num(round(value / 1000, 1 if abs(value) < 10_000 else 0))} ms"
    if unit == "B":
        return f"{value / (1024 * 1024):.0f} MiB"
    if unit == "%":
        return f"{_num(round(value, 2))} %"
    if unit == "/min":
        return f"{_num(round(value, 1))}/min"
    return _num(round(value, 3))


def _round(value: float) -> float | None:
    return round(value, 4) if value == value and abs(value) != float("inf") else None


def _num(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if abs(number) >= 1_000_000:
        return f"{number / 1_000_000:.1f}M"
    if abs(number) >= 10_000:
        return f"{number / 1000:.1f}k"
    return f"{number:.3g}" if number != int(number) else str(int(number))
