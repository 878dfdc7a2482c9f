"""Small dependency graphs with metric series, built as evidence for the walk's tests.

``Graph`` names services and hosts, wires ``calls`` and ``runsOnHost`` both ways as Dynatrace does, and
gives each entity one-minute series over the two-hour baseline and the incident window; ``book()`` turns it
into the evidence a complete gathering would hold.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from borealis.rca.book import EvidenceBook, Links
from borealis.rca.evidence import EntityRef, NotChecked, to_millis
from borealis.rca.plan import ProblemFacts, Window

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = START + timedelta(minutes=20)
ENVIRONMENT = "https://abc12345.live.dynatrace.com"
RT = "builtin:service.response.time"
ERRORS = "builtin:service.errors.total.rate"
REQUESTS = "builtin:service.requestCount.total"
CPU = "builtin:host.cpu.usage"


def entity_id(kind: str, name: str) -> str:
    return f"{kind}-{hashlib.sha1(name.encode()).hexdigest()[:16].upper()}"


@dataclass
class Graph:
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    series: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def _add(self, kind: str, name: str, properties: dict[str, Any] | None = None) -> str:
        ident = entity_id(kind, name)
        self.entities[ident] = {
            "entityId": ident,
            "displayName": name,
            "type": kind,
            "properties": properties or {},
            "fromRelationships": {},
            "toRelationships": {},
        }
        return ident

    def _link(self, source: str, relation: str, target: str) -> None:
        kind = lambda ident: ident.rsplit("-", 1)[0]  # noqa: E731
        self.entities[source]["fromRelationships"].setdefault(relation, []).append(
            {"id": target, "type": kind(target)}
        )
        self.entities[target]["toRelationships"].setdefault(relation, []).append(
            {"id": source, "type": kind(source)}
        )

    def service(
        self, name: str, *, calls: tuple[str, ...] = (), host: str | None = None, external: bool = False
    ) -> str:
        """A healthy service (40 ms, 0.5 % errors, 600 requests a minute) calling ``calls``."""
        ident = self._add("SERVICE", name, {"isExternalService": True} if external else {})
        for callee in calls:
            self._link(ident, "calls", callee)
        if host:
            self._link(ident, "runsOnHost", host)
        self.steady(ident, RT, 40_000)
        self.steady(ident, ERRORS, 0.5)
        self.steady(ident, REQUESTS, 600)
        return ident

    def host(self, name: str) -> str:
        ident = self._add("HOST", name)
        self.steady(ident, CPU, 30)
        return ident

    def steady(self, ident: str, metric: str, level: float) -> None:
        pattern = [0.0, 1.0, -1.0, 0.5, -0.5, 0.8, -0.8, 0.2]
        self.series[(metric, ident)] = [level * (1 + 0.04 * pattern[i % 8]) for i in range(140)]

    def trouble(self, ident: str, metric: str, level: float, *, onset_minutes: float = -5) -> None:
        """From ``onset_minutes`` around the start on, the series sits at ``level``."""
        values = self.series[(metric, ident)]
        onset = 120 + int(onset_minutes)
        for index in range(onset, len(values)):
            values[index] = level * (1 + 0.03 * ((index % 3) - 1))

    def drop(self, ident: str, metric: str) -> None:
        self.series.pop((metric, ident))

    def deployment(self, ident: str, *, minutes_before: float = 8) -> None:
        self.events.append(
            {
                "eventId": f"deploy-{ident}",
                "eventType": "CUSTOM_DEPLOYMENT",
                "title": "Deploy 2.4.1",
                "startTime": to_millis(START - timedelta(minutes=minutes_before)),
                "endTime": to_millis(START - timedelta(minutes=minutes_before - 1)),
                "entityId": {"entityId": {"id": ident, "type": ident.rsplit("-", 1)[0]}, "name": ident},
                "properties": [],
            }
        )

    def problem(self, impacted: str, *, root: str | None = None) -> dict[str, Any]:
        def ref(ident: str) -> dict[str, Any]:
            kind = ident.rsplit("-", 1)[0]
            return {"entityId": {"id": ident, "type": kind}, "name": self.entities[ident]["displayName"]}

        return {
            "problemId": "-100_1V2",
            "displayId": "P-100",
            "title": "Response time degradation",
            "status": "OPEN",
            "severityLevel": "PERFORMANCE",
            "impactLevel": "SERVICES",
            "startTime": to_millis(START),
            "endTime": -1,
            "impactedEntities": [ref(impacted)],
            "rootCauseEntity": ref(root) if root else None,
            "evidenceDetails": {
                "totalCount": 1,
                "details": [
                    {
                        "evidenceType": "EVENT",
                        "displayName": "Response time degradation",
                        "entity": ref(impacted),
                        "rootCauseRelevant": False,
                        "startTime": to_millis(START),
                        "eventId": "open-1",
                        "eventType": "SERVICE_SLOWDOWN",
                    }
                ],
            },
        }

    def book(
        self, impacted: str, *, root: str | None = None, not_checked: tuple[NotChecked, ...] = ()
    ) -> EvidenceBook:
        """The evidence a complete gathering would hold for a problem on ``impacted``."""
        facts = ProblemFacts(pid="-100_1V2", title="Response time degradation", start=START)
        window = Window.around([facts], now=NOW)
        book = EvidenceBook(Links(ENVIRONMENT))
        book.add_problem(self.problem(impacted, root=root), source="GET /api/v2/problems/-100_1V2")
        for entity in self.entities.values():
            book.add_entity(entity, source="GET /api/v2/entities")
        stamps = [to_millis(START - timedelta(minutes=120 - i)) for i in range(140)]
        for (metric, ident), values in self.series.items():
            name = self.entities[ident]["displayName"]
            book.add_metric(
                metric_id=metric,
                entity=EntityRef(id=ident, name=name, type=ident.rsplit("-", 1)[0]),
                timestamps=stamps,
                values=values,
                window=window,
                source="GET /api/v2/metrics/query",
            )
        for event in self.events:
            book.add_event(event, source="GET /api/v2/events")
        book.not_checked.extend(not_checked)
        return book
