"""Write-back against the fake Dynatrace: an incident's RCA becomes one Borealis comment on each of its
problems, a rerun updates that comment, a retried job never posts twice, and a token without
problems.write is reported, not crashed on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from borealis.db import utcnow
from borealis.dynatrace.service import CLOSE_JOB, WRITE_BACK_JOB
from borealis.jobs.registry import register_handlers
from borealis.jobstore import leases as jobs_leases
from borealis.simulation import ALL_SCOPES
from borealis.writeback import service as writeback_service
from borealis.writeback import tasks as writeback_tasks
from tests.support.builders import webhook_body
from tests.support.jobs import context_for, run_pending
from tests.support.rca_scenarios import Scenario, database_host_saturation

READ_ONLY = tuple(scope for scope in ALL_SCOPES if scope != "problems.write")


class Team:
    """The default account connected to the fake Dynatrace with ``scopes``, delivering a scenario."""

    def __init__(self, app, account, fake, client, scopes=ALL_SCOPES) -> None:
        self.app, self.account, self.fake, self.client = app, account, fake, client
        token = fake.add_token(list(scopes))
        connect = {"environmentUrl": fake.environment_url, "apiToken": token}
        assert account.client.post("/dynatrace/connect", json=connect).status_code == 200
        self.webhook = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"]

    def deliver(self, scenario: Scenario) -> int:
        """Load and deliver the scenario's problems, merged into one incident; returns its id."""
        scenario.load_into(self.fake)
        incidents = set()
        for problem in scenario.problems:
            answer = self.client.post(self.webhook, json=webhook_body(problem))
            assert answer.status_code == 200, answer.text
            incidents.add(
                self.account.client.get(f"/dynatrace/alerts/{answer.json()['alertId']}").json()["incidentId"]
            )
        target, *others = sorted(incidents)
        for other in others:
            merged = self.account.client.post(f"/incidents/{target}/merge", json={"sourceIncidentId": other})
            assert merged.status_code == 200, merged.text
        return target

    def analyse(self, incident_id: int) -> None:
        assert self.account.client.post(f"/incidents/{incident_id}/rca").status_code == 202
        [outcome] = run_pending(self.app)
        assert outcome["status"] == "done", outcome

    def write_back(self) -> list[Any]:
        return run_pending(self.app, kind=WRITE_BACK_JOB)

    def problem_ids(self, incident_id: int) -> list[str]:
        incident = self.account.client.get(f"/incidents/{incident_id}").json()
        return [problem["pid"] for problem in incident["problems"]]

    def ours(self, problem_id: str) -> list[dict[str, Any]]:
        return [comment for comment in self.fake.comments_of(problem_id) if comment["context"] == "Borealis"]

    def timeline(self, incident_id: int) -> list[dict[str, Any]]:
        return self.account.client.get(f"/incidents/{incident_id}").json()["timeline"]


@pytest.fixture(autouse=True)
def _handlers() -> None:
    register_handlers()


def test_an_rca_becomes_one_comment_per_problem_and_a_rerun_updates_the_same_one(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client)
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    [outcome] = team.write_back()
    problems = team.problem_ids(incident_id)
    assert outcome["written"] == len(problems) > 1
    rca = account.client.get(f"/incidents/{incident_id}/rca").json()
    first = {}
    for problem_id in problems:
        [comment] = team.ours(problem_id)
        assert comment["content"].startswith(f"Borealis root-cause analysis: {rca['verdict']}")
        assert (
            f"Borealis incident #{incident_id}: http://127.0.0.1:8000/incidents/{incident_id}"
            in comment["content"]
        )
        assert "Evidence:" in comment["content"]
        first[problem_id] = comment["id"]
    assert [event["kind"] for event in team.timeline(incident_id)].count("written_back") == 1

    team.analyse(incident_id)
    team.write_back()
    for problem_id in problems:
        [comment] = team.ours(problem_id)
        assert comment["id"] == first[problem_id]
    updates = [
        request
        for request in fake_dynatrace.requests
        if request.method == "PUT" and "/comments/" in request.path
    ]
    assert len(updates) == len(problems)


def test_a_comment_posted_by_a_worker_that_died_is_taken_over_not_posted_again(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client)
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    problems = team.problem_ids(incident_id)
    # A worker posted the first problem's comment and died before it could store the comment's id.
    posted = fake_dynatrace.add_comment(
        problems[0],
        f"half-written\n\nBorealis incident #{incident_id}: ...",
        context="Borealis",
        author="borealis",
    )
    # Somebody's own comment on the same problem is left alone.
    fake_dynatrace.add_comment(
        problems[0], f"Borealis incident #{incident_id} looks odd", context=None, author="sre"
    )
    [outcome] = team.write_back()
    assert outcome["written"] == len(problems)
    [ours] = team.ours(problems[0])
    assert ours["id"] == posted["id"]
    assert ours["content"].startswith("Borealis root-cause analysis:")
    assert len(fake_dynatrace.comments_of(problems[0])) == 2
    for problem_id in problems[1:]:
        assert len(team.ours(problem_id)) == 1


def test_a_failure_is_on_the_timeline_and_the_write_back_is_retried_as_durable_work(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client)
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    fake_dynatrace.fail("/api/v2/problems/*/comments", 503, method="GET", times=1)
    outcomes = team.write_back()
    assert isinstance(outcomes[0], Exception)
    assert outcomes[-1]["written"] == len(team.problem_ids(incident_id))
    for problem_id in team.problem_ids(incident_id):
        assert len(team.ours(problem_id)) == 1
    timeline = team.timeline(incident_id)
    [failed] = [event for event in timeline if event["kind"] == "write_back_failed"]
    assert "503" in failed["message"] or "unavailable" in failed["message"].lower()
    assert failed["message"].endswith("it is tried again")
    assert timeline[-1]["kind"] == "written_back"


def test_without_problems_write_nothing_is_written_and_the_status_says_what_it_would_do(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client, scopes=READ_ONLY)
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    assert team.write_back() == []
    assert all(not team.ours(problem_id) for problem_id in team.problem_ids(incident_id))
    missing = {
        item["scope"]: item["enables"]
        for item in account.client.get("/dynatrace/status").json()["missingScopes"]
    }
    assert "root-cause analysis onto the Dynatrace problems" in missing["problems.write"]


def test_a_scope_taken_away_in_dynatrace_is_reported_on_the_timeline_not_crashed_on(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client)
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    for token in fake_dynatrace.tokens.values():
        token.scopes = [scope for scope in token.scopes if scope != "problems.write"]
    [outcome] = team.write_back()
    assert outcome is None  # done, with the failure recorded: no retry can help
    failed = [event for event in team.timeline(incident_id) if event["kind"] == "write_back_failed"]
    assert len(failed) == 1
    assert "problems.write" in failed[0]["message"]
    assert "tried again" not in failed[0]["message"]


def test_the_switch_is_on_by_default_says_why_and_only_owners_turn_it_off(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client)
    state = account.client.get("/dynatrace/write-back").json()
    assert state["enabled"] is True
    assert state["active"] is True
    assert account.client.get("/dynatrace/status").json()["writeBack"] == state
    off = account.client.put("/dynatrace/write-back", json={"enabled": False})
    assert off.status_code == 200
    assert off.json()["active"] is False
    assert "switched off" in off.json()["reason"]
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    assert team.write_back() == []
    audit = account.client.get(f"/workspaces/{account.workspace_id}/audit").json()["items"]
    assert audit[0]["action"] == "settings.write_back_changed"
    assert audit[0]["details"] == {"writeBack": False}
    assert account.client.put("/dynatrace/write-back", json={"enabled": "no"}).status_code == 422


def test_a_responder_closes_the_problems_in_dynatrace_and_it_shows_on_the_timeline(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client)
    incident_id = team.deliver(database_host_saturation())
    problems = team.problem_ids(incident_id)
    fake_dynatrace.fail("/api/v2/problems/*/close", 503, times=1)
    asked = account.client.post(f"/incidents/{incident_id}/close-problems", json={"message": "Rolled back"})
    assert asked.status_code == 202, asked.text
    outcomes = run_pending(app, kind=CLOSE_JOB)
    assert isinstance(outcomes[0], Exception)  # the 503: retried as durable work
    assert outcomes[-1]["closed"] == len(problems)
    for problem_id in problems:
        assert fake_dynatrace.problems[problem_id]["status"] == "CLOSED"
        [closing] = fake_dynatrace.comments_of(problem_id)
        assert closing["content"].startswith("Rolled back (sre@example.com")
    kinds = [event["kind"] for event in team.timeline(incident_id)]
    assert kinds.index("close_requested") < kinds.index("close_failed") < kinds.index("closed_in_dynatrace")


def test_closing_needs_the_scope_and_is_never_done_without_a_request(app, account, fake_dynatrace, client):
    team = Team(app, account, fake_dynatrace, client, scopes=READ_ONLY)
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    refused = account.client.post(f"/incidents/{incident_id}/close-problems")
    assert refused.status_code == 409
    assert "problems.write" in refused.json()["error"]["message"]
    assert run_pending(app, kind=CLOSE_JOB) == []
    assert not [request for request in fake_dynatrace.requests if request.path.endswith("/close")]


def test_a_responders_mark_goes_on_the_report_the_timeline_and_the_dynatrace_comment(
    app, account, fake_dynatrace, client
):
    team = Team(app, account, fake_dynatrace, client)
    incident_id = team.deliver(database_host_saturation())
    path = f"/incidents/{incident_id}/rca/feedback"
    assert account.client.post(path, json={"mark": "wrong"}).status_code == 409  # nothing to mark yet
    team.analyse(incident_id)
    team.write_back()
    refused = account.client.post(path, json={"mark": "right", "causeEntity": "HOST-1"})
    assert refused.status_code == 422
    assert account.client.post(path, json={"mark": "mostly"}).status_code == 422
    marked = account.client.post(path, json={"mark": "wrong", "causeEntity": "SERVICE-CHECKOUT"})
    assert marked.status_code == 200, marked.text
    feedback = marked.json()["feedback"]
    assert (feedback["mark"], feedback["causeEntity"], feedback["by"]["username"]) == (
        "wrong",
        "SERVICE-CHECKOUT",
        "sre@example.com",
    )
    assert account.client.get(f"/incidents/{incident_id}/rca").json()["feedback"]["mark"] == "wrong"
    [event] = [event for event in team.timeline(incident_id) if event["kind"] == "rca_feedback"]
    assert event["message"] == "RCA marked wrong; the true cause: SERVICE-CHECKOUT"
    team.write_back()
    for problem_id in team.problem_ids(incident_id):
        [comment] = team.ours(problem_id)
        assert (
            "A responder marked this analysis wrong; the true cause: SERVICE-CHECKOUT." in comment["content"]
        )


class WorkerKilled(BaseException):
    """What a kill -9 looks like from inside the handler: nothing after this point runs."""


def test_a_worker_killed_after_posting_leaves_no_duplicate_once_its_lease_runs_out(
    app, account, fake_dynatrace, client, monkeypatch
):
    team = Team(app, account, fake_dynatrace, client)
    incident_id = team.deliver(database_host_saturation())
    team.analyse(incident_id)
    database = app.state.database
    with database.session(write=True) as session:
        job = jobs_leases.claim(
            db_session=session, kinds=[WRITE_BACK_JOB], owner="worker-a", lease_seconds=1, now=utcnow()
        )
        session.commit()
    assert job is not None
    context = context_for(app, job, owner="worker-a")

    def killed(**_: Any) -> None:
        raise WorkerKilled

    # Worker A posts the first comment, and dies before it can store the comment's id.
    with monkeypatch.context() as patched:
        patched.setattr(writeback_service, "remember", killed)
        with pytest.raises(WorkerKilled):
            writeback_tasks.write_back(context)
    problems = team.problem_ids(incident_id)
    assert len(team.ours(problems[0])) == 1
    # Its lease runs out; another worker takes the job over and finishes it.
    [outcome] = run_pending(app, kind=WRITE_BACK_JOB, later=timedelta(minutes=5))
    assert outcome["written"] == len(problems)
    for problem_id in problems:
        assert len(team.ours(problem_id)) == 1
