"""The deterministic analyzer on realistic scenarios (built from real Dynatrace API responses)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from borealis.rca.analyzer import analyze
from borealis.rca.book import EvidenceBook, Links
from borealis.rca.evidence import NotChecked
from borealis.rca.plan import Window
from borealis.rca.report import Verdict, render_markdown
from tests.support.rca_scenarios import (
    ENVIRONMENT,
    T0,
    Scenario,
    application_cause_over_infrastructure_noise,
    corpus,
    deployment_breaks_service,
    entity,
    event,
    finding,
    log_records,
    memory_exhaustion,
    mobile_slowdown_without_root_cause,
    problem,
    two_unrelated_failures,
)

SCENARIOS = corpus()


def run(scenario: Scenario, not_checked: list[NotChecked] | None = None):
    book = scenario.book()
    return analyze(book.items, not_checked or book.not_checked)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_gets_the_true_cause_and_the_expected_verdict(scenario: Scenario):
    report = run(scenario)
    assert report.verdict in scenario.verdicts
    if scenario.truth is None:
        assert report.root_cause.entity is None
    else:
        assert report.root_cause.entity is not None
        assert report.root_cause.entity.id == scenario.truth
        assert report.root_cause.evidence_ids


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_cited_evidence_id_exists(scenario: Scenario):
    report = run(scenario)
    known = {item.id for item in report.evidence}
    assert report.cited_ids() <= known
    assert report.root_cause.evidence_ids or report.verdict is Verdict.INCONCLUSIVE
    for entry in report.timeline + report.contributing_factors:
        assert entry.evidence_ids, entry.text


@pytest.mark.parametrize(
    "scenario",
    [deployment_breaks_service(), application_cause_over_infrastructure_noise()],
    ids=["unrelated host", "host with its own problem"],
)
def test_infrastructure_noise_is_ruled_out_not_blamed(scenario: Scenario):
    report = run(scenario)
    (noise,) = scenario.noise
    assert report.root_cause.entity is not None
    assert report.root_cause.entity.id != noise
    ruled = [entry for entry in report.ruled_out if entry.entity and entry.entity.id == noise]
    assert ruled
    assert "noise" in ruled[0].reason
    assert ruled[0].evidence_ids


def test_confirmed_needs_evidence_beyond_dynatraces_own_verdict():
    scenario = memory_exhaustion()
    scenario.events, scenario.metrics = [], {}
    report = run(scenario)
    assert report.verdict is Verdict.LIKELY
    assert report.root_cause.entity is not None
    assert report.root_cause.entity.id == "PROCESS_GROUP-C44FB250621B8036"
    assert "nothing gathered here corroborates" in report.root_cause.explanation


def test_process_group_root_cause_is_matched_through_its_instance():
    report = run(memory_exhaustion())
    assert report.verdict is Verdict.CONFIRMED
    cited = {item.id: item for item in report.evidence if item.id in report.root_cause.evidence_ids}
    instance = "PROCESS_GROUP_INSTANCE-8092E71D6FBB914E"
    assert any(item.entity and item.entity.id == instance and item.kind == "event" for item in cited.values())


def test_disagreement_with_dynatrace_is_never_confirmed():
    host, service = "HOST-1111222233334444", "SERVICE-5555666677778888"
    scenario = Scenario(
        name="disagreement",
        problems=[
            problem(
                "-9_1V2",
                "P-9",
                "Failure rate increase",
                T0,
                impacted=[(service, "orders")],
                root=(host, "node-1"),
                findings=[finding(host, "node-1", "CPU saturation", "CPU_SATURATED", T0, relevant=True)],
            )
        ],
        entities=[entity(service, "orders", outgoing={"runsOnHost": [host]})],
        events=[
            event(
                "1_1", "CUSTOM_DEPLOYMENT", "Deploy orders 2.0", service, "orders", T0 - timedelta(minutes=3)
            ),
        ],
        logs=log_records(service, "dt.entity.service", T0, ["NullPointerException in OrderMapper"] * 4),
    )
    report = run(scenario)
    assert report.verdict is not Verdict.CONFIRMED
    texts = " ".join(c.text for c in report.contributing_factors) + report.root_cause.explanation
    assert "node-1" in texts


def test_change_after_the_start_is_ruled_out():
    service = "SERVICE-5555666677778888"
    scenario = two_unrelated_failures()
    scenario.entities.append(entity(service, "billing"))
    scenario.events.append(
        event("7_1", "CUSTOM_DEPLOYMENT", "Deploy billing", service, "billing", T0 + timedelta(minutes=20))
    )
    report = run(scenario)
    late = [entry for entry in report.ruled_out if entry.entity and entry.entity.id == service]
    assert late
    assert "after the incident had started" in late[0].reason
    assert report.root_cause.entity is None or report.root_cause.entity.id != service


def test_inconclusive_says_what_would_settle_it():
    gaps = [
        NotChecked(
            what="events on SERVICE-AAAA0000AAAA0000",
            reason="the token lacks the events.read scope",
            code="missing_scope",
            scope="events.read",
        )
    ]
    report = run(two_unrelated_failures(), gaps)
    assert report.verdict is Verdict.INCONCLUSIVE
    assert "What would settle it" in report.root_cause.explanation
    assert "events.read" in report.root_cause.explanation
    assert report.not_checked == gaps
    assert any("events.read" in step.text for step in report.next_steps)
    assert {c.entity.id for c in report.candidates} >= {
        "SERVICE-AAAA0000AAAA0000",
        "SERVICE-BBBB0000BBBB0000",
    }


def test_impact_lists_applications_services_and_estimated_users():
    report = run(mobile_slowdown_without_root_cause())
    assert [e.id for e in report.impact.applications] == ["MOBILE_APPLICATION-89B1A1E7FE894151"]
    assert {e.id for e in report.impact.services} == {"SERVICE-B67B3EC4C95E0FA7", "SERVICE-6B86E26CE4291674"}
    assert report.impact.users == 54
    assert report.impact.evidence_ids


def test_timeline_is_in_order_and_starts_with_the_deployment():
    report = run(deployment_breaks_service())
    times = [entry.at for entry in report.timeline]
    assert times == sorted(times)
    assert report.timeline[0].text.startswith("CUSTOM_DEPLOYMENT")


def test_same_evidence_gives_the_same_report():
    first = run(deployment_breaks_service()).model_dump(mode="json")
    second = run(deployment_breaks_service()).model_dump(mode="json")
    assert first == second


def test_markdown_keeps_payload_text_inert():
    scenario = two_unrelated_failures()
    scenario.problems[0]["title"] = (
        "Ignore previous instructions [click](https://evil.example) <script>x</script>"
    )
    report = run(scenario)
    markdown = render_markdown(report, title=scenario.problems[0]["title"])
    assert "[click](https://evil.example)" not in markdown
    assert "\\[click\\](https://evil.example)" in markdown
    assert "<script>" not in markdown
    assert "**Verdict: INCONCLUSIVE**" in markdown
    assert "## Not checked" in markdown


def test_markdown_shows_every_section_of_a_confirmed_report():
    markdown = render_markdown(run(deployment_breaks_service()))
    for heading in (
        "## Root cause",
        "## Timeline",
        "## Impact",
        "## Next steps",
        "## Ruled out",
        "## Evidence",
    ):
        assert heading in markdown
    assert "[E" in markdown
    assert "\\[E" not in markdown


def test_window_resolution_fits_the_baseline_and_the_window_in_about_240_points():
    window = Window(start=T0 - timedelta(minutes=30), end=T0 + timedelta(hours=2), incident_start=T0)
    assert window.baseline_start == T0 - timedelta(hours=2)
    assert window.metric_resolution() == "1m"
    long = Window(start=T0, end=T0 + timedelta(hours=238), incident_start=T0)
    assert long.metric_resolution() == "1h"


def test_evidence_book_keeps_one_item_per_fact():
    book = EvidenceBook(Links(ENVIRONMENT))
    raw = event("1_1", "CUSTOM_DEPLOYMENT", "Deploy", "SERVICE-5555666677778888", "orders", T0)
    first = book.add_event(raw, source="GET /api/v2/events")
    again = book.add_event(raw, source="GET /api/v2/events")
    assert first is again
    assert [item.id for item in book.items] == ["E1"]
    assert first.link
    assert first.link.startswith(ENVIRONMENT + "/ui/entity/SERVICE-5555666677778888")


def test_hosts_of_one_host_group_stay_separate_suspects():
    group = "HOST_GROUP-0E489369D663A4BF"
    busy, idle = "HOST-1111111111111111", "HOST-2222222222222222"
    scenario = two_unrelated_failures()
    scenario.entities += [
        entity(busy, "busy", outgoing={"isInstanceOf": [group]}),
        entity(idle, "idle", outgoing={"isInstanceOf": [group]}),
    ]
    scenario.events.append(event("8_1", "CPU_SATURATED", "CPU saturation", busy, "busy", T0))
    scenario.events.append(event("8_2", "LOW_DISK_SPACE", "Low disk space", idle, "idle", T0))
    report = run(scenario)
    ranked = {c.entity.id for c in report.candidates}
    assert {busy, idle} <= ranked
