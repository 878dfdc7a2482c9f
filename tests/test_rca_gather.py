"""Evidence gathering through the real client against the fake Dynatrace: scopes, 429s, errors, budget."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from borealis.dynatrace.client import DynatraceClient
from borealis.rca.analyzer import analyze
from borealis.rca.evidence import EvidenceKind
from borealis.rca.gather import investigate
from borealis.rca.steps import Budget
from borealis.simulation import ALL_SCOPES
from tests.support.rca_scenarios import Scenario, corpus, database_host_saturation, deployment_breaks_service

SCENARIOS = [s for s in corpus() if s.entities]


@pytest.fixture
def connect(fake_dynatrace) -> Iterator:
    clients: list[DynatraceClient] = []

    def factory(scenario: Scenario, scopes=ALL_SCOPES, *, timeout: float = 5) -> DynatraceClient:
        scenario.load_into(fake_dynatrace)
        token = fake_dynatrace.add_token(scopes)
        client = DynatraceClient(
            fake_dynatrace.environment_url, token, allow_private=True, timeout=timeout, max_retry_wait=0.2
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_gathered_evidence_leads_to_the_true_cause(connect, scenario: Scenario):
    client = connect(scenario)
    investigation = investigate(client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES))
    report = analyze(investigation.book.items, investigation.book.not_checked)
    assert investigation.book.not_checked == []
    assert report.verdict in scenario.verdicts
    if scenario.truth:
        assert report.root_cause.entity is not None
        assert report.root_cause.entity.id == scenario.truth
    kinds = {item.kind for item in report.evidence}
    assert {EvidenceKind.PROBLEM, EvidenceKind.ENTITY, EvidenceKind.EVENT} <= kinds
    for item in report.evidence:
        assert item.source.startswith(("GET /api/v2/", "webhook"))
        assert item.link is None or item.link.startswith(client.environment_url)


def test_the_queries_use_the_window_an_entity_selector_and_a_fitting_resolution(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    investigate(connect(scenario), scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES))
    events = fake_dynatrace.requests_to("/api/v2/events")
    assert events
    assert all(r.params["entitySelector"].startswith('entityId("') for r in events)
    service_events = [r for r in events if "SERVICE-596877472CDAA92E" in r.params["entitySelector"]]
    assert service_events
    assert int(service_events[0].params["from"]) < scenario.problems[0]["startTime"] - 20 * 60 * 1000
    logs = fake_dynatrace.requests_to("/api/v2/logs/search")
    assert any(
        r.params["query"] == 'status="ERROR" AND dt.entity.service="SERVICE-596877472CDAA92E"' for r in logs
    )
    metrics = fake_dynatrace.requests_to("/api/v2/metrics/query")
    # One query per entity type reads the two-hour baseline and the incident window together.
    assert {r.params["resolution"] for r in metrics} == {"1m"}
    assert {int(r.params["from"]) for r in metrics} == {scenario.problems[0]["startTime"] - 2 * 3600 * 1000}
    assert len(metrics) == len({r.params["entitySelector"] for r in metrics})


def test_missing_scopes_known_from_the_token_go_to_not_checked_without_a_call(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    scopes = ["problems.read", "entities.read"]
    investigation = investigate(connect(scenario, scopes), scenario.facts(), now=scenario.now, scopes=scopes)
    gaps = investigation.book.not_checked
    assert {gap.scope for gap in gaps} == {"events.read", "logs.read", "metrics.read"}
    assert all(gap.code == "missing_scope" for gap in gaps)
    assert fake_dynatrace.requests_to("/api/v2/events") == []
    report = analyze(investigation.book.items, gaps)
    # Dynatrace names the service, but nothing here could corroborate it: not CONFIRMED.
    assert report.verdict.value != "CONFIRMED"
    assert any("events.read" in step.text for step in report.next_steps)


def test_scopes_refused_by_dynatrace_go_to_not_checked(connect):
    scenario = deployment_breaks_service()
    client = connect(scenario, ["problems.read", "entities.read", "metrics.read"])
    investigation = investigate(client, scenario.facts(), now=scenario.now, scopes=None)
    missing = {gap.scope for gap in investigation.book.not_checked if gap.code == "missing_scope"}
    assert missing == {"events.read", "logs.read"}


def test_without_problems_read_the_stored_record_is_the_evidence(connect):
    scenario = database_host_saturation()
    scopes = ["entities.read", "events.read", "logs.read", "metrics.read"]
    investigation = investigate(connect(scenario, scopes), scenario.facts(), now=scenario.now, scopes=scopes)
    problems = [item for item in investigation.book.items if item.kind is EvidenceKind.PROBLEM]
    assert len(problems) == 4
    assert all(item.source.startswith("webhook notification") for item in problems)
    report = analyze(investigation.book.items, investigation.book.not_checked)
    assert report.root_cause.entity is not None
    assert report.root_cause.entity.id == scenario.truth


def test_a_passing_429_is_retried(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    client = connect(scenario)
    fake_dynatrace.fail("/api/v2/events", 429, retry_after=0, times=1)
    investigation = investigate(client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES))
    assert investigation.book.not_checked == []
    assert any(item.kind is EvidenceKind.EVENT for item in investigation.book.items)


def test_a_lasting_429_is_not_checked_and_stops_further_calls(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    client = connect(scenario)
    fake_dynatrace.fail("/api/v2/events", 429, retry_after=0)
    investigation = investigate(client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES))
    codes = {gap.code for gap in investigation.book.not_checked}
    assert codes == {"rate_limited"}
    assert any("429" in gap.reason for gap in investigation.book.not_checked)
    assert fake_dynatrace.requests_to("/api/v2/logs/search") == []


def test_an_error_is_not_checked_and_the_rest_goes_on(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    client = connect(scenario)
    fake_dynatrace.fail("/api/v2/logs/search", 500)
    investigation = investigate(client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES))
    errors = [gap for gap in investigation.book.not_checked if gap.code == "error"]
    assert errors
    assert errors[0].what.startswith("error logs of")
    assert any(item.kind is EvidenceKind.METRIC for item in investigation.book.items)


def test_a_rejected_token_is_not_checked_and_stops_further_calls(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    client = connect(scenario)
    fake_dynatrace.fail("/api/v2/events", 401)
    investigation = investigate(client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES))
    first, *rest = investigation.book.not_checked
    assert first.code == "error"
    assert "does not recognize the token" in first.reason
    assert rest
    assert all(gap.reason.startswith("not attempted") for gap in rest)
    assert len(fake_dynatrace.requests_to("/api/v2/events")) == 1
    assert fake_dynatrace.requests_to("/api/v2/logs/search") == []


def test_the_budget_bounds_the_calls(connect, fake_dynatrace):
    scenario = database_host_saturation()
    client = connect(scenario)
    investigation = investigate(
        client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES), budget=Budget(max_calls=6)
    )
    assert investigation.calls == 6
    assert len(fake_dynatrace.requests) == 6
    assert any(gap.code == "budget" for gap in investigation.book.not_checked)


def test_an_unresponsive_environment_stops_the_gathering_after_one_timeout(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    client = connect(scenario, timeout=0.3)
    fake_dynatrace.slow("/api/v2/problems/*", 2)
    investigation = investigate(client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES))
    assert investigation.calls == 1
    gaps = investigation.book.not_checked
    assert gaps[0].code == "error"
    assert "did not answer" in gaps[0].reason
    assert all(gap.reason.startswith("not attempted") for gap in gaps[1:])
    report = analyze(investigation.book.items, gaps)
    assert report.evidence[0].source.startswith("webhook notification")


def test_entities_enrichment_cached_are_read_from_the_cache(connect, fake_dynatrace):
    scenario = deployment_breaks_service()
    client = connect(scenario)
    service = "SERVICE-596877472CDAA92E"
    cached = {service: next(e for e in scenario.entities if e["entityId"] == service)}
    investigation = investigate(
        client, scenario.facts(), now=scenario.now, scopes=list(ALL_SCOPES), cached_entities=cached
    )
    listed = [r.params["entitySelector"] for r in fake_dynatrace.requests_to("/api/v2/entities")]
    assert not any(service in selector for selector in listed)
    (item,) = [
        e for e in investigation.book.items if e.kind is EvidenceKind.ENTITY and e.entity.id == service
    ]
    assert item.source.startswith("entity cache")
    assert any("APPLICATION-3F2C4A7B9D1E5F60" in selector for selector in listed)
