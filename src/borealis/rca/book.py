"""The evidence book: Dynatrace's answers turned into ``Evidence`` items with stable short ids and deep
links, and the gaps next to them. Pure: no database, no network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from borealis.rca.anomaly import RULES, Judgement, judge
from borealis.rca.evidence import (
    EntityRef,
    Evidence,
    EvidenceKind,
    NotChecked,
    entity_ref,
    from_millis,
    quote_data,
    to_millis,
)
from borealis.rca.plan import Window, metric_label


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
