"""A generated case as Dynatrace's API shows it: entity documents, events, and the problem Davis opened.

Relationships are written on both ends, events carry the v2 shape, and the problem names the true cause
(``rootCauseEntity`` and a root-cause-relevant finding) only in the share of cases where Davis would.
"""

from __future__ import annotations

import copy
import random
from datetime import datetime
from typing import Any

from borealis.simulation.faults import Plan
from borealis.simulation.series import FAILURE_RATE, MINUTE_MS, MINUTES, RESPONSE_TIME, mean
from borealis.simulation.topology import World

DAVIS_NAMES_CAUSE = 0.15
DEPLOY_SOURCES = ("Jenkins", "GitLab CI", "Argo CD", "GitHub Actions", "Spinnaker")


def _ref(entity_id: str) -> dict[str, str]:
    return {"id": entity_id, "type": entity_id.rsplit("-", 1)[0]}


def stub(entity_id: str, name: str) -> dict[str, Any]:
    return {"entityId": _ref(entity_id), "name": name}


def _relate(documents: dict[str, dict[str, Any]], source: str, relation: str, target: str) -> None:
    """``source -relation-> target``, written on both ends as Dynatrace shows it."""
    outgoing = documents[source]["fromRelationships"].setdefault(relation, [])
    if _ref(target) not in outgoing:
        outgoing.append(_ref(target))
    incoming = documents[target]["toRelationships"].setdefault(relation, [])
    if _ref(source) not in incoming:
        incoming.append(_ref(source))


def _document(
    entity_id: str, name: str, properties: dict[str, Any], first_seen: int, now_ms: int
) -> dict[str, Any]:
    return {
        "entityId": entity_id,
        "type": entity_id.rsplit("-", 1)[0],
        "displayName": name,
        "firstSeenTms": first_seen,
        "lastSeenTms": now_ms,
        "properties": properties,
        "tags": [],
        "managementZones": [],
        "fromRelationships": {},
        "toRelationships": {},
    }


def entities(rng: random.Random, world: World, now: datetime) -> list[dict[str, Any]]:
    now_ms = int(now.timestamp() * 1000)

    def first_seen() -> int:
        return now_ms - rng.randint(3, 400) * 86_400_000

    documents: dict[str, dict[str, Any]] = {}
    for host in world.hosts.values():
        documents[host.id] = _document(
            host.id,
            host.name,
            {"osType": "LINUX", "cpuCores": host.cores, "monitoringMode": "FULL_STACK", "state": "RUNNING"},
            first_seen(),
            now_ms,
        )
    for sid in world.order:
        service = world.services[sid]
        documents[sid] = _document(sid, service.name, dict(service.properties), first_seen(), now_ms)
        technology = service.properties.get("agentTechnologyType") or service.properties.get("databaseVendor")
        if service.group:
            documents[service.group] = _document(
                service.group,
                f"{service.name}-*",
                {"softwareTechnologies": [technology]},
                first_seen(),
                now_ms,
            )
        for instance in service.instances:
            host_name = world.hosts[instance.host].name
            documents[instance.pgi] = _document(
                instance.pgi,
                f"{service.name}-* ({host_name})",
                {"processType": technology},
                first_seen(),
                now_ms,
            )
    for sid in world.order:
        service = world.services[sid]
        for call in service.calls:
            _relate(documents, sid, "calls", call.callee)
        for instance in service.instances:
            _relate(documents, sid, "runsOnProcessGroupInstance", instance.pgi)
            _relate(documents, sid, "runsOnHost", instance.host)
            _relate(documents, instance.pgi, "isProcessOf", instance.host)
            if service.group:
                _relate(documents, instance.pgi, "isInstanceOf", service.group)
                _relate(documents, service.group, "runsOn", instance.host)
        if service.group:
            _relate(documents, sid, "runsOn", service.group)
    return list(documents.values())


def _event_id(rng: random.Random, start: int) -> str:
    return f"{rng.randint(10**17, 10**19 - 1)}_{start}"


def _event(
    rng: random.Random,
    event_type: str,
    title: str,
    entity_id: str,
    name: str,
    start: int,
    *,
    end: int | None = None,
    properties: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event in the v2 shape (``GET /api/v2/events``)."""
    return {
        "eventId": _event_id(rng, start),
        "startTime": start,
        "endTime": end if end is not None else -1,
        "eventType": event_type,
        "title": title,
        "entityId": stub(entity_id, name),
        "properties": [{"key": key, "value": value} for key, value in (properties or {}).items()],
        "status": "CLOSED" if end is not None else "OPEN",
        "entityTags": [],
        "managementZones": [],
        "underMaintenance": False,
        "suppressAlert": False,
        "suppressProblem": False,
        "frequentEvent": False,
    }


def _deployment(rng: random.Random, world: World, sid: str, start: int, event_type: str) -> dict[str, Any]:
    """A deployment: pushed by a pipeline onto the service, or seen by OneAgent on its process."""
    service = world.services[sid]
    version = f"{rng.randint(1, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"
    if event_type == "PROCESS_VERSION_CHANGE":
        instance = rng.choice(service.instances)
        name = f"{service.name}-* ({world.hosts[instance.host].name})"
        return _event(
            rng,
            "PROCESS_VERSION_CHANGE",
            "Process version change",
            instance.pgi,
            name,
            start,
            end=start,
            properties={"dt.event.group_label": "Process version change", "dt.event.version": version},
        )
    return _event(
        rng,
        "CUSTOM_DEPLOYMENT",
        f"Deploy {service.name} {version}",
        sid,
        service.name,
        start,
        end=start,
        properties={
            "dt.event.group_label": "Deployment",
            "dt.event.deployment.name": f"{service.name} {version}",
            "dt.event.deployment.version": version,
            "dt.event.source": rng.choice(DEPLOY_SOURCES),
        },
    )


def events(
    rng: random.Random, world: World, plan: Plan, traps: dict[str, Any], timestamps: list[int], onset: int
) -> list[dict[str, Any]]:
    """The deployments (the faulty one, an unrelated one) and what Dynatrace raised on the way."""
    onset_ms = timestamps[onset] - MINUTE_MS
    events = []
    fault = plan.fault
    if fault.kind == "bad_deployment" and fault.deployment:
        start = onset_ms - rng.randint(1, 10) * MINUTE_MS - rng.randint(0, 59_000)
        events.append(_deployment(rng, world, fault.target, start, fault.deployment))
    unrelated = traps.get("unrelated_deployment")
    if unrelated is not None:
        start = onset_ms - rng.randint(0, 15) * MINUTE_MS - rng.randint(0, 59_000)
        kinds = ["CUSTOM_DEPLOYMENT"] + (
            ["PROCESS_VERSION_CHANGE"] if world.services[unrelated].instances else []
        )
        events.append(_deployment(rng, world, unrelated, start, rng.choice(kinds)))
    if fault.kind == "host_saturation" and rng.random() < 0.5:
        host = world.hosts[fault.target]
        start = onset_ms + rng.randint(3, 6) * MINUTE_MS
        properties = {"dt.event.group_label": "CPU saturation", "dt.event.is_rootcause_relevant": "true"}
        events.append(
            _event(rng, "CPU_SATURATED", "CPU saturation", host.id, host.name, start, properties=properties)
        )
    return events


def _symptom_kind(
    metrics: dict[tuple[str, str], list[float | None]], front: str, onset: int, opened: int
) -> str:
    """What the frontend shows most: a slowdown or more failures (Davis titles the problem by it)."""
    before = slice(max(0, onset - 90), onset - 30)
    after = slice(opened, MINUTES + 1)
    rt_before = mean(metrics[(RESPONSE_TIME, front)][before]) or 1.0
    rt_after = mean(metrics[(RESPONSE_TIME, front)][after]) or rt_before
    errors_before = mean(metrics[(FAILURE_RATE, front)][before]) or 0.0
    errors_after = mean(metrics[(FAILURE_RATE, front)][after]) or errors_before
    slower = rt_after / rt_before - 1
    failing = (errors_after - errors_before) / 3
    return "slowdown" if slower >= failing else "failures"


SYMPTOM_EVENTS = {
    "slowdown": ("SERVICE_SLOWDOWN", "Response time degradation", "PERFORMANCE"),
    "failures": ("SERVICE_ERROR_RATE_INCREASED", "Failure rate increase", "ERROR"),
}
CAUSE_EVENTS = {
    "latency": ("SERVICE_SLOWDOWN", "Response time degradation"),
    "errors": ("SERVICE_ERROR_RATE_INCREASED", "Failure rate increase"),
    "traffic_collapse": ("SERVICE_UNEXPECTED_LOW_LOAD", "Unexpected low load"),
    "host_saturation": ("CPU_SATURATED", "CPU saturation"),
}


def _finding(event: dict[str, Any], relevant: bool) -> dict[str, Any]:
    """An ``evidenceDetails`` entry of type EVENT, as the problem details show it."""
    return {
        "evidenceType": "EVENT",
        "displayName": event["title"],
        "entity": copy.deepcopy(event["entityId"]),
        "groupingEntity": None,
        "rootCauseRelevant": relevant,
        "eventId": event["eventId"],
        "eventType": event["eventType"],
        "data": copy.deepcopy(event),
        "startTime": event["startTime"],
        "endTime": event["endTime"],
    }


def problem(
    rng: random.Random,
    world: World,
    plan: Plan,
    metrics: dict[tuple[str, str], list[float | None]],
    stamp: int,
    onset: int,
    opened: int,
    timestamps: list[int],
    events: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The problem Dynatrace opened on the frontend, and its opening event; in some cases Davis names the
    true cause (rootCauseEntity and a root-cause-relevant finding), in most it names none."""
    front = world.services[world.order[0]]
    event_type, title, severity = SYMPTOM_EVENTS[_symptom_kind(metrics, front.id, onset, opened)]
    davis = rng.random() < DAVIS_NAMES_CAUSE
    opening = _event(
        rng,
        event_type,
        title,
        front.id,
        front.name,
        stamp,
        properties={
            "dt.event.group_label": title,
            "dt.event.is_rootcause_relevant": "true" if davis and plan.truth == front.id else "false",
        },
    )
    findings = [_finding(opening, davis and plan.truth == front.id)]
    root = None
    if davis:
        cause_name = (
            world.services[plan.truth].name if plan.truth in world.services else world.hosts[plan.truth].name
        )
        root = stub(plan.truth, cause_name)
        if plan.truth != front.id:
            findings.append(_finding(_cause_event(rng, plan, cause_name, timestamps, onset, events), True))
    problem = {
        "problemId": f"-{rng.randint(10**18, 9 * 10**18)}_{stamp}V2",
        "displayId": f"P-{rng.randint(2_400_000, 2_499_999)}",
        "title": title,
        "impactLevel": "SERVICES",
        "severityLevel": severity,
        "status": "OPEN",
        "affectedEntities": [stub(front.id, front.name)],
        "impactedEntities": [stub(front.id, front.name)],
        "rootCauseEntity": root,
        "managementZones": [],
        "entityTags": [],
        "problemFilters": [],
        "startTime": stamp,
        "endTime": -1,
        "evidenceDetails": {"totalCount": len(findings), "details": findings},
        "impactAnalysis": {
            "impacts": [
                {
                    "impactType": "SERVICE",
                    "impactedEntity": stub(front.id, front.name),
                    "estimatedAffectedUsers": rng.randint(5, 5000),
                }
            ]
        },
        "recentComments": {"totalCount": 0, "comments": []},
    }
    return problem, opening


def _cause_event(
    rng: random.Random, plan: Plan, name: str, timestamps: list[int], onset: int, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """The event Davis holds against the cause: the deployment itself, or the cause's own anomaly (kept in
    the events list too, as Dynatrace would list it)."""
    fault = plan.fault
    if fault.kind == "bad_deployment":
        return next(event for event in events if event["eventType"] == fault.deployment)
    kind = fault.kind
    start = timestamps[min(onset + 2, MINUTES)] - MINUTE_MS
    existing = next((event for event in events if event["eventType"] == "CPU_SATURATED"), None)
    if kind == "host_saturation" and existing is not None:
        return existing
    event_type, title = CAUSE_EVENTS[kind]
    properties = {"dt.event.group_label": title, "dt.event.is_rootcause_relevant": "true"}
    event = _event(rng, event_type, title, plan.truth, name, start, properties=properties)
    events.append(event)
    return event
