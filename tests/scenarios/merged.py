"""Merged problems: the pricing service and its database raise separate problems, then Dynatrace merges
the pricing problem into the database's (MERGED, with almost every field empty) and widens the
survivor's impact. The quote service's problem is merged too, but its OPEN was held up: its MERGED is
the first Borealis hears of it, and the OPEN with its entities comes later. An image resizer crashes
at the same time, unrelated."""

from __future__ import annotations

from tests.scenarios.model import CorrelationScenario, Story, Topology, at, group, host, process, service
from tests.support.rca_scenarios import event, series

PRICING = service("pricing")
PRICING_DB = service("pricing-db")
POSTGRES = process("postgres pricing-db-02")
DB_HOST = host("pricing-db-02")
QUOTE = service("quote")
RESIZER = process("image-resizer-9a0b")
MEDIA_NODE = host("k8s-node-07")


def merged_problems() -> CorrelationScenario:
    topology = Topology()
    topology.runs_in(PRICING_DB, POSTGRES, DB_HOST)
    topology.calls(PRICING, PRICING_DB)
    topology.calls(QUOTE, PRICING)
    topology.relate(RESIZER, "isProcessOf", MEDIA_NODE)

    story = Story()
    pricing = story.problem("P-3601", "Response time degradation", 0, impacted=[PRICING])
    database = story.problem(
        "P-3602",
        "Long-running database statements",
        1,
        impacted=[PRICING_DB],
        root=POSTGRES,
        event_type="DATABASE_CONNECTION_FAILURE",
    )
    quote = story.problem(
        "P-3603",
        "Failure rate increase",
        2,
        impacted=[QUOTE],
        severity="ERROR",
        event_type="SERVICE_ERROR_RATE_INCREASED",
    )
    resizer = story.problem(
        "P-3604",
        "Process crash",
        1,
        impacted=[RESIZER],
        root=RESIZER,
        severity="AVAILABILITY",
        impact="INFRASTRUCTURE",
        event_type="PROCESS_CRASHED",
    )
    late_quote = story.opened(quote)
    story.wave(story.opened(pricing), story.opened(database), story.opened(resizer))
    pricing_merged = story.merged(pricing, into=database, minute=5)
    quote_merged = story.merged(quote, into=database, minute=5)
    story.wave(pricing_merged, quote_merged, story.opened(database, minute=5), pricing_merged)
    story.wave(late_quote)
    story.wave(story.resolved(database, 18), story.resolved(resizer, 7))
    return story.scenario(
        "merged_problems",
        __doc__ or "",
        [group("P-3601", "P-3602", "P-3603", cause=POSTGRES), group("P-3604", cause=RESIZER)],
        entities=topology.documents(),
        events=[
            event(
                "36040_1",
                "PROCESS_CRASHED",
                "Process crash",
                RESIZER.id,
                RESIZER.name,
                at(1),
                end=at(7),
                properties={"dt.event.is_rootcause_relevant": "true"},
            ),
        ],
        metrics={
            "builtin:tech.generic.cpu.usage": {POSTGRES.id: series(at(1), 22.0, 96.0)},
            "builtin:service.response.time": {PRICING_DB.id: series(at(1), 4_000.0, 1_900_000.0)},
        },
    )
