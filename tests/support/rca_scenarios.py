"""Root-cause scenarios: Dynatrace data (problems, entities, events, logs, metrics) with the known cause.

Built from the real API responses in tests/fixtures/dynatrace/api-samples/ where one fits (the memory
exhaustion problem, the deployment and restart events, the host with its relationships), and completed
with data of the same shape. Each scenario can be turned into evidence directly (analyzer tests) or loaded
into the fake Dynatrace (tests of the whole path).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from borealis.rca.book import EvidenceBook, Links
from borealis.rca.evidence import EntityRef, from_millis, to_millis
from borealis.rca.plan import ProblemFacts, Window
from borealis.rca.report import Verdict
from tests.support.shared import API_SAMPLES

SAMPLES = API_SAMPLES
ENVIRONMENT = "https://abc12345.live.dynatrace.com"
T0 = datetime(2024, 5, 14, 10, 0, tzinfo=UTC)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / name).read_text())


def ms(moment: datetime) -> int:
    return to_millis(moment)


def ref(entity_id: str, name: str) -> dict[str, Any]:
    return {"entityId": {"id": entity_id, "type": entity_id.rsplit("-", 1)[0]}, "name": name}


def finding(
    entity_id: str,
    name: str,
    display: str,
    event_type: str,
    start: datetime,
    *,
    relevant: bool,
    grouping: tuple[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "evidenceType": "EVENT",
        "displayName": display,
        "entity": ref(entity_id, name),
        "groupingEntity": ref(*grouping) if grouping else None,
        "rootCauseRelevant": relevant,
        "eventId": f"{zlib.crc32(f'{entity_id}{event_type}'.encode())}_{ms(start)}",
        "eventType": event_type,
        "startTime": ms(start),
    }


def problem(
    pid: str,
    display: str,
    title: str,
    start: datetime,
    *,
    impacted: list[tuple[str, str]],
    root: tuple[str, str] | None,
    findings: list[dict[str, Any]] = (),  # type: ignore[assignment]
    severity: str = "ERROR",
    impact: str = "SERVICES",
    end: datetime | None = None,
    users: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "problemId": pid,
        "displayId": display,
        "title": title,
        "impactLevel": impact,
        "severityLevel": severity,
        "status": "CLOSED" if end else "OPEN",
        "affectedEntities": [ref(*e) for e in impacted],
        "impactedEntities": [ref(*e) for e in impacted],
        "rootCauseEntity": ref(*root) if root else None,
        "managementZones": [],
        "entityTags": [],
        "startTime": ms(start),
        "endTime": ms(end) if end else -1,
        "evidenceDetails": {"totalCount": len(findings), "details": list(findings)},
        "impactAnalysis": {
            "impacts": [
                {"impactType": "SERVICE", "impactedEntity": ref(e, e), "estimatedAffectedUsers": n}
                for e, n in (users or {}).items()
            ]
        },
        "recentComments": {"totalCount": 0, "comments": []},
    }


def entity(
    entity_id: str,
    name: str,
    *,
    outgoing: dict[str, list[str]] | None = None,
    incoming: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    def rel(table: dict[str, list[str]] | None) -> dict[str, list[dict[str, str]]]:
        return {
            name: [{"id": i, "type": i.rsplit("-", 1)[0]} for i in ids] for name, ids in (table or {}).items()
        }

    return {
        "entityId": entity_id,
        "type": entity_id.rsplit("-", 1)[0],
        "displayName": name,
        "properties": {},
        "tags": [],
        "managementZones": [],
        "fromRelationships": rel(outgoing),
        "toRelationships": rel(incoming),
    }


def event(
    event_id: str,
    event_type: str,
    title: str,
    entity_id: str,
    name: str,
    start: datetime,
    *,
    end: datetime | None = None,
    properties: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "startTime": ms(start),
        "endTime": ms(end) if end else -1,
        "eventType": event_type,
        "title": title,
        "entityId": ref(entity_id, name),
        "properties": [{"key": k, "value": v} for k, v in (properties or {}).items()],
        "status": "CLOSED" if end else "OPEN",
        "entityTags": [],
        "managementZones": [],
        "underMaintenance": False,
        "suppressAlert": False,
        "suppressProblem": False,
        "frequentEvent": False,
    }


def log_records(entity_id: str, attribute: str, start: datetime, messages: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": str(ms(start + timedelta(seconds=20 * i))),
            "status": "ERROR",
            "content": message,
            "event.type": "LOG",
            "additionalColumns": {attribute: [entity_id], "loglevel": ["ERROR"]},
        }
        for i, message in enumerate(messages)
    ]


def series(start: datetime, before: float, after: float, *, points: int = 12, step_minutes: int = 5) -> dict:
    """A metric series around ``start``: flat at ``before``, then at ``after`` from the start on."""
    first = start - timedelta(minutes=step_minutes * (points // 2))
    stamps = [ms(first + timedelta(minutes=step_minutes * i)) for i in range(points)]
    values = [before if stamp < ms(start) else after for stamp in stamps]
    return {"timestamps": stamps, "values": values}


@dataclass
class Scenario:
    name: str
    problems: list[dict[str, Any]]
    entities: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    # metric id -> entity id -> {timestamps, values}
    metrics: dict[str, dict[str, dict[str, list]]] = field(default_factory=dict)
    truth: str | None = None
    verdicts: frozenset[Verdict] = frozenset({Verdict.CONFIRMED, Verdict.LIKELY})
    noise: tuple[str, ...] = ()

    @property
    def start(self) -> datetime:
        return min(from_millis(p["startTime"]) for p in self.problems)  # type: ignore[type-var]

    @property
    def now(self) -> datetime:
        return self.start + timedelta(hours=1)

    def facts(self) -> list[ProblemFacts]:
        """What the webhook delivered: the stored problem records (without the details document)."""
        return [dataclasses.replace(ProblemFacts.from_problem(p), details=None) for p in self.problems]

    def load_into(self, fake: Any) -> None:
        """Put the scenario's data into a ``FakeDynatrace`` (tests of the whole path)."""
        for p in self.problems:
            fake.problems[p["problemId"]] = copy.deepcopy(p)
        for e in self.entities:
            fake.entities[e["entityId"]] = copy.deepcopy(e)
        # The environment knows every entity the scenario's entities point at, even those it says
        # nothing more about (a host, its disks): an entity documented by its id alone.
        for e in self.entities:
            for direction in ("fromRelationships", "toRelationships"):
                for targets in (e.get(direction) or {}).values():
                    for target in targets:
                        if target["id"] not in fake.entities:
                            fake.add_entity(target["id"])
        for e in self.events:
            fake.add_event(copy.deepcopy(e))
        for record in self.logs:
            fake.add_log(copy.deepcopy(record))
        for metric_id, per_entity in self.metrics.items():
            for entity_id, data in per_entity.items():
                fake.add_metric_series(metric_id, entity_id, data["timestamps"], data["values"])

    def book(self) -> EvidenceBook:
        """Everything the scenario holds, as evidence (what a complete gathering would find)."""
        window = Window.around(self.facts(), now=self.now)
        book = EvidenceBook(Links(ENVIRONMENT))
        for p in self.problems:
            book.add_problem(copy.deepcopy(p), source=f"GET /api/v2/problems/{p['problemId']}")
        for e in self.entities:
            book.add_entity(copy.deepcopy(e), source=f"GET /api/v2/entities/{e['entityId']}")
        for e in self.events:
            if window.start <= from_millis(e["startTime"]) <= window.end:  # type: ignore[operator]
                book.add_event(copy.deepcopy(e), source="GET /api/v2/events")
        by_entity: dict[str, list[dict[str, Any]]] = {}
        for record in self.logs:
            for key, values in record["additionalColumns"].items():
                if key.startswith("dt.entity.") and values:
                    by_entity.setdefault(values[0], []).append(record)
        for entity_id, records in by_entity.items():
            book.add_logs(
                records,
                entity=EntityRef(id=entity_id),
                query="status=ERROR",
                window=window,
                source="GET /api/v2/logs/search",
            )
        for metric_id, per_entity in self.metrics.items():
            for entity_id, data in per_entity.items():
                book.add_metric(
                    metric_id=metric_id,
                    entity=EntityRef(id=entity_id),
                    timestamps=data["timestamps"],
                    values=data["values"],
                    window=window,
                    source="GET /api/v2/metrics/query",
                )
        return book


# --- the corpus -----------------------------------------------------------------------------------


def memory_exhaustion() -> Scenario:
    """The real closed RESOURCE_CONTENTION problem: Dynatrace blames the process group; the process
    instance's events and memory metric agree."""
    raw = sample("api-v2-problem-get-by-id-closed-resource-contention.json")
    start = from_millis(raw["startTime"])
    assert start is not None
    pgi, pg = "PROCESS_GROUP_INSTANCE-8092E71D6FBB914E", "PROCESS_GROUP-C44FB250621B8036"
    host = "HOST-F1266E1D0AAC2C3C"
    events = [
        event(
            d["eventId"],
            d["eventType"],
            d["displayName"],
            pgi,
            "easytravel.customer.frontend",
            from_millis(d["startTime"]),
            properties={"dt.event.is_rootcause_relevant": "true"},
        )  # type: ignore[arg-type]
        for d in raw["evidenceDetails"]["details"]
        if d["evidenceType"] == "EVENT"
    ]
    return Scenario(
        name="memory_exhaustion",
        problems=[raw],
        entities=[
            entity(
                pgi, "easytravel.customer.frontend", outgoing={"isInstanceOf": [pg], "isProcessOf": [host]}
            ),
            entity(pg, "easytravel.customer.frontend", outgoing={"runsOn": [host]}),
        ],
        events=events,
        metrics={
            "builtin:tech.generic.mem.workingSetSize": {pgi: series(start, 3.1e8, 9.8e8)},
            "builtin:host.cpu.usage": {host: series(start, 35.0, 38.0)},
        },
        truth=pg,
        verdicts=frozenset({Verdict.CONFIRMED}),
    )


def deployment_breaks_service() -> Scenario:
    """The real deployment event on Simple-Node-Service, then its failure rate rises; an unrelated batch
    host saturates its CPU at the same time (noise)."""
    raw_events = sample("api-v2-events-list.json")["events"]
    deployment = raw_events[0]
    restart = raw_events[1]
    service, name = "SERVICE-596877472CDAA92E", "[final] Simple-Node-Service"
    pgi = "PROCESS_GROUP_INSTANCE-0C98DB1A2EDAA36C"
    app = "APPLICATION-3F2C4A7B9D1E5F60"
    noise_host = "HOST-7A7A7A7A7A7A7A7A"
    deployed = from_millis(deployment["startTime"])
    assert deployed is not None
    start = deployed + timedelta(minutes=4)
    cpu = event(
        "555_1",
        "CPU_SATURATED",
        "CPU saturation",
        noise_host,
        "batch-runner-01",
        start - timedelta(minutes=2),
        properties={"dt.event.is_rootcause_relevant": "true"},
    )
    return Scenario(
        name="deployment_breaks_service",
        problems=[
            problem(
                "-4711_1631255984265V2",
                "P-21091001",
                "Failure rate increase",
                start,
                impacted=[(service, name), (app, "easyTravel web")],
                root=(service, name),
                findings=[
                    finding(
                        service,
                        name,
                        "Failure rate increase",
                        "SERVICE_ERROR_RATE_INCREASED",
                        start,
                        relevant=True,
                    )
                ],
                users={app: 310, service: 120},
            )
        ],
        entities=[
            entity(service, name, outgoing={"runsOnProcessGroupInstance": [pgi]}, incoming={"calls": [app]}),
            entity(app, "easyTravel web", outgoing={"calls": [service]}),
            entity(pgi, "Simple-Node-Service app.js", outgoing={"isProcessOf": ["HOST-1B1B1B1B1B1B1B1B"]}),
            entity(noise_host, "batch-runner-01"),
        ],
        events=[deployment, restart, cpu],
        logs=log_records(
            service,
            "dt.entity.service",
            start + timedelta(seconds=30),
            ["TypeError: cannot read properties of undefined (reading 'price')"] * 3,
        ),
        metrics={
            "builtin:service.errors.total.rate": {service: series(start, 0.4, 23.0)},
            "builtin:host.cpu.usage": {noise_host: series(start - timedelta(minutes=2), 30.0, 97.0)},
        },
        truth=service,
        verdicts=frozenset({Verdict.CONFIRMED}),
        noise=(noise_host,),
    )


def database_host_saturation() -> Scenario:
    """A cascade: the database host saturates its CPU; the database service slows, the services that call
    it and the web application above them raise their own problems."""
    host, host_name = "HOST-82F576674F19AC16", "arch-david"
    db_pgi = "PROCESS_GROUP_INSTANCE-701407341F73BE85"
    db = "SERVICE-AFDE3F4C45608C02"
    checkout, cart = "SERVICE-C0C0C0C0C0C0C0C0", "SERVICE-CA2CA2CA2CA2CA2C"
    web = "APPLICATION-EA8E8E8E8E8E8E8E"
    start = T0
    host_entity = sample("api-v2-entity-host-with-relationships.json")
    host_entity["type"] = "HOST"
    problems = [
        problem(
            "-100_1V2",
            "P-3001",
            "CPU saturation",
            start,
            impacted=[(host, host_name)],
            root=(host, host_name),
            severity="RESOURCE_CONTENTION",
            impact="INFRASTRUCTURE",
            findings=[finding(host, host_name, "CPU saturation", "CPU_SATURATED", start, relevant=True)],
        ),
        problem(
            "-101_1V2",
            "P-3002",
            "Response time degradation",
            start + timedelta(minutes=2),
            impacted=[(db, "orders-db"), (checkout, "checkout")],
            root=(host, host_name),
            severity="PERFORMANCE",
            findings=[
                finding(host, host_name, "CPU saturation", "CPU_SATURATED", start, relevant=True),
                finding(
                    checkout,
                    "checkout",
                    "Response time degradation",
                    "SERVICE_RESPONSE_TIME_DEGRADED",
                    start + timedelta(minutes=2),
                    relevant=False,
                ),
            ],
        ),
        problem(
            "-102_1V2",
            "P-3003",
            "Response time degradation",
            start + timedelta(minutes=3),
            impacted=[(cart, "cart")],
            root=None,
            severity="PERFORMANCE",
        ),
        problem(
            "-103_1V2",
            "P-3004",
            "User action duration degradation",
            start + timedelta(minutes=4),
            impacted=[(web, "shop web")],
            root=None,
            severity="PERFORMANCE",
            impact="APPLICATION",
            users={web: 1840},
        ),
    ]
    return Scenario(
        name="database_host_saturation",
        problems=problems,
        entities=[
            host_entity,
            entity(
                db,
                "orders-db",
                outgoing={"runsOnHost": [host], "runsOnProcessGroupInstance": [db_pgi]},
                incoming={"calls": [checkout, cart]},
            ),
            entity(db_pgi, "postgres", outgoing={"isProcessOf": [host]}),
            entity(checkout, "checkout", outgoing={"calls": [db]}, incoming={"calls": [web]}),
            entity(cart, "cart", outgoing={"calls": [db]}, incoming={"calls": [web]}),
            entity(web, "shop web", outgoing={"calls": [checkout, cart]}),
        ],
        events=[
            event(
                "900_1",
                "CPU_SATURATED",
                "CPU saturation",
                host,
                host_name,
                start - timedelta(minutes=1),
                properties={"dt.event.is_rootcause_relevant": "true"},
            ),
            event(
                "901_1",
                "SERVICE_RESPONSE_TIME_DEGRADED",
                "Response time degradation",
                checkout,
                "checkout",
                start + timedelta(minutes=2),
            ),
        ],
        metrics={
            "builtin:host.cpu.usage": {host: series(start - timedelta(minutes=1), 31.0, 99.0)},
            "builtin:service.response.time": {
                checkout: series(start + timedelta(minutes=2), 120_000.0, 2_400_000.0),
                db: series(start + timedelta(minutes=1), 8_000.0, 900_000.0),
            },
        },
        truth=host,
        verdicts=frozenset({Verdict.CONFIRMED}),
    )


def configuration_change_without_root_cause() -> Scenario:
    """Dynatrace names no root cause, but a configuration change on the payment service 6 minutes before
    the start, its error logs and the topology (checkout calls payment) point to it."""
    payment, checkout = "SERVICE-9A9A9A9A9A9A9A9A", "SERVICE-C0C0C0C0C0C0C0C0"
    start = T0
    return Scenario(
        name="configuration_change_without_root_cause",
        problems=[
            problem(
                "-200_1V2",
                "P-4001",
                "Failure rate increase",
                start,
                impacted=[(payment, "payment"), (checkout, "checkout")],
                root=None,
                findings=[
                    finding(
                        payment,
                        "payment",
                        "Failure rate increase",
                        "SERVICE_ERROR_RATE_INCREASED",
                        start,
                        relevant=False,
                    ),
                    finding(
                        checkout,
                        "checkout",
                        "Failure rate increase",
                        "SERVICE_ERROR_RATE_INCREASED",
                        start + timedelta(minutes=1),
                        relevant=False,
                    ),
                ],
            )
        ],
        entities=[
            entity(payment, "payment", incoming={"calls": [checkout]}),
            entity(checkout, "checkout", outgoing={"calls": [payment]}),
        ],
        events=[
            event(
                "300_1",
                "CUSTOM_CONFIGURATION",
                "Feature flag 'new-card-router' enabled",
                payment,
                "payment",
                start - timedelta(minutes=6),
                properties={"dt.event.source": "flagd"},
            ),
        ],
        logs=log_records(
            payment,
            "dt.entity.service",
            start,
            ["CardRouter: no route for BIN 4571", "CardRouter: no route for BIN 4571"],
        ),
        metrics={"builtin:service.errors.total.rate": {payment: series(start, 0.2, 31.0)}},
        truth=payment,
        verdicts=frozenset({Verdict.LIKELY}),
    )


def application_cause_over_infrastructure_noise() -> Scenario:
    """Two problems at once: a deployment breaks the search service (Dynatrace agrees), and an unrelated
    batch host, which nothing impacted runs on, saturates its CPU in its own problem."""
    search, frontend = "SERVICE-5EA5EA5EA5EA5EA5", "SERVICE-F00DF00DF00DF00D"
    batch = "HOST-BA7C4BA7C4BA7C4B"
    start = T0
    return Scenario(
        name="application_cause_over_infrastructure_noise",
        problems=[
            problem(
                "-300_1V2",
                "P-5001",
                "Failure rate increase",
                start,
                impacted=[(search, "search"), (frontend, "frontend")],
                root=(search, "search"),
                findings=[
                    finding(
                        search,
                        "search",
                        "Failure rate increase",
                        "SERVICE_ERROR_RATE_INCREASED",
                        start,
                        relevant=True,
                    )
                ],
            ),
            problem(
                "-301_1V2",
                "P-5002",
                "CPU saturation",
                start - timedelta(minutes=3),
                impacted=[(batch, "batch-07")],
                root=(batch, "batch-07"),
                severity="RESOURCE_CONTENTION",
                impact="INFRASTRUCTURE",
                findings=[
                    finding(
                        batch,
                        "batch-07",
                        "CPU saturation",
                        "CPU_SATURATED",
                        start - timedelta(minutes=3),
                        relevant=True,
                    )
                ],
            ),
        ],
        entities=[
            entity(search, "search", incoming={"calls": [frontend]}),
            entity(frontend, "frontend", outgoing={"calls": [search]}),
            entity(batch, "batch-07"),
        ],
        events=[
            event(
                "400_1",
                "CUSTOM_DEPLOYMENT",
                "Deploy search 4.12.0",
                search,
                "search",
                start - timedelta(minutes=5),
                properties={"dt.event.deployment.version": "4.12.0"},
            ),
            event(
                "401_1", "CPU_SATURATED", "CPU saturation", batch, "batch-07", start - timedelta(minutes=3)
            ),
        ],
        logs=log_records(search, "dt.entity.service", start, ["IndexReader: field 'sku' missing"]),
        metrics={"builtin:host.cpu.usage": {batch: series(start - timedelta(minutes=3), 20.0, 100.0)}},
        truth=search,
        noise=(batch,),
    )


def mobile_slowdown_without_root_cause() -> Scenario:
    """The real mobile slowdown: Dynatrace names no root cause and marks nothing root-cause relevant; the
    only evidence is the symptom itself."""
    return Scenario(
        name="mobile_slowdown_without_root_cause",
        problems=[sample("api-v2-problem-get-by-id-with-evidence-impact.json")],
        truth=None,
        verdicts=frozenset({Verdict.INCONCLUSIVE}),
    )


def two_unrelated_failures() -> Scenario:
    """Ambiguous by construction: two unrelated services fail at the same minute, each with errors and a
    rising failure rate, no change, no shared dependency, no root cause from Dynatrace."""
    a, b = "SERVICE-AAAA0000AAAA0000", "SERVICE-BBBB0000BBBB0000"
    start = T0
    return Scenario(
        name="two_unrelated_failures",
        problems=[
            problem(
                "-500_1V2",
                "P-6001",
                "Failure rate increase",
                start,
                impacted=[(a, "inventory"), (b, "notifications")],
                root=None,
            ),
        ],
        entities=[entity(a, "inventory"), entity(b, "notifications")],
        events=[
            event("600_1", "SERVICE_ERROR_RATE_INCREASED", "Failure rate increase", a, "inventory", start),
            event(
                "601_1", "SERVICE_ERROR_RATE_INCREASED", "Failure rate increase", b, "notifications", start
            ),
        ],
        logs=log_records(a, "dt.entity.service", start, ["timeout talking to queue"])
        + log_records(b, "dt.entity.service", start, ["SMTP 421 try again later"]),
        truth=None,
        verdicts=frozenset({Verdict.INCONCLUSIVE}),
    )


def corpus() -> list[Scenario]:
    return [
        memory_exhaustion(),
        deployment_breaks_service(),
        database_host_saturation(),
        configuration_change_without_root_cause(),
        application_cause_over_infrastructure_noise(),
        mobile_slowdown_without_root_cause(),
        two_unrelated_failures(),
    ]
