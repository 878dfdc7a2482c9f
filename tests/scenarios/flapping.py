"""A flapping problem: the log collector's disk fills and drains, so Dynatrace opens, closes and reopens
the same problem three times (with redeliveries and a stale OPEN in between); while it is open the
last time, the log shipper on that host fails too and joins it. Meanwhile the reports API slows down,
recovers, and slows down again half an hour later: Dynatrace raises a new problem, and since the first
incident has resolved by then, the recurrence is a new incident (a resolved incident takes no new
problems). Everything ends resolved."""

from __future__ import annotations

from tests.scenarios.model import CorrelationScenario, Story, Topology, at, group, host, process, service
from tests.support.rca_scenarios import event

COLLECTOR = host("log-collector-02")
SHIPPER = process("log-shipper")
REPORTS = service("reports-api")
REPORTS_PROCESS = process("reports-api-44c1")
REPORTS_NODE = host("k8s-node-11")


def flapping_problem() -> CorrelationScenario:
    topology = Topology()
    topology.relate(SHIPPER, "isProcessOf", COLLECTOR)
    topology.runs_in(REPORTS, REPORTS_PROCESS, REPORTS_NODE)

    story = Story()
    disk = story.problem(
        "P-3401",
        "Low disk space",
        0,
        impacted=[COLLECTOR],
        root=COLLECTOR,
        severity="RESOURCE_CONTENTION",
        impact="INFRASTRUCTURE",
        event_type="LOW_DISK_SPACE",
    )
    slow = story.problem("P-3411", "Response time degradation", 2, impacted=[REPORTS])
    first_open = story.opened(disk)
    story.wave(first_open, story.opened(slow))
    first_end = story.resolved(disk, 6)
    story.wave(first_end, story.resolved(slow, 8))
    story.wave(story.reopened(disk, 11), first_end)  # the old RESOLVED again: a duplicate
    story.wave(story.resolved(disk, 15), first_open)  # the first OPEN again: stale
    again = story.problem("P-3412", "Response time degradation", 31, impacted=[REPORTS])
    story.wave(story.reopened(disk, 21), story.opened(again))
    shipper = story.problem(
        "P-3402",
        "Process unavailable",
        24,
        impacted=[SHIPPER],
        root=COLLECTOR,
        severity="AVAILABILITY",
        impact="INFRASTRUCTURE",
        event_type="PROCESS_UNAVAILABLE",
    )
    story.wave(story.opened(shipper), story.opened(disk, minute=23))
    story.wave(story.resolved(shipper, 28), story.resolved(disk, 29), story.resolved(again, 40))
    return story.scenario(
        "flapping_problem",
        __doc__ or "",
        [
            group("P-3401", "P-3402", cause=COLLECTOR),
            group("P-3411", cause=None),
            group("P-3412", cause=None),
        ],
        entities=topology.documents(),
        events=[
            event(
                "34010_1", "LOW_DISK_SPACE", "Low disk space", COLLECTOR.id, COLLECTOR.name, at(0), end=at(6)
            ),
            event(
                "34010_2",
                "LOW_DISK_SPACE",
                "Low disk space",
                COLLECTOR.id,
                COLLECTOR.name,
                at(11),
                end=at(15),
            ),
            event(
                "34010_3",
                "LOW_DISK_SPACE",
                "Low disk space",
                COLLECTOR.id,
                COLLECTOR.name,
                at(21),
                end=at(29),
                properties={"dt.event.is_rootcause_relevant": "true"},
            ),
        ],
    )
