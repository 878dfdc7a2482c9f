"""The walk through the real client against the fake Dynatrace: batched calls, depth and size caps,
paging, missing scopes, and the call budget of a large environment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from borealis.dynatrace.client import DynatraceClient
from borealis.rca.analyzer import analyze
from borealis.rca.evidence import entity_type_of
from borealis.rca.gather import Investigation, investigate
from borealis.rca.plan import ProblemFacts
from borealis.rca.report import Verdict
from borealis.rca.steps import Budget
from borealis.simulation import ALL_SCOPES, Case, generate, load, problem_on_cause

# A latency fault two calls below the customer-facing service, in an environment of about 100 services.
SEED = 14


@pytest.fixture
def environment(fake_dynatrace) -> Iterator:
    clients: list[DynatraceClient] = []

    def factory(case: Case, scopes=ALL_SCOPES) -> DynatraceClient:
        load(case, fake_dynatrace)
        client = DynatraceClient(
            fake_dynatrace.environment_url, fake_dynatrace.add_token(scopes), allow_private=True, timeout=5
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


def run(client: DynatraceClient, case: Case, **kwargs) -> Investigation:
    kwargs.setdefault("scopes", list(ALL_SCOPES))
    return investigate(client, [ProblemFacts.from_problem(case.problem)], now=case.now, **kwargs)


def large_case() -> Case:
    """The common case: Davis names no root cause."""
    case = generate(SEED, fault="latency", traffic="high", traps=(), services=100)
    assert case.services >= 60
    assert case.depth >= 2
    case.problem["rootCauseEntity"] = None
    details = case.problem.get("evidenceDetails", {}).get("details", [])
    kept = [d for d in details if d.get("entity", {}).get("entityId", {}).get("id") == case.symptom]
    for detail in kept:
        detail["rootCauseRelevant"] = False
    case.problem["evidenceDetails"] = {"totalCount": len(kept), "details": kept}
    return case


def test_the_walk_finds_the_cause_below_the_symptom_in_at_most_twenty_calls(environment, fake_dynatrace):
    case = large_case()
    investigation = run(environment(case), case)
    report = analyze(investigation.book.items, investigation.book.not_checked)
    assert report.candidates[0].entity.id in case.accepted
    assert report.walk.path[0].entity.id == case.symptom
    assert report.walk.path[-1].entity.id in case.accepted
    assert len(fake_dynatrace.requests) == investigation.calls <= 20
    listed = fake_dynatrace.requests_to("/api/v2/entities")
    assert listed
    for request in listed:
        assert "+fromRelationships" in request.params["fields"]
        ids = request.params["entitySelector"][len('entityId("') : -2].split('","')
        assert len({entity_type_of(i) for i in ids}) == 1  # the API's rule: one type per selector
        assert len(request.params["entitySelector"]) <= 2000
    metrics = fake_dynatrace.requests_to("/api/v2/metrics/query")
    assert any("builtin:service.requestCount.total" in r.params["metricSelector"] for r in metrics)


def test_the_depth_cap_stops_the_walk_and_says_what_it_left(environment, fake_dynatrace):
    case = large_case()
    investigation = run(environment(case), case, budget=Budget(max_depth=1))
    gaps = [gap for gap in investigation.book.not_checked if "calls below" in gap.what]
    assert gaps
    assert gaps[0].code == "budget"
    assert gaps[0].entity_ids
    assert max(investigation.depth_of.values()) == 1
    report = analyze(investigation.book.items, investigation.book.not_checked)
    # What lies below the cap is unknown, so the report cannot be sure of a leader above it.
    assert report.verdict is Verdict.INCONCLUSIVE


def test_the_size_cap_keeps_the_services_and_says_how_many_were_left(environment):
    case = large_case()
    investigation = run(environment(case), case, budget=Budget(max_entities=12))
    assert len(investigation.depth_of) == 12
    cut = [
        gap for gap in investigation.book.not_checked if gap.code == "budget" and "more entities" in gap.what
    ]
    assert cut
    assert sum(len(gap.entity_ids) for gap in cut) >= 1
    assert all(entity_type_of(e) == "SERVICE" for e in investigation.depth_of)


def test_entities_are_read_page_by_page(environment, fake_dynatrace):
    case = large_case()
    investigation = run(environment(case), case, budget=Budget(entity_page_size=5))
    pages = [r for r in fake_dynatrace.requests_to("/api/v2/entities") if "nextPageKey" in r.params]
    assert pages
    assert all(set(r.params) == {"nextPageKey"} for r in pages)
    assert len(fake_dynatrace.requests) == investigation.calls
    whole = run(environment(case), case)
    entities = {e.entity.id for e in investigation.book.items if e.kind == "entity"}
    assert entities == {e.entity.id for e in whole.book.items if e.kind == "entity"}


def test_without_entities_read_the_walk_cannot_go_below_and_says_so(environment, fake_dynatrace):
    case = large_case()
    scopes = [s for s in ALL_SCOPES if s != "entities.read"]
    investigation = run(environment(case, scopes), case, scopes=scopes)
    assert fake_dynatrace.requests_to("/api/v2/entities") == []
    missing = [gap for gap in investigation.book.not_checked if gap.scope == "entities.read"]
    assert missing
    assert case.symptom in missing[0].entity_ids
    report = analyze(investigation.book.items, investigation.book.not_checked)
    assert report.verdict is Verdict.INCONCLUSIVE
    assert any("entities.read" in step.text for step in report.next_steps)


def test_without_metrics_read_nothing_is_judged_and_nothing_is_claimed(environment, fake_dynatrace):
    case = large_case()
    scopes = [s for s in ALL_SCOPES if s != "metrics.read"]
    investigation = run(environment(case, scopes), case, scopes=scopes)
    assert fake_dynatrace.requests_to("/api/v2/metrics/query") == []
    report = analyze(investigation.book.items, investigation.book.not_checked)
    assert report.verdict is Verdict.INCONCLUSIVE
    assert report.walk.path == []


# Seeds (tuning set) whose cause is a service two calls below the symptom, Davis naming none.
CAUSE_ALSO_OPENED = [(0, "traffic_collapse"), (2, "latency"), (19, "latency"), (39, "errors")]


@pytest.mark.parametrize(("seed", "fault"), CAUSE_ALSO_OPENED)
def test_a_problem_opened_on_the_cause_too_leaves_it_likely(environment, seed, fault):
    """Dynatrace often opens a problem on the failing dependency as well as on the service above it: the
    cause is then impacted itself, and explaining the symptom above it still makes it the cause."""
    case = generate(seed, fault=fault)
    assert case.truth != case.symptom
    assert not case.davis_names_cause
    client = environment(case)
    problems = [ProblemFacts.from_problem(case.problem), ProblemFacts.from_problem(problem_on_cause(case))]
    investigation = investigate(client, problems, now=case.now, scopes=list(ALL_SCOPES))
    report = analyze(investigation.book.items, investigation.book.not_checked)
    assert report.candidates[0].entity.id in case.accepted
    assert report.verdict == Verdict.LIKELY
