"""The shape of a correlation scenario: a topology, the deliveries Dynatrace sends, and the true grouping.

A scenario is told as waves of webhook deliveries. Deliveries of one wave are sent at about the same
time, so they may arrive in any order (a concurrent replay shuffles them); waves are minutes apart, so
one wave has been answered before the next begins. The listed order inside a wave is the sequential
replay's order and is often deliberately out of order (a redelivery, a RESOLVED before its OPEN).

Problems are the v2 problem documents of ``tests/support/rca_scenarios.py`` (the same builders), so each
true group with a known cause is also a root-cause scenario (``CorrelationScenario.rca_scenarios``).
"""

from __future__ import annotations

import copy
import hashlib
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.support import rca_scenarios as rca
from tests.support.rca_scenarios import T0, ms

ENVIRONMENT = rca.ENVIRONMENT
PROD_TAGS = (("CONTEXTLESS", "env", "prod"), ("KUBERNETES", "namespace", "shop"))
SHOP = ("Shop",)

Grouping = frozenset[frozenset[str]]


def at(minutes: float) -> datetime:
    """A moment ``minutes`` after the scenarios' common start."""
    return T0 + timedelta(minutes=minutes)


@dataclass(frozen=True)
class Entity:
    """A monitored entity: a Dynatrace-shaped id (type and 16 hex digits) derived from its name."""

    kind: str
    name: str

    @property
    def id(self) -> str:
        digest = hashlib.sha1(f"{self.kind}/{self.name}".encode()).hexdigest()[:16].upper()
        return f"{self.kind}-{digest}"

    @property
    def ref(self) -> tuple[str, str]:
        return (self.id, self.name)


def host(name: str) -> Entity:
    return Entity("HOST", name)


def process(name: str) -> Entity:
    return Entity("PROCESS_GROUP_INSTANCE", name)


def service(name: str) -> Entity:
    return Entity("SERVICE", name)


def application(name: str) -> Entity:
    return Entity("APPLICATION", name)


class Topology:
    """Relationships between entities, written into entity documents as ``GET /api/v2/entities/{id}``
    returns them (each side lists the edge: fromRelationships on one, toRelationships on the other)."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._outgoing: dict[str, dict[str, list[str]]] = {}
        self._incoming: dict[str, dict[str, list[str]]] = {}

    def add(self, *entities: Entity) -> None:
        for item in entities:
            self._names.setdefault(item.id, item.name)

    def relate(self, source: Entity, relation: str, target: Entity) -> None:
        self.add(source, target)
        self._outgoing.setdefault(source.id, {}).setdefault(relation, []).append(target.id)
        self._incoming.setdefault(target.id, {}).setdefault(relation, []).append(source.id)

    def calls(self, caller: Entity, *callees: Entity) -> None:
        for callee in callees:
            self.relate(caller, "calls", callee)

    def runs_in(self, item: Entity, instance: Entity, on: Entity) -> None:
        """A service served by a process instance on a host (Dynatrace lists all three edges)."""
        self.relate(item, "runsOnProcessGroupInstance", instance)
        self.relate(item, "runsOnHost", on)
        self.relate(instance, "isProcessOf", on)

    def documents(self) -> list[dict[str, Any]]:
        return [
            rca.entity(
                entity_id,
                name,
                outgoing=self._outgoing.get(entity_id),
                incoming=self._incoming.get(entity_id),
            )
            for entity_id, name in sorted(self._names.items())
        ]


def pid_for(display: str) -> str:
    """A stable numeric PID for a display id, as Dynatrace's {PID} looks ("-5423081234718262345")."""
    return "-" + str(int(hashlib.sha1(display.encode()).hexdigest()[:15], 16))


def _tag(context: str, key: str, value: str) -> dict[str, str]:
    text = f"{key}:{value}" if context == "CONTEXTLESS" else f"[{context.title()}]{key}:{value}"
    return {"context": context, "key": key, "value": value, "stringRepresentation": text}


def dynatrace_problem(
    display: str,
    title: str,
    start: datetime,
    *,
    impacted: Iterable[Entity],
    root: Entity | None = None,
    severity: str = "PERFORMANCE",
    impact: str = "SERVICES",
    tags: Iterable[tuple[str, str, str]] = PROD_TAGS,
    zones: Iterable[str] = SHOP,
    event_type: str = "SERVICE_RESPONSE_TIME_DEGRADED",
) -> dict[str, Any]:
    """A v2 problem as the API and ``{ProblemDetailsJSONv2}`` show it, open, with its evidence."""
    impacted = list(impacted)
    findings = []
    if root is not None:
        findings.append(rca.finding(root.id, root.name, title, event_type, start, relevant=True))
    for item in impacted:
        if item != root:
            findings.append(rca.finding(item.id, item.name, title, event_type, start, relevant=False))
    document = rca.problem(
        f"{pid_for(display)}_{ms(start)}V2",
        display,
        title,
        start,
        impacted=[item.ref for item in impacted],
        root=root.ref if root else None,
        findings=findings,
        severity=severity,
        impact=impact,
    )
    document["entityTags"] = [_tag(*tag) for tag in tags]
    document["managementZones"] = [
        {"id": str(int(hashlib.sha1(zone.encode()).hexdigest()[:8], 16)), "name": zone} for zone in zones
    ]
    return document


def webhook_body(document: dict[str, Any], state: str, *, observed: datetime | None = None) -> dict[str, Any]:
    """What the suggested template sends for the problem in ``state``; ``observed`` is the newest
    Dynatrace timestamp in it (the start when not given, the end for a RESOLVED)."""
    details = copy.deepcopy(document)
    if state == "RESOLVED":
        assert observed is not None, "a RESOLVED needs its end time"
        details["status"] = "CLOSED"
        details["endTime"] = ms(observed)
    else:
        details["status"] = "OPEN"
        details["endTime"] = -1
        if observed is not None:
            first = details["impactedEntities"][0]
            details["evidenceDetails"]["details"].append(
                {
                    "evidenceType": "EVENT",
                    "displayName": details["title"],
                    "entity": first,
                    "rootCauseRelevant": False,
                    "eventId": f"{zlib.crc32(first['entityId']['id'].encode())}_{ms(observed)}",
                    "eventType": "SERVICE_RESPONSE_TIME_DEGRADED",
                    "startTime": ms(observed),
                }
            )
            details["evidenceDetails"]["totalCount"] = len(details["evidenceDetails"]["details"])
    impacted = details["impactedEntities"]
    names = [item["name"] for item in impacted]
    return {
        "ProblemID": details["displayId"],
        "PID": details["problemId"].split("_")[0],
        "State": state,
        "ProblemTitle": details["title"],
        "ProblemSeverity": details["severityLevel"],
        "ProblemImpact": details["impactLevel"],
        "ProblemURL": f"{ENVIRONMENT}/#problems/problemdetails;pid={details['problemId']}",
        "ImpactedEntity": f"{details['title']} on {', '.join(names)}",
        "ImpactedEntityNames": ", ".join(names),
        "ImpactedEntities": [
            {"type": item["entityId"]["type"], "name": item["name"], "entity": item["entityId"]["id"]}
            for item in impacted
        ],
        "Tags": ", ".join(tag["stringRepresentation"] for tag in details["entityTags"]),
        "ProblemDetailsJSONv2": details,
    }


def merged_body(document: dict[str, Any]) -> dict[str, Any]:
    """A MERGED delivery: Dynatrace fills in little more than the ids."""
    return {
        "ProblemID": document["displayId"],
        "PID": document["problemId"].split("_")[0],
        "State": "MERGED",
        "ProblemTitle": "",
        "ProblemSeverity": "",
        "ProblemImpact": "",
        "ProblemURL": f"{ENVIRONMENT}/#problems/problemdetails;pid={document['problemId']}",
        "ImpactedEntity": "",
        "ImpactedEntityNames": "",
        "ImpactedEntities": [],
        "Tags": "",
    }


@dataclass(frozen=True)
class Group:
    """One incident of the true grouping: its problems (display ids), the entity that truly caused it
    (None when unknown) and whether it ends resolved."""

    problems: frozenset[str]
    cause: Entity | None
    resolved: bool = True


@dataclass
class CorrelationScenario:
    """A topology, waves of deliveries and the true grouping; ``problems`` are the final documents."""

    name: str
    story: str
    problems: list[dict[str, Any]]
    groups: list[Group]
    waves: list[list[dict[str, Any]]]
    entities: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, dict[str, dict[str, list]]] = field(default_factory=dict)
    # False: the entity cache stays empty (a token without entities.read), so only Dynatrace's ids group.
    topology: bool = True

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        return [body for wave in self.waves for body in wave]

    @property
    def truth(self) -> Grouping:
        return frozenset(group.problems for group in self.groups)

    def resolved_truth(self) -> dict[frozenset[str], bool]:
        return {group.problems: group.resolved for group in self.groups}

    def rca_scenarios(self) -> list[rca.Scenario]:
        """One root-cause scenario per true group with a known cause: the group's problems, the entities,
        and the events and metrics of the group's entities."""
        by_display = {document["displayId"]: document for document in self.problems}
        found = []
        for group in self.groups:
            if group.cause is None:
                continue
            problems = [copy.deepcopy(by_display[display]) for display in sorted(group.problems)]
            involved = {group.cause.id}
            for document in problems:
                involved |= {item["entityId"]["id"] for item in document["impactedEntities"]}
                if document["rootCauseEntity"]:
                    involved.add(document["rootCauseEntity"]["entityId"]["id"])
            found.append(
                rca.Scenario(
                    name=f"{self.name}:{group.cause.name}",
                    problems=problems,
                    entities=copy.deepcopy(self.entities),
                    events=[e for e in self.events if e["entityId"]["entityId"]["id"] in involved],
                    logs=[
                        record
                        for record in self.logs
                        if any(
                            values and values[0] in involved
                            for key, values in record["additionalColumns"].items()
                            if key.startswith("dt.entity.")
                        )
                    ],
                    metrics={
                        metric: {key: value for key, value in series.items() if key in involved}
                        for metric, series in self.metrics.items()
                        if any(key in involved for key in series)
                    },
                    truth=group.cause.id,
                )
            )
        return found


class Story:
    """Writes a scenario: problems, and what Dynatrace sends about them wave by wave."""

    def __init__(self) -> None:
        self.problems: dict[str, dict[str, Any]] = {}
        self.waves: list[list[dict[str, Any]]] = []

    def problem(self, display: str, title: str, minute: float, **fields: Any) -> dict[str, Any]:
        document = dynatrace_problem(display, title, at(minute), **fields)
        self.problems[display] = document
        return document

    def wave(self, *bodies: dict[str, Any]) -> None:
        self.waves.append(list(bodies))

    @staticmethod
    def opened(document: dict[str, Any], *, minute: float | None = None) -> dict[str, Any]:
        """An OPEN of the problem as it now stands (``minute``: its newest evidence, for an update)."""
        return webhook_body(document, "OPEN", observed=None if minute is None else at(minute))

    def resolved(self, document: dict[str, Any], minute: float) -> dict[str, Any]:
        """Dynatrace closes the problem at ``minute``; its final document says so."""
        document["status"] = "CLOSED"
        document["endTime"] = ms(at(minute))
        return webhook_body(document, "RESOLVED", observed=at(minute))

    def reopened(self, document: dict[str, Any], minute: float) -> dict[str, Any]:
        """The same problem open again (evidence at ``minute``, after its last end)."""
        document["status"] = "OPEN"
        document["endTime"] = -1
        return webhook_body(document, "OPEN", observed=at(minute))

    def merged(self, document: dict[str, Any], into: dict[str, Any], minute: float) -> dict[str, Any]:
        """Dynatrace merges ``document`` into ``into``: the survivor takes over its impacted entities."""
        document["status"] = "CLOSED"
        document["endTime"] = ms(at(minute))
        known = {item["entityId"]["id"] for item in into["impactedEntities"]}
        for item in document["impactedEntities"]:
            if item["entityId"]["id"] not in known:
                into["impactedEntities"].append(copy.deepcopy(item))
                into["affectedEntities"].append(copy.deepcopy(item))
        return merged_body(document)

    def scenario(self, name: str, story: str, groups: list[Group], **fields: Any) -> CorrelationScenario:
        displays = set(self.problems)
        grouped = [display for group in groups for display in group.problems]
        assert sorted(grouped) == sorted(displays), f"{name}: every problem in exactly one true group"
        return CorrelationScenario(
            name=name,
            story=story,
            problems=list(self.problems.values()),
            groups=groups,
            waves=self.waves,
            **fields,
        )


def group(*displays: str, cause: Entity | None, resolved: bool = True) -> Group:
    return Group(frozenset(displays), cause, resolved)
