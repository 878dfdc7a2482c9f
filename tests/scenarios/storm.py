"""A storm: 500 problems from 5 root causes within half an hour, all with the same tags and zone.

Each cause is a small estate: the cause itself, nine dependants one relation away and ninety more one
relation further. A Kubernetes node runs out of memory (its processes and the services they serve
fail), the ledger database slows, the auth service fails, the message broker stalls, and the edge load
balancer host saturates. Every entity with trouble raises its own problem; Dynatrace names the cause on
the cause, on its direct dependants and on every third of the rest. The 500 OPENs (and some
redeliveries) arrive shuffled in one burst; two of the causes then resolve, three are still going."""

from __future__ import annotations

import random

from tests.scenarios.model import (
    CorrelationScenario,
    Entity,
    Group,
    Story,
    Topology,
    application,
    at,
    host,
    process,
    service,
)
from tests.support.rca_scenarios import event, series

PER_CAUSE = 100
TIER_ONE = 9
RESOLVED_CAUSES = (0, 2)


def _estate(index: int) -> tuple[Entity, str, list[Entity], list[list[Entity]], Topology]:
    """The cause, its title, nine dependants, ten dependants of each of those, and the relations."""
    topology = Topology()
    if index in (0, 4):
        root = host(("k8s-node-21", "edge-lb-02")[index // 4])
        title = ("Memory saturation", "CPU saturation")[index // 4]
        first = [process(f"{root.name}-proc-{k}") for k in range(TIER_ONE)]
        for item in first:
            topology.relate(item, "isProcessOf", root)
        second = [[service(f"{root.name}-svc-{k}-{j}") for j in range(10)] for k in range(TIER_ONE)]
        for parent, children in zip(first, second, strict=True):
            for child in children:
                topology.relate(child, "runsOnProcessGroupInstance", parent)
    else:
        name = ("ledger-db", "auth", "message-broker")[index - 1]
        root = service(name)
        title = "Response time degradation" if index != 2 else "Failure rate increase"
        first = [service(f"{name}-client-{k}") for k in range(TIER_ONE)]
        for item in first:
            topology.calls(item, root)
        second = [
            [(application if j % 4 == 0 else service)(f"{name}-client-{k}-caller-{j}") for j in range(10)]
            for k in range(TIER_ONE)
        ]
        for parent, children in zip(first, second, strict=True):
            for child in children:
                topology.calls(child, parent)
    return root, title, first, second, topology


SYMPTOMS = {
    "SERVICE": ("Response time degradation", "Failure rate increase"),
    "PROCESS_GROUP_INSTANCE": ("Process unavailable", "Memory saturation"),
    "APPLICATION": ("User action duration degradation", "JavaScript error rate increase"),
}


def problem_storm() -> CorrelationScenario:
    story = Story()
    entities: list[dict] = []
    groups: list[Group] = []
    events: list[dict] = []
    metrics: dict[str, dict[str, dict[str, list]]] = {}
    opens: list[dict] = []
    ends: list[dict] = []
    shuffle = random.Random(500)
    for index in range(5):
        root, title, first, second, topology = _estate(index)
        entities += topology.documents()
        begin = 3 * index
        infrastructure = root.kind == "HOST"
        displays = []

        def raise_problem(item: Entity, symptom: str, minute: float, *, named: bool) -> dict:
            display = f"P-38{index}{len(displays):02d}"
            displays.append(display)
            return story.problem(
                display,
                symptom,
                minute,
                impacted=[item],
                root=root if named else None,
                severity="RESOURCE_CONTENTION" if item.kind == "HOST" else "PERFORMANCE",
                impact="INFRASTRUCTURE" if item.kind in ("HOST", "PROCESS_GROUP_INSTANCE") else "SERVICES",
            )

        documents = [raise_problem(root, title, begin, named=True)]
        for k, item in enumerate(first):
            documents.append(raise_problem(item, SYMPTOMS[item.kind][k % 2], begin + 1 + k % 3, named=True))
        for k, children in enumerate(second):
            for j, item in enumerate(children):
                symptom = SYMPTOMS[item.kind][(k + j) % 2]
                documents.append(
                    raise_problem(item, symptom, begin + 2 + (k * 10 + j) % 18, named=j % 3 == 0)
                )
        assert len(documents) == PER_CAUSE
        opens += [story.opened(document) for document in documents]
        if index in RESOLVED_CAUSES:
            ends += [story.resolved(document, begin + 40 + n % 7) for n, document in enumerate(documents)]
        groups.append(Group(frozenset(displays), root, resolved=index in RESOLVED_CAUSES))
        event_type = "CPU_SATURATED" if infrastructure else "SERVICE_RESPONSE_TIME_DEGRADED"
        events.append(
            event(
                f"38{index}00_1",
                event_type,
                title,
                root.id,
                root.name,
                at(begin - 1),
                properties={"dt.event.is_rootcause_relevant": "true"},
            )
        )
        metric = "builtin:host.cpu.usage" if infrastructure else "builtin:service.response.time"
        before, after = (30.0, 99.0) if infrastructure else (9_000.0, 2_600_000.0)
        metrics.setdefault(metric, {})[root.id] = series(at(begin - 1), before, after)
    redeliveries = shuffle.sample(opens, 25)
    burst = opens + redeliveries
    shuffle.shuffle(burst)
    shuffle.shuffle(ends)
    story.wave(*burst)
    story.wave(*ends)
    return story.scenario(
        "problem_storm",
        __doc__ or "",
        groups,
        entities=entities,
        events=events,
        metrics=metrics,
    )
