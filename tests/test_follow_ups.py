"""Follow-ups: the webhook acknowledges after the lifecycle step; a job correlates afterwards.

What a burst leaves waiting (a row per change) is merged per problem and replayed in arrival order, so it
ends like the same deliveries correlated one by one; readers of incidents see it done; nothing waiting is lost.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import parse_webhook
from borealis.incidents import batch
from borealis.incidents.models import Incident, IncidentEvent, IncidentProblem
from borealis.ingest import intake
from borealis.jobs import follow_ups
from borealis.jobstore.models import Job
from borealis.problems.models import FollowUp, Problem
from tests.support.builders import problem_body
from tests.support.waiting import wait_until
from tests.support.webhooks import encode, followed_up, wire_connection


def acknowledge(database, wired, bodies: list[dict[str, Any]]) -> None:
    """Each body in its own transaction, as the webhook writer commits them: follow-ups left waiting."""
    for body in bodies:
        raw = encode(body)
        with database.session(write=True) as session:
            connection = session.get(Connection, wired.connection_id)
            item = intake.Accepted(connection, parse_webhook(raw), "webhook", raw.decode(), utcnow())
            intake.ingest_many(db_session=session, items=[item], follow_up_now=False)
            session.commit()


def one_by_one(database, wired, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        acknowledge(database, wired, [body])
        followed_up(database)


def waiting(database) -> list[FollowUp]:
    with database.session() as session:
        return list(session.scalars(sa.select(FollowUp).order_by(FollowUp.id)))


def timeline(database, workspace_id: str) -> list[tuple[str, str]]:
    """Every incident event of the user as (kind, message), in order."""
    with database.session() as session:
        rows = session.execute(
            sa.select(IncidentEvent.kind, IncidentEvent.message)
            .join(Incident, Incident.id == IncidentEvent.incident_id)
            .where(Incident.workspace_id == workspace_id)
            .order_by(IncidentEvent.id)
        ).all()
    return [(kind, message) for kind, message in rows]


def groups(database, workspace_id: str) -> set[tuple[frozenset[str], str]]:
    with database.session() as session:
        rows = session.execute(
            sa.select(Incident.id, Incident.status, Problem.display_id)
            .join(IncidentProblem, IncidentProblem.incident_id == Incident.id)
            .join(Problem, Problem.id == IncidentProblem.problem_id)
            .where(Incident.workspace_id == workspace_id)
        ).all()
    found: dict[int, tuple[str, set[str]]] = {}
    for incident_id, status, display in rows:
        found.setdefault(incident_id, (status, set()))[1].add(display)
    return {(frozenset(displays), status) for status, displays in found.values()}


def flapping() -> list[dict[str, Any]]:
    """P-1 opens, resolves and reopens; P-2, related, comes while it is open; P-3, related too, comes
    after P-1 and P-2 have both resolved, so it must open an incident of its own."""
    related = {"entities": ("SERVICE-A",), "root_cause": "HOST-A"}
    return [
        problem_body("1", display="P-1", **related),
        problem_body("2", display="P-2", minute=1, **related),
        problem_body("1", display="P-1", state="RESOLVED", observed_minute=5, **related),
        problem_body("2", display="P-2", minute=1, state="RESOLVED", observed_minute=6, **related),
        problem_body("3", display="P-3", minute=7, **related),
    ]


def test_a_burst_waits_as_a_follow_up_per_change_with_every_state_it_took(app, database, make_account):
    wired = wire_connection(database, app.state.secret_box, make_account("a@example.com").workspace_id)
    acknowledge(database, wired, flapping())
    pending = waiting(database)
    assert len(pending) == 5
    with database.session() as session:
        ids = dict(session.execute(sa.select(Problem.display_id, Problem.id)).all())
    first, then = [follow_up for follow_up in pending if follow_up.problem_id == ids["P-1"]]
    assert [state for state, _at in first.states] == ["OPEN"]
    assert (first.created, first.previous_keys, first.version) == (True, None, 1)
    # The next change starts from the state the first left, with the keys the first one's picture has.
    assert [state for state, _at in then.states] == ["OPEN", "RESOLVED"]
    assert not then.created
    assert "e:SERVICE-A" in then.previous_keys
    assert then.version == 2
    # Nothing is correlated yet: the acknowledgement did not wait for it.
    assert groups(database, wired.workspace_id) == set()


def test_a_burst_followed_up_at_once_ends_like_one_by_one(app, database, make_account):
    calm = wire_connection(database, app.state.secret_box, make_account("calm@example.com").workspace_id)
    busy = wire_connection(database, app.state.secret_box, make_account("busy@example.com").workspace_id)
    bodies = flapping()
    one_by_one(database, calm, bodies)
    acknowledge(database, busy, bodies)
    assert followed_up(database) == 3
    assert waiting(database) == []
    expected = {(frozenset({"P-1", "P-2"}), "resolved"), (frozenset({"P-3"}), "open")}
    assert groups(database, calm.workspace_id) == expected
    assert groups(database, busy.workspace_id) == expected
    # The same timeline, state changes included, as if each delivery had been correlated on arrival.
    assert timeline(database, busy.workspace_id) == timeline(database, calm.workspace_id)
    kinds = [kind for kind, _ in timeline(database, busy.workspace_id)]
    assert kinds.count("problem_state_changed") == 2
    assert "resolved" in kinds


def test_later_changes_wait_beside_each_other_and_are_carried_out_as_one(app, database, make_account):
    wired = wire_connection(database, app.state.secret_box, make_account("a@example.com").workspace_id)
    first = problem_body("1", display="P-1", entities=("SERVICE-A",))
    acknowledge(database, wired, [first])
    followed_up(database)
    # Two more deliveries while nothing follows up: the first of their rows remembers the keys the
    # index holds.
    acknowledge(
        database,
        wired,
        [
            problem_body("1", display="P-1", entities=("SERVICE-A", "SERVICE-B"), observed_minute=3),
            problem_body("1", display="P-1", state="RESOLVED", entities=("SERVICE-B",), observed_minute=4),
        ],
    )
    widened, resolved = waiting(database)
    assert not widened.created
    assert widened.correlate
    assert "e:SERVICE-A" in widened.previous_keys
    assert "e:SERVICE-B" not in widened.previous_keys
    assert [state for state, _at in widened.states + resolved.states[1:]] == ["OPEN", "RESOLVED"]
    # One problem followed up, once, for both.
    assert followed_up(database) == 1
    assert waiting(database) == []
    assert groups(database, wired.workspace_id) == {(frozenset({"P-1"}), "resolved")}
    kinds = [kind for kind, _ in timeline(database, wired.workspace_id)]
    assert kinds.count("problem_state_changed") == 1


def test_a_change_committed_after_the_problem_was_read_waits_for_the_next_step(
    app, database, make_account, monkeypatch
):
    """The step merges only the rows its reading of the problem includes: one committed after that
    reading (by a writer, which never waits for the step) is carried out next time, against the
    problem as it shows it, and never replayed against an older picture."""
    wired = wire_connection(database, app.state.secret_box, make_account("a@example.com").workspace_id)
    acknowledge(database, wired, [problem_body("1", display="P-1", entities=("SERVICE-A",))])
    followed_up(database)
    acknowledge(
        database, wired, [problem_body("1", display="P-1", entities=("SERVICE-A",), observed_minute=2)]
    )
    with database.session() as session:
        read_before = batch.pictures(db_session=session, problem_ids=[waiting(database)[0].problem_id])
    resolved = problem_body("1", display="P-1", state="RESOLVED", entities=("SERVICE-A",), observed_minute=5)
    acknowledge(database, wired, [resolved])
    # The step reads the problem as it was before the resolution committed.
    monkeypatch.setattr(batch, "pictures", lambda **_kwargs: read_before)
    with database.session(write=True) as session:
        assert follow_ups.follow_up(db_session=session, workspace_ids=[wired.workspace_id]) == 1
        session.commit()
    monkeypatch.undo()
    [left] = waiting(database)
    assert [state for state, _at in left.states] == ["OPEN", "RESOLVED"]
    assert groups(database, wired.workspace_id) == {(frozenset({"P-1"}), "open")}
    assert followed_up(database) == 1
    assert groups(database, wired.workspace_id) == {(frozenset({"P-1"}), "resolved")}


def test_reading_incidents_carries_out_the_callers_follow_ups(app, database, account):
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    acknowledge(database, wired, [problem_body("1", display="P-1", entities=("SERVICE-A",))])
    assert len(waiting(database)) == 1
    response = account.client.get("/incidents")
    assert response.status_code == 200
    assert [incident["title"] for incident in response.json()["incidents"]] == ["Response time degradation"]
    assert waiting(database) == []


def test_requests_that_do_not_read_incidents_wait_for_no_follow_up(app, database, account):
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    acknowledge(database, wired, [problem_body("1", display="P-1", entities=("SERVICE-A",))])
    for path in (
        "/dynatrace/webhook-url",
        "/jobs",
        "/dynatrace/rca-settings",
        "/incidents/correlation-settings",
    ):
        assert account.client.get(path).status_code == 200, path
    assert account.client.put("/dynatrace/rca-settings", json={"rcaEnabled": True}).status_code == 200
    assert len(waiting(database)) == 1
    # The alerts list shows each problem's incident: it waits, as the incidents do.
    [alert] = account.client.get("/dynatrace/alerts").json()["alerts"]
    assert alert["incidentId"] is not None
    assert waiting(database) == []


def follow_up_jobs(database) -> list[Job]:
    with database.session() as session:
        return list(session.scalars(sa.select(Job).where(Job.kind == intake.FOLLOW_UP_JOB).order_by(Job.id)))


def test_the_webhook_only_records_and_a_worker_follows_up(app, database, account, client, background_worker):
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    for minute in range(3):
        body = problem_body(str(minute), display=f"P-{minute}", minute=minute, entities=("SERVICE-A",))
        assert client.post(wired.url, json=body).status_code == 200
    # Acknowledged with nothing correlated: the answer recorded three follow-ups and one job for them.
    assert len(waiting(database)) == 3
    assert groups(database, account.workspace_id) == set()
    [job] = follow_up_jobs(database)
    assert (job.state, job.workspace_id, job.key) == (
        "queued",
        account.workspace_id,
        f"workspace:{account.workspace_id}",
    )
    background_worker()
    wait_until(lambda: not waiting(database), what="the worker's follow-ups")
    assert groups(database, account.workspace_id) == {(frozenset({"P-0", "P-1", "P-2"}), "open")}
    wait_until(lambda: [j.state for j in follow_up_jobs(database)] == ["done"], what="the job to finish")
    assert follow_up_jobs(database)[0].result == {"followUps": 3}


def test_the_job_works_in_short_steps_and_ends_like_one_by_one(
    app, database, make_account, background_worker, monkeypatch
):
    """Two at a time (one transaction each), a burst still ends like the same deliveries one by one."""
    monkeypatch.setattr(follow_ups, "JOB_STEP", 2)
    calm = wire_connection(database, app.state.secret_box, make_account("calm@example.com").workspace_id)
    busy = wire_connection(database, app.state.secret_box, make_account("busy@example.com").workspace_id)
    bodies = flapping()
    one_by_one(database, calm, bodies)
    acknowledge(database, busy, bodies)
    background_worker()
    wait_until(lambda: not waiting(database), what="the worker's follow-ups")
    assert groups(database, busy.workspace_id) == groups(database, calm.workspace_id)
    assert timeline(database, busy.workspace_id) == timeline(database, calm.workspace_id)


def test_followed_up_one_at_a_time_still_ends_like_one_by_one(app, database, make_account):
    """Carried out in the smallest steps, a follow-up replays no state that came after the next state
    of one still waiting: P-1's resolution waits until P-2, which came before it, has joined."""
    calm = wire_connection(database, app.state.secret_box, make_account("calm@example.com").workspace_id)
    busy = wire_connection(database, app.state.secret_box, make_account("busy@example.com").workspace_id)
    bodies = flapping()
    one_by_one(database, calm, bodies)
    acknowledge(database, busy, bodies)
    steps = 0
    while True:
        with database.session(write=True) as session:
            done = follow_ups.follow_up(db_session=session, workspace_ids=[busy.workspace_id], limit=1)
            session.commit()
        if not done:
            break
        steps += 1
        assert steps < 20, "follow-ups made no progress"
    assert waiting(database) == []
    assert groups(database, busy.workspace_id) == groups(database, calm.workspace_id)
    assert timeline(database, busy.workspace_id) == timeline(database, calm.workspace_id)
