"""A database host saturates: the database service slows, the services calling it and the web
application above them raise their own problems; a backup host runs out of disk at the same time."""

from __future__ import annotations

from tests.scenarios.model import (
    CorrelationScenario,
    Story,
    Topology,
    application,
    at,
    group,
    host,
    process,
    service,
)
from tests.support.rca_scenarios import event, series

DB_HOST = host("orders-db-01")
POSTGRES = process("postgres orders-db-01")
ORDERS_DB = service("orders-db")
CHECKOUT = service("checkout")
CART = service("cart")
SHOP_WEB = application("shop web")
BACKUP = host("backup-03")


def database_host_saturation() -> CorrelationScenario:
    topology = Topology()
    topology.runs_in(ORDERS_DB, POSTGRES, DB_HOST)
    topology.calls(CHECKOUT, ORDERS_DB)
    topology.calls(CART, ORDERS_DB)
    topology.calls(SHOP_WEB, CHECKOUT, CART)
    topology.add(BACKUP)

    story = Story()
    saturation = story.problem(
        "P-3101",
        "CPU saturation",
        0,
        impacted=[DB_HOST],
        root=DB_HOST,
        severity="RESOURCE_CONTENTION",
        impact="INFRASTRUCTURE",
        event_type="CPU_SATURATED",
    )
    database = story.problem("P-3102", "Response time degradation", 2, impacted=[ORDERS_DB], root=DB_HOST)
    checkout = story.problem("P-3103", "Response time degradation", 3, impacted=[CHECKOUT])
    cart = story.problem(
        "P-3104", "Failure rate increase", 4, impacted=[CART], severity="ERROR", event_type="SERVICE_ERROR"
    )
    web = story.problem(
        "P-3105",
        "User action duration degradation",
        5,
        impacted=[SHOP_WEB],
        impact="APPLICATION",
        event_type="APPLICATION_SLOWDOWN",
    )
    disk = story.problem(
        "P-3190",
        "Low disk space",
        3,
        impacted=[BACKUP],
        root=BACKUP,
        severity="RESOURCE_CONTENTION",
        impact="INFRASTRUCTURE",
        event_type="LOW_DISK_SPACE",
    )
    first_checkout = story.opened(checkout)
    # The web application's problem arrives first, before anything it relates to.
    story.wave(
        story.opened(web),
        first_checkout,
        story.opened(saturation),
        story.opened(saturation),  # a redelivery
        story.opened(disk),
        story.opened(cart),
        story.opened(database),
    )
    # Dynatrace finds checkout impacted by the database's problem too, and new evidence on cart.
    database["impactedEntities"].append(
        {"entityId": {"id": CHECKOUT.id, "type": "SERVICE"}, "name": "checkout"}
    )
    story.wave(story.opened(database, minute=6), story.opened(cart, minute=7))
    story.wave(
        story.resolved(saturation, 21),
        story.resolved(checkout, 23),
        first_checkout,  # a late redelivery of the first OPEN: stale, must not reopen anything
        story.resolved(database, 22),
        story.resolved(checkout, 23),  # a redelivery
        story.resolved(web, 25),
        story.resolved(cart, 24),
        story.resolved(disk, 30),
    )
    return story.scenario(
        "database_host_saturation",
        __doc__ or "",
        [
            group("P-3101", "P-3102", "P-3103", "P-3104", "P-3105", cause=DB_HOST),
            group("P-3190", cause=BACKUP),
        ],
        entities=topology.documents(),
        events=[
            event(
                "31010_1",
                "CPU_SATURATED",
                "CPU saturation",
                DB_HOST.id,
                DB_HOST.name,
                at(-1),
                properties={"dt.event.is_rootcause_relevant": "true"},
            ),
            event("31900_1", "LOW_DISK_SPACE", "Low disk space", BACKUP.id, BACKUP.name, at(2)),
        ],
        metrics={
            "builtin:host.cpu.usage": {DB_HOST.id: series(at(-1), 34.0, 99.0)},
        },
    )
