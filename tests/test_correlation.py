"""Correlation scoring: each signal, the threshold, the explanations, and the defaults on a real cascade."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from borealis.incidents.correlation import (
    Candidate,
    CorrelationSettings,
    ProblemFacts,
    combine,
    related_incidents,
    score_pair,
    title_key,
    title_similarity,
    weak_signals_can_group,
)
from borealis.incidents.topology import NO_TOPOLOGY, StaticTopology, reach

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
DEFAULTS = CorrelationSettings()
ONLY = dict.fromkeys(
    ("root_cause", "entities", "topology", "tags", "management_zones", "title", "time"), False
)


def facts(pid: str, *, minutes: float = 0, **fields) -> ProblemFacts:
    fields.setdefault("title", "")
    for name in ("impacted_entities", "tags", "management_zones"):
        fields[name] = frozenset(fields.get(name, ()))
    return ProblemFacts(
        problem_id=pid, display_id=f"P-{pid}", start_time=T0 + timedelta(minutes=minutes), **fields
    )


def only(signal: str, **overrides) -> CorrelationSettings:
    return CorrelationSettings(**{**ONLY, signal: True, **overrides})


# -- each signal on its own ----------------------------------------------------------------------------


def test_shared_root_cause_alone_groups_and_says_so():
    a = facts("1", root_cause_entity="HOST-1A2B", impacted_entities={"SERVICE-1"})
    b = facts("2", minutes=2, root_cause_entity="HOST-1A2B", impacted_entities={"SERVICE-9"})
    match = score_pair(b, a, settings=DEFAULTS)
    assert match is not None
    assert match.score >= DEFAULTS.threshold
    assert match.strategy == "root_cause"
    assert match.reason == "shares root cause HOST-1A2B with P-1; started 2 min apart"


def test_root_cause_among_the_others_impacted_entities_groups():
    db = facts("1", root_cause_entity="PROCESS_GROUP_INSTANCE-DB", impacted_entities={"SERVICE-DB"})
    app = facts("2", minutes=3, impacted_entities={"PROCESS_GROUP_INSTANCE-DB", "SERVICE-APP"})
    match = score_pair(app, db, settings=only("root_cause"))
    assert match is not None
    assert match.score >= DEFAULTS.threshold
    assert match.reason == "impacts PROCESS_GROUP_INSTANCE-DB, the root cause of P-1"


def test_different_root_causes_do_not_fire_the_root_cause_signal():
    a = facts("1", root_cause_entity="HOST-A")
    b = facts("2", root_cause_entity="HOST-B")
    assert score_pair(b, a, settings=only("root_cause")) is None


def test_overlapping_impacted_entities_alone_group_by_id_not_by_sentence():
    a = facts("1", impacted_entities={"SERVICE-1", "SERVICE-2"})
    b = facts("2", impacted_entities={"SERVICE-2", "APPLICATION-7"})
    match = score_pair(b, a, settings=only("entities"))
    assert match is not None
    assert match.score >= DEFAULTS.threshold
    assert match.reason == "shares impacted entity SERVICE-2 with P-1"
    # Same names, different ids: not the same entity.
    c = facts("3", impacted_entities={"SERVICE-3"}, title="Problem 1")
    assert score_pair(c, a, settings=only("entities")) is None


def test_more_shared_entities_score_higher():
    a = facts("1", impacted_entities={"SERVICE-1", "SERVICE-2"})
    half = facts("2", impacted_entities={"SERVICE-1", "SERVICE-3"})
    full = facts("3", impacted_entities={"SERVICE-1", "SERVICE-2"})
    assert (
        score_pair(full, a, settings=only("entities")).score
        > score_pair(half, a, settings=only("entities")).score
    )


def test_topology_one_hop_groups_and_decays_with_hops():
    topology = StaticTopology([("SERVICE-WEB", "SERVICE-API"), ("SERVICE-API", "SERVICE-DB")])
    web = facts("1", impacted_entities={"SERVICE-WEB"})
    api = facts("2", impacted_entities={"SERVICE-API"})
    db = facts("3", impacted_entities={"SERVICE-DB"})
    settings = only("topology")
    one = score_pair(api, web, settings=settings, reached=reach(topology, api.entities, max_hops=2))
    two = score_pair(db, web, settings=settings, reached=reach(topology, db.entities, max_hops=2))
    assert one.score >= DEFAULTS.threshold > two.score > 0
    assert one.reason == "SERVICE-API is 1 hop from SERVICE-WEB of P-1"
    assert two.reason == "SERVICE-DB is 2 hops from SERVICE-WEB of P-1"
    beyond = score_pair(db, web, settings=settings, reached=reach(topology, db.entities, max_hops=1))
    assert beyond is None


def test_without_topology_the_topology_signal_is_silent():
    web = facts("1", impacted_entities={"SERVICE-WEB"})
    api = facts("2", impacted_entities={"SERVICE-API"})
    reached = reach(NO_TOPOLOGY, api.entities, max_hops=3)
    assert reached == {}
    assert score_pair(api, web, settings=only("topology"), reached=reached) is None


def test_shared_tags_or_zones_alone_never_reach_the_default_threshold():
    a = facts("1", tags={"env:prod", "team:pay"}, management_zones={"Payments"})
    b = facts("2", tags={"env:prod", "team:pay"}, management_zones={"Payments"})
    tags = score_pair(b, a, settings=only("tags"))
    zones = score_pair(b, a, settings=only("management_zones"))
    assert 0 < tags.score < DEFAULTS.threshold
    assert 0 < zones.score < DEFAULTS.threshold
    assert tags.reason == "shares tags env:prod, team:pay with P-1"
    assert zones.reason == "shares management zone Payments with P-1"


def test_weak_signals_together_stay_below_the_default_threshold():
    """Two unrelated hosts with the same kind of problem, same tags and zone, starting together."""
    a = facts(
        "1",
        title="CPU saturation",
        tags={"env:prod"},
        management_zones={"Prod"},
        impacted_entities={"HOST-A"},
    )
    b = facts(
        "2",
        title="CPU saturation",
        tags={"env:prod"},
        management_zones={"Prod"},
        impacted_entities={"HOST-B"},
    )
    match = score_pair(b, a, settings=DEFAULTS)
    assert match is not None
    assert match.score < DEFAULTS.threshold
    assert match.strategy == "title"


def test_weak_signals_can_group_only_under_a_low_threshold():
    assert not weak_signals_can_group(DEFAULTS)
    assert weak_signals_can_group(replace(DEFAULTS, threshold=0.3))
    assert not weak_signals_can_group(replace(DEFAULTS, threshold=0.3, tags=False, title=False))


def test_title_similarity_ignores_numbers_and_case():
    assert title_similarity("3 services slow", "5 Services slow") == 1.0
    assert title_similarity("Response time degradation", "Failure rate increase") == 0.0
    assert 0 < title_similarity("Response time degradation", "Response time increase") < 1
    assert title_key("3 services slow") == title_key("12 SERVICES slow") == "services slow"
    assert title_key("42") is None


def test_title_signal_fires_only_on_similar_titles():
    a = facts("1", title="Response time degradation")
    assert score_pair(facts("2", title="Response time degradation"), a, settings=only("title")).reason == (
        "title 100% similar to P-1's"
    )
    assert score_pair(facts("3", title="Disk full"), a, settings=only("title")) is None


def test_time_proximity_by_start_times_supports_but_never_groups_alone():
    a = facts("1", impacted_entities={"SERVICE-1"})
    near = facts("2", minutes=1, impacted_entities={"SERVICE-1"})
    far = facts("3", minutes=50, impacted_entities={"SERVICE-1"})
    near_match = score_pair(near, a, settings=DEFAULTS)
    far_match = score_pair(far, a, settings=DEFAULTS)
    assert near_match.score > far_match.score
    assert near_match.reason.endswith("; started 1 min apart")
    # Time alone (no other signal) is no relation.
    assert score_pair(facts("4", minutes=0), a, settings=only("time")) is None


def test_problems_outside_the_window_are_never_related():
    a = facts("1", root_cause_entity="HOST-1")
    late = facts("2", minutes=61, root_cause_entity="HOST-1")
    assert score_pair(late, a, settings=DEFAULTS) is None
    assert score_pair(late, a, settings=replace(DEFAULTS, window_minutes=90)) is not None


def test_unknown_start_times_are_not_held_against_a_pair():
    a = replace(facts("1", root_cause_entity="HOST-1"), start_time=None)
    b = facts("2", minutes=500, root_cause_entity="HOST-1")
    match = score_pair(b, a, settings=DEFAULTS)
    assert match is not None
    assert "started" not in match.reason


def test_switching_a_signal_off_removes_it_from_score_and_sentence():
    a = facts("1", root_cause_entity="HOST-1", tags={"env:prod"})
    b = facts("2", root_cause_entity="HOST-1", tags={"env:prod"})
    with_tags = score_pair(b, a, settings=DEFAULTS)
    without = score_pair(b, a, settings=replace(DEFAULTS, tags=False))
    assert with_tags.score > without.score
    assert "tag" in with_tags.reason
    assert "tag" not in without.reason
    assert score_pair(b, a, settings=replace(DEFAULTS, root_cause=False, tags=False)) is None


# -- threshold and choice --------------------------------------------------------------------------------


def test_threshold_decides_between_joining_and_staying_apart():
    a = facts("1", tags={"env:prod"}, title="Disk full")
    b = facts("2", tags={"env:prod"}, title="Disk full")
    candidates = [Candidate("incident-1", (1,), a)]
    assert related_incidents(b, candidates, settings=DEFAULTS) == []
    lowered = related_incidents(b, candidates, settings=replace(DEFAULTS, threshold=0.2))
    assert [item.incident_id for item in lowered] == ["incident-1"]


def test_related_incidents_come_best_first_then_oldest_first():
    new = facts("9", root_cause_entity="HOST-1", impacted_entities={"SERVICE-1"})
    weaker = Candidate(
        "incident-old", (1,), facts("1", impacted_entities={"SERVICE-1", "SERVICE-5", "SERVICE-6"})
    )
    stronger = Candidate("incident-new", (2,), facts("2", root_cause_entity="HOST-1"))
    found = related_incidents(new, [weaker, stronger], settings=DEFAULTS)
    assert [item.incident_id for item in found] == ["incident-new", "incident-old"]
    assert found[0].match.strategy == "root_cause"
    twin_old = Candidate("incident-a", (1,), facts("3", root_cause_entity="HOST-1"))
    twin_new = Candidate("incident-b", (2,), facts("4", root_cause_entity="HOST-1"))
    found = related_incidents(new, [twin_new, twin_old], settings=DEFAULTS)
    assert [item.incident_id for item in found] == ["incident-a", "incident-b"]


def test_an_incident_is_represented_by_its_best_problem():
    new = facts("9", root_cause_entity="HOST-1", impacted_entities={"SERVICE-1"})
    members = [
        Candidate("incident-1", (1,), facts("1", impacted_entities={"SERVICE-1", "SERVICE-7"})),
        Candidate("incident-1", (1,), facts("2", root_cause_entity="HOST-1")),
    ]
    (found,) = related_incidents(new, members, settings=DEFAULTS)
    assert found.match.other.problem_id == "2"


def test_combined_score_is_a_noisy_or_bounded_by_one():
    assert combine([]) == 0
    assert combine([0.5, 0.5]) == 0.75
    assert combine([1.0, 0.3]) == 1.0
    assert combine([0.9] * 20) <= 1.0


def test_reach_walks_both_directions_nearest_first_and_is_bounded():
    topology = StaticTopology([("A", "B"), ("B", "C"), ("C", "D"), ("X", "C")])
    reached = reach(topology, {"A"}, max_hops=3)
    assert {entity: hit.hops for entity, hit in reached.items()} == {"B": 1, "C": 2, "D": 3, "X": 3}
    assert all(hit.origin == "A" for hit in reached.values())
    assert len(reach(topology, {"A"}, max_hops=3, limit=2)) == 2


# -- defaults on realistic cascades -----------------------------------------------------------------------


def group(problems: list[ProblemFacts], *, settings=DEFAULTS, topology=NO_TOPOLOGY) -> list[set[str]]:
    """Sequential grouping as the service does it: join the best related incident, fold in any other
    related incident (the new problem bridges them), or open a new one."""
    incidents: dict[int, list[ProblemFacts]] = {}
    for number, problem in enumerate(problems):
        candidates = [
            Candidate(str(incident_id), (incident_id,), member)
            for incident_id, members in incidents.items()
            for member in members
        ]
        reached = reach(topology, problem.entities, max_hops=settings.max_hops)
        found = related_incidents(problem, candidates, settings=settings, reached=reached)
        if not found:
            incidents[number] = [problem]
            continue
        target = int(found[0].incident_id)
        incidents[target].append(problem)
        for other in found[1:]:
            incidents[target].extend(incidents.pop(int(other.incident_id)))
    return sorted(({p.problem_id for p in members} for members in incidents.values()), key=min)


def database_cascade() -> list[ProblemFacts]:
    """A database host saturates; its database service slows; the services and the web app above it
    fail. Dynatrace names the host as root cause on some problems and not on others."""
    return [
        facts(
            "db-host",
            title="CPU saturation",
            root_cause_entity="HOST-DB1",
            impacted_entities={"HOST-DB1"},
            tags={"env:prod"},
            management_zones={"Shop"},
        ),
        facts(
            "db-svc",
            minutes=2,
            title="Response time degradation",
            root_cause_entity="HOST-DB1",
            impacted_entities={"SERVICE-POSTGRES", "PROCESS_GROUP_INSTANCE-PG"},
            tags={"env:prod"},
        ),
        facts(
            "checkout",
            minutes=4,
            title="Failure rate increase",
            impacted_entities={"SERVICE-CHECKOUT", "SERVICE-POSTGRES"},
            tags={"env:prod"},
        ),
        facts(
            "frontend",
            minutes=6,
            title="Response time degradation",
            impacted_entities={"APPLICATION-SHOP", "SERVICE-CHECKOUT"},
            tags={"env:prod"},
        ),
    ]


def unrelated_at_the_same_time() -> list[ProblemFacts]:
    return [
        facts(
            "disk",
            minutes=1,
            title="Low disk space",
            root_cause_entity="HOST-BATCH7",
            impacted_entities={"HOST-BATCH7"},
            tags={"env:prod"},
            management_zones={"Shop"},
        ),
        facts(
            "cert",
            minutes=3,
            title="Response time degradation",
            impacted_entities={"SERVICE-AUTH"},
            tags={"env:prod"},
        ),
    ]


def test_defaults_group_a_real_cascade_without_topology():
    assert group(database_cascade()) == [{"db-host", "db-svc", "checkout", "frontend"}]


def test_defaults_keep_unrelated_problems_apart_even_when_they_start_together():
    groups = group(database_cascade() + unrelated_at_the_same_time())
    assert {"disk"} in groups
    assert {"cert"} in groups
    assert {"db-host", "db-svc", "checkout", "frontend"} in groups


def test_topology_joins_a_cascade_that_shares_no_entity():
    """The app tier's problem names no database entity; only the entity graph links it."""
    problems = [
        facts(
            "db",
            title="Response time degradation",
            root_cause_entity="SERVICE-DB",
            impacted_entities={"SERVICE-DB"},
        ),
        facts("orders", minutes=3, title="Failure rate increase", impacted_entities={"SERVICE-ORDERS"}),
    ]
    topology = StaticTopology([("SERVICE-ORDERS", "SERVICE-DB")])
    assert group(problems) == [{"db"}, {"orders"}]
    assert group(problems, topology=topology) == [{"db", "orders"}]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_a_cascade_groups_the_same_whatever_the_arrival_order(order):
    cascade = database_cascade()
    assert group([cascade[i] for i in order]) == [{"db-host", "db-svc", "checkout", "frontend"}]
