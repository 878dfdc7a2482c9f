"""Two unrelated failures start in the same minute: the inventory service fails (and the catalog that
calls it slows), and the notifications worker crashes (and the notifications service fails). All four
carry the same tags and management zone, and two share a title: only the weak signals connect the pairs,
and together they stay below the threshold."""

from __future__ import annotations

from tests.scenarios.model import CorrelationScenario, Story, Topology, at, group, host, process, service
from tests.support.rca_scenarios import event, log_records, series

INVENTORY = service("inventory")
INVENTORY_PROCESS = process("inventory-7c9f")
CATALOG = service("catalog")
APP_NODE = host("k8s-node-04")
NOTIFICATIONS = service("notifications")
NOTIFICATIONS_WORKER = process("notifications-worker-5d2a")
WORKER_NODE = host("k8s-node-09")


def two_unrelated_at_once() -> CorrelationScenario:
    topology = Topology()
    topology.runs_in(INVENTORY, INVENTORY_PROCESS, APP_NODE)
    topology.calls(CATALOG, INVENTORY)
    topology.runs_in(NOTIFICATIONS, NOTIFICATIONS_WORKER, WORKER_NODE)

    story = Story()
    inventory = story.problem(
        "P-3201",
        "Failure rate increase",
        0,
        impacted=[INVENTORY],
        root=INVENTORY,
        severity="ERROR",
        event_type="SERVICE_ERROR_RATE_INCREASED",
    )
    catalog = story.problem("P-3202", "Response time degradation", 1, impacted=[CATALOG], root=INVENTORY)
    notifications = story.problem(
        "P-3203",
        "Failure rate increase",
        0,
        impacted=[NOTIFICATIONS],
        root=NOTIFICATIONS_WORKER,
        severity="ERROR",
        event_type="SERVICE_ERROR_RATE_INCREASED",
    )
    crash = story.problem(
        "P-3204",
        "Process crash",
        0.5,
        impacted=[NOTIFICATIONS_WORKER],
        root=NOTIFICATIONS_WORKER,
        severity="AVAILABILITY",
        impact="INFRASTRUCTURE",
        event_type="PROCESS_CRASHED",
    )
    story.wave(
        story.opened(notifications),
        story.opened(inventory),
        story.opened(catalog),
        story.opened(notifications),  # a redelivery
        story.opened(crash),
    )
    story.wave(
        story.resolved(crash, 4),
        story.resolved(inventory, 12),
        story.resolved(notifications, 9),
        story.resolved(catalog, 13),
    )
    return story.scenario(
        "two_unrelated_at_once",
        __doc__ or "",
        [group("P-3201", "P-3202", cause=INVENTORY), group("P-3203", "P-3204", cause=NOTIFICATIONS_WORKER)],
        entities=topology.documents(),
        events=[
            event(
                "32040_1",
                "PROCESS_CRASHED",
                "Process crash",
                NOTIFICATIONS_WORKER.id,
                NOTIFICATIONS_WORKER.name,
                at(0),
                end=at(4),
                properties={"dt.event.is_rootcause_relevant": "true"},
            ),
        ],
        logs=log_records(
            INVENTORY.id,
            "dt.entity.service",
            at(0),
            ["StockLevelRepository: could not obtain lock on row (timeout 5000 ms)"] * 3,
        ),
        metrics={
            "builtin:service.errors.total.rate": {
                INVENTORY.id: series(at(0), 0.3, 41.0),
                NOTIFICATIONS.id: series(at(0), 0.1, 18.0),
            },
        },
    )
