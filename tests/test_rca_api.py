"""RCA end to end: webhooks into the live server, evidence from the fake Dynatrace, jobs, the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from borealis.jobs.registry import register_handlers
from borealis.jobs.worker import Worker
from borealis.jobstore import leases as jobs_leases
from borealis.jobstore.models import Job
from borealis.rca import service as rca_service
from borealis.rca.models import RcaRun
from borealis.simulation import ALL_SCOPES
from borealis.sync.service import ENRICH_JOB
from tests.fakes.llm import echo_hypothesis, hallucinating, tools_then
from tests.support.builders import webhook_body
from tests.support.jobs import run_pending
from tests.support.rca_scenarios import (
    Scenario,
    database_host_saturation,
    deployment_breaks_service,
    two_unrelated_failures,
)
from tests.support.shared import WEBHOOK_SAMPLES
from tests.support.waiting import wait_until

TEST_RUN = WEBHOOK_SAMPLES / "webhook-official-docs-testrun-example.json"


class Setup:
    """One user connected to the fake Dynatrace, with its webhook URL."""

    def __init__(self, app, account, fake_dynatrace, client, scopes=ALL_SCOPES) -> None:
        self.app = app
        self.account = account
        self.fake = fake_dynatrace
        self.client = client
        token = fake_dynatrace.add_token(scopes)
        answer = account.client.post(
            "/dynatrace/connect", json={"environmentUrl": fake_dynatrace.environment_url, "apiToken": token}
        )
        assert answer.status_code == 200, answer.text
        hook = account.client.get("/dynatrace/webhook-url")
        assert hook.status_code == 200, hook.text
        self.webhook = hook.json()["webhookUrl"]

    def enable_rca(self, enabled: bool = True) -> None:
        answer = self.account.client.put("/dynatrace/rca-settings", json={"rcaEnabled": enabled})
        assert answer.status_code == 200, answer.text

    def deliver(self, scenario: Scenario, *, load: bool = True) -> list[int]:
        """Load the scenario into Dynatrace and deliver its problems; returns their incident ids."""
        if load:
            scenario.load_into(self.fake)
        ids = []
        for problem in scenario.problems:
            answer = self.client.post(self.webhook, json=webhook_body(problem))
            assert answer.status_code == 200, answer.text
            alert = self.account.client.get(f"/dynatrace/alerts/{answer.json()['alertId']}")
            ids.append(alert.json()["incidentId"])
        return ids

    def rca(self, incident_id: int) -> dict[str, Any]:
        answer = self.account.client.get(f"/incidents/{incident_id}/rca")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def run_jobs(self, *, settings=None, later: timedelta = timedelta(minutes=5)) -> list[Any]:
        """Run the queued RCA jobs as a worker would, ``later`` from now (past any debounce)."""
        return run_pending(self.app, settings=settings, later=later)


@pytest.fixture
def setup(app, account, fake_dynatrace, client) -> Setup:
    return Setup(app, account, fake_dynatrace, client)


def rca_jobs(database) -> list[Job]:
    with database.session() as session:
        return list(session.scalars(sa.select(Job).where(Job.kind == "rca")))


def kinds(detail: dict[str, Any]) -> list[str]:
    return [event["kind"] for event in detail["timeline"]]


def test_a_new_incident_gets_an_evidence_backed_report(setup):
    setup.enable_rca()
    scenario = deployment_breaks_service()
    (incident_id,) = setup.deliver(scenario)
    queued = setup.rca(incident_id)
    assert queued["status"] == "queued"
    assert queued["trigger"] == "new_incident"
    assert queued["report"] is None

    setup.run_jobs()
    rca = setup.rca(incident_id)
    assert rca["status"] == "done"
    assert rca["verdict"] == "CONFIRMED"
    assert rca["analyzer"] == "deterministic"
    report = rca["report"]
    assert report["rootCause"]["entity"]["id"] == scenario.truth
    ids = {item["id"] for item in report["evidence"]}
    assert set(report["rootCause"]["evidenceIds"]) <= ids
    assert report["notChecked"] == []
    sources = " ".join(item["source"] for item in report["evidence"])
    for path in ("/api/v2/problems/", "/api/v2/entities?", "/api/v2/events", "/api/v2/logs/search"):
        assert path in sources
    assert "**Verdict: CONFIRMED**" in rca["markdown"]
    assert rca["startedAt"]
    assert rca["finishedAt"]
    assert rca["usage"]["dynatraceCalls"] > 0

    detail = setup.account.client.get(f"/incidents/{incident_id}").json()
    assert detail["rca"]["verdict"] == "CONFIRMED"
    assert detail["rca"]["rootCause"]["id"] == scenario.truth
    assert detail["rca"]["link"] == f"/incidents/{incident_id}/rca"
    assert {"rca_queued", "rca_started", "rca_done"} <= set(kinds(detail))


def test_without_rca_enabled_nothing_runs_until_asked(setup):
    (incident_id,) = setup.deliver(deployment_breaks_service())
    answer = setup.account.client.get(f"/incidents/{incident_id}/rca")
    assert answer.status_code == 404
    assert "POST /incidents" in answer.json()["error"]["message"]
    assert rca_jobs(setup.app.state.database) == []

    started = setup.account.client.post(f"/incidents/{incident_id}/rca")
    assert started.status_code == 202
    assert started.json()["status"] == "queued"
    assert started.json()["trigger"] == "on_demand"
    setup.run_jobs(later=timedelta(0))
    assert setup.rca(incident_id)["status"] == "done"


def test_a_test_notification_never_starts_an_rca(setup):
    setup.enable_rca()
    answer = setup.client.post(setup.webhook, json=json.loads(TEST_RUN.read_text()))
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "test"
    assert setup.account.client.get("/incidents").json()["total"] == 0
    assert rca_jobs(setup.app.state.database) == []
    with setup.app.state.database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(RcaRun)) == 0


def test_the_rate_limit_skips_visibly_and_the_on_demand_run_still_works(setup, monkeypatch):
    limited = setup.app.state.settings.model_copy(update={"rca_rate_limit_per_hour": 1})
    monkeypatch.setattr(rca_service, "get_settings", lambda: limited)
    setup.enable_rca()
    first, second = deployment_breaks_service(), two_unrelated_failures()
    (first_id,) = setup.deliver(first)
    (second_id,) = setup.deliver(second)
    assert first_id != second_id
    assert setup.rca(first_id)["status"] == "queued"
    skipped = setup.rca(second_id)
    assert skipped["status"] == "skipped"
    assert "BOREALIS_RCA_RATE_LIMIT_PER_HOUR" in skipped["reason"]
    assert f"POST /incidents/{second_id}/rca" in skipped["reason"]
    detail = setup.account.client.get(f"/incidents/{second_id}").json()
    assert detail["rca"]["status"] == "skipped"
    assert "rca_skipped" in kinds(detail)

    assert setup.account.client.post(f"/incidents/{second_id}/rca").status_code == 202
    setup.run_jobs()
    done = setup.rca(second_id)
    assert done["status"] == "done"
    assert done["verdict"] == "INCONCLUSIVE"
    assert [run["status"] for run in done["history"]] == ["done", "skipped"]


def test_missing_scopes_go_to_not_checked(app, account, fake_dynatrace, client):
    setup = Setup(app, account, fake_dynatrace, client, scopes=["problems.read", "entities.read"])
    setup.enable_rca()
    (incident_id,) = setup.deliver(deployment_breaks_service())
    setup.run_jobs()
    rca = setup.rca(incident_id)
    assert rca["status"] == "done"
    gaps = rca["report"]["notChecked"]
    assert {gap["scope"] for gap in gaps} == {"events.read", "logs.read", "metrics.read"}
    assert all(gap["code"] == "missing_scope" for gap in gaps)
    assert rca["verdict"] != "CONFIRMED"
    assert "events.read" in rca["markdown"]


def test_a_lasting_429_is_not_checked_and_the_report_still_comes(setup):
    setup.enable_rca()
    setup.fake.fail("/api/v2/events", 429, retry_after=0)
    (incident_id,) = setup.deliver(deployment_breaks_service())
    setup.run_jobs()
    rca = setup.rca(incident_id)
    assert rca["status"] == "done"
    gaps = rca["report"]["notChecked"]
    assert gaps
    assert {gap["code"] for gap in gaps} == {"rate_limited"}
    assert len(setup.fake.requests_to("/api/v2/events")) > 1  # retried before giving up


def test_a_failed_rca_job_records_the_reason(setup, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the evidence store is on fire")

    monkeypatch.setattr(rca_service, "investigate", broken)
    setup.enable_rca()
    (incident_id,) = setup.deliver(deployment_breaks_service())
    outcomes = setup.run_jobs(later=timedelta(hours=2))
    assert len(outcomes) == 3
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)
    rca = setup.rca(incident_id)
    assert rca["status"] == "failed"
    assert "the evidence store is on fire" in rca["reason"]
    assert rca["attempts"] == 3
    detail = setup.account.client.get(f"/incidents/{incident_id}").json()
    assert "rca_failed" in kinds(detail)


def test_a_disconnected_environment_still_gets_a_report_from_the_stored_problems(setup):
    setup.enable_rca()
    (incident_id,) = setup.deliver(deployment_breaks_service())
    assert setup.account.client.delete("/dynatrace/disconnect").status_code == 200
    setup.run_jobs()
    rca = setup.rca(incident_id)
    assert rca["status"] == "done"
    assert any("not connected" in gap["reason"] for gap in rca["report"]["notChecked"])
    assert rca["verdict"] != "CONFIRMED"


def test_an_incident_that_gains_problems_is_analysed_again_after_a_pause(setup):
    setup.enable_rca()
    scenario = database_host_saturation()
    for later in scenario.problems[2:]:  # Dynatrace has tied them to the host by now: they correlate
        later["rootCauseEntity"] = scenario.problems[0]["rootCauseEntity"]
    scenario.load_into(setup.fake)
    first = Scenario(name="first", problems=scenario.problems[:2])
    ids = setup.deliver(first, load=False)
    assert len(set(ids)) == 1
    incident_id = ids[0]
    setup.run_jobs()
    assert setup.rca(incident_id)["status"] == "done"

    rest = Scenario(name="rest", problems=scenario.problems[2:])
    assert set(setup.deliver(rest, load=False)) == {incident_id}
    rerun = setup.rca(incident_id)
    assert rerun["status"] == "queued"
    assert rerun["trigger"] == "problems_added"
    assert len(rerun["history"]) == 2  # two more problems, one queued re-run
    # Debounced: not claimable right away.
    with setup.app.state.database.session(write=True) as session:
        assert jobs_leases.claim(db_session=session, kinds=["rca"], owner="x", lease_seconds=60) is None
        session.rollback()
    setup.run_jobs()
    done = setup.rca(incident_id)
    assert done["status"] == "done"
    assert done["report"]["rootCause"]["entity"]["id"] == scenario.truth
    assert len([e for e in done["report"]["evidence"] if e["kind"] == "problem"]) == 4


def test_a_good_llm_narrative_is_stored_with_its_cost(setup, fake_llm):
    settings = setup.app.state.settings.model_copy(
        update={
            "llm_base_url": fake_llm.base_url,
            "llm_model": "gpt-test",
            "llm_api_key": None,
            "llm_input_cost_per_million": 1.0,
            "llm_output_cost_per_million": 4.0,
        }
    )
    setup.enable_rca()
    (incident_id,) = setup.deliver(deployment_breaks_service())
    setup.run_jobs(settings=settings)
    rca = setup.rca(incident_id)
    assert rca["analyzer"] == "llm:gpt-test"
    assert rca["report"]["summary"].startswith("Narrative: ")
    assert rca["usage"]["llm"]["totalTokens"] == 1500
    assert rca["usage"]["llm"]["costUsd"] == pytest.approx(0.0024)
    assert rca["reason"] is None


def test_a_hallucinating_llm_leaves_the_deterministic_report_with_the_reason(setup, fake_llm):
    fake_llm.behaviour = hallucinating
    settings = setup.app.state.settings.model_copy(
        update={"llm_base_url": fake_llm.base_url, "llm_model": "gpt-test"}
    )
    setup.enable_rca()
    (incident_id,) = setup.deliver(deployment_breaks_service())
    setup.run_jobs(settings=settings)
    rca = setup.rca(incident_id)
    assert rca["status"] == "done"
    assert rca["analyzer"] == "deterministic"
    assert rca["verdict"] == "CONFIRMED"
    assert "E999" in rca["reason"]
    assert not rca["report"]["summary"].startswith("Narrative")


def test_another_user_cannot_read_or_start_an_rca(setup, make_account):
    (incident_id,) = setup.deliver(deployment_breaks_service())
    other = make_account("other@example.com")
    assert other.client.get(f"/incidents/{incident_id}/rca").status_code == 404
    assert other.client.post(f"/incidents/{incident_id}/rca").status_code == 404
    assert setup.client.get(f"/incidents/{incident_id}/rca").status_code == 401


@pytest.fixture
def worker(app) -> Iterator[Worker]:
    register_handlers()
    running = Worker(
        database=app.state.database,
        settings=app.state.settings,
        secret_box=app.state.secret_box,
        concurrency=1,
        poll_max=0.2,
    )
    running.start()
    yield running
    running.stop(grace_seconds=10)


def test_an_on_demand_run_is_picked_up_by_a_worker(setup, worker):
    (incident_id,) = setup.deliver(deployment_breaks_service())
    assert setup.account.client.post(f"/incidents/{incident_id}/rca").status_code == 202
    rca = wait_until(
        lambda: (found := setup.rca(incident_id))["status"] not in ("queued", "running") and found,
        what="the worker to finish the on-demand RCA",
    )
    assert rca["status"] == "done"
    assert rca["verdict"] == "CONFIRMED"


def test_a_queued_rca_of_an_incident_merged_away_is_skipped_with_a_pointer(setup):
    setup.enable_rca()
    (kept,) = setup.deliver(deployment_breaks_service())
    (merged,) = setup.deliver(two_unrelated_failures())
    answer = setup.account.client.post(f"/incidents/{kept}/merge", json={"sourceIncidentId": merged})
    assert answer.status_code == 200, answer.text
    setup.run_jobs()
    skipped = setup.rca(merged)
    assert skipped["status"] == "skipped"
    assert f"GET /incidents/{kept}/rca" in skipped["reason"]
    assert setup.rca(kept)["status"] == "done"


def test_the_llm_asks_for_more_evidence_through_the_same_scopes(
    app, account, fake_dynatrace, client, fake_llm
):
    setup = Setup(
        app, account, fake_dynatrace, client, scopes=["problems.read", "entities.read", "logs.read"]
    )
    fake_llm.behaviour = tools_then(
        [
            ("get_events", {"entityId": "SERVICE-596877472CDAA92E"}),
            ("search_error_logs", {"entityId": "PROCESS_GROUP_INSTANCE-0C98DB1A2EDAA36C"}),
        ],
        echo_hypothesis,
    )
    settings = app.state.settings.model_copy(
        update={"llm_base_url": fake_llm.base_url, "llm_model": "gpt-test"}
    )
    setup.enable_rca()
    (incident_id,) = setup.deliver(deployment_breaks_service())
    setup.run_jobs(settings=settings)
    rca = setup.rca(incident_id)
    assert rca["analyzer"] == "llm:gpt-test"
    assert rca["usage"]["llm"]["toolCalls"] == 2
    tool_results = [m["content"] for m in fake_llm.requests[1]["messages"] if m["role"] == "tool"]
    assert "events.read" in tool_results[0]  # refused by scope, reported to the model as data
    assert "error log records" in tool_results[1]
    assert any(
        r.params.get("query", "").endswith(
            'dt.entity.process_group_instance="PROCESS_GROUP_INSTANCE-0C98DB1A2EDAA36C"'
        )
        for r in fake_dynatrace.requests_to("/api/v2/logs/search")
    )
    assert fake_dynatrace.requests_to("/api/v2/events") == []


def test_entities_that_enrichment_cached_are_not_fetched_again(setup):
    register_handlers()
    setup.enable_rca()
    (incident_id,) = setup.deliver(deployment_breaks_service())
    service = "SERVICE-596877472CDAA92E"
    run_pending(setup.app, kind=ENRICH_JOB)
    fetched = len(setup.fake.requests_to(f"/api/v2/entities/{service}"))
    assert fetched >= 1
    setup.run_jobs()
    rca = setup.rca(incident_id)
    assert rca["status"] == "done"
    (item,) = [e for e in rca["report"]["evidence"] if e["kind"] == "entity" and e["entity"]["id"] == service]
    assert item["source"].startswith("entity cache")
    assert len(setup.fake.requests_to(f"/api/v2/entities/{service}")) == fetched
