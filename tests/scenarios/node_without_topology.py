"""A Kubernetes node runs out of memory, seen through a token without ``entities.read``: the entity
cache stays empty, so only Dynatrace's own ids can group. Dynatrace names the node as root cause of the
cart API's slowdown; the failure problem shares the cart API with it, and the wishlist worker's crash
shares the wishlist service with that one. An unrelated search API slows down at the same minute with
the same title, tags and zone."""

from __future__ import annotations

from tests.scenarios.model import CorrelationScenario, Story, at, group, host, process, service
from tests.support.rca_scenarios import event, series

NODE = host("k8s-node-12")
CART_API = service("cart-api")
WISHLIST = service("wishlist")
WISHLIST_WORKER = process("wishlist-worker-2b7e")
SEARCH_API = service("search-api")


def node_memory_without_topology() -> CorrelationScenario:
    story = Story()
    memory = story.problem(
        "P-3701",
        "Memory saturation",
        0,
        impacted=[NODE],
        root=NODE,
        severity="RESOURCE_CONTENTION",
        impact="INFRASTRUCTURE",
        event_type="MEMORY_SATURATED",
    )
    slow = story.problem("P-3702", "Response time degradation", 2, impacted=[CART_API], root=NODE)
    failing = story.problem(
        "P-3703",
        "Failure rate increase",
        3,
        impacted=[CART_API, WISHLIST],
        severity="ERROR",
        event_type="SERVICE_ERROR_RATE_INCREASED",
    )
    crash = story.problem(
        "P-3704",
        "Process crash",
        4,
        impacted=[WISHLIST_WORKER, WISHLIST],
        severity="AVAILABILITY",
        event_type="PROCESS_CRASHED",
    )
    search = story.problem("P-3705", "Response time degradation", 2, impacted=[SEARCH_API])
    story.wave(
        story.opened(crash),
        story.opened(search),
        story.opened(failing),
        story.opened(memory),
        story.opened(slow),
        story.opened(crash),  # a redelivery
    )
    story.wave(story.resolved(crash, 9), story.resolved(search, 6))
    story.wave(story.resolved(failing, 12), story.resolved(slow, 13), story.resolved(memory, 15))
    return story.scenario(
        "node_memory_without_topology",
        __doc__ or "",
        [group("P-3701", "P-3702", "P-3703", "P-3704", cause=NODE), group("P-3705", cause=None)],
        topology=False,
        events=[
            event(
                "37010_1",
                "MEMORY_SATURATED",
                "Memory saturation",
                NODE.id,
                NODE.name,
                at(-1),
                properties={"dt.event.is_rootcause_relevant": "true"},
            ),
        ],
        metrics={"builtin:host.mem.usage": {NODE.id: series(at(-1), 62.0, 99.0)}},
    )
