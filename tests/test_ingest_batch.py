"""Ingesting a webhook batch at once ends like ingesting its notifications one by one, and skips the
work nothing asked for: correlation of unchanged problems, rewriting an untouched queued job."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from borealis import jobstore, jsontext
from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import parse_webhook
from borealis.incidents.models import Incident, IncidentEvent, IncidentKey, IncidentProblem
from borealis.ingest import intake
from borealis.jobstore.models import Job
from borealis.problems.models import ENDED_STATES, Problem
from tests.support.builders import problem_body, storm
from tests.support.webhooks import encode, wire_connection


def ingest(database, wired, bodies: list[dict[str, Any]]) -> list[intake.IngestResult]:
    """All bodies in one transaction, as one group commit of the webhook writer."""
    with database.session(write=True) as session:
        connection = session.get(Connection, wired.connection_id)
        items = []
        for body in bodies:
            raw = encode(body)
            items.append(intake.Accepted(connection, parse_webhook(raw), "webhook", raw.decode(), utcnow()))
        results = intake.ingest_many(db_session=session, items=items)
        session.commit()
        return results


def one_by_one(database, wired, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        ingest(database, wired, [body])


def picture(database, workspace_id: str) -> set[tuple[frozenset[str], str, int, int]]:
    """Each live incident of the user: its problems' display ids, status and counts."""
    with database.session() as session:
        rows = session.execute(
            sa.select(Incident, Problem.display_id)
            .join(IncidentProblem, IncidentProblem.incident_id == Incident.id)
            .join(Problem, Problem.id == IncidentProblem.problem_id)
            .where(Incident.workspace_id == workspace_id)
        ).all()
        groups: dict[int, tuple[Incident, set[str]]] = {}
        for incident, display in rows:
            groups.setdefault(incident.id, (incident, set()))[1].add(display)
        return {
            (frozenset(displays), incident.status, incident.problem_count, incident.open_problem_count)
            for incident, displays in groups.values()
        }


def counts_are_exact(database, workspace_id: str) -> None:
    """Every incident's counts agree with its problems' states, and its index rows with its status."""
    with database.session() as session:
        for incident in session.scalars(sa.select(Incident).where(Incident.workspace_id == workspace_id)):
            states = session.scalars(
                sa.select(Problem.state)
                .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
                .where(IncidentProblem.incident_id == incident.id)
            ).all()
            assert incident.problem_count == len(states), incident.id
            assert incident.open_problem_count == sum(state not in ENDED_STATES for state in states)
            indexed = session.scalar(
                sa.select(sa.func.count())
                .select_from(IncidentKey)
                .where(IncidentKey.incident_id == incident.id)
            )
            if incident.status != "open":
                assert indexed == 0, incident.id


@pytest.fixture
def two(app, database, make_account):
    calm, busy = make_account("calm@example.com"), make_account("busy@example.com")
    return (
        wire_connection(database, app.state.secret_box, calm.workspace_id),
        wire_connection(database, app.state.secret_box, busy.workspace_id),
    )


@pytest.mark.parametrize("batch", [7, 500])
def test_a_storm_in_batches_groups_like_one_by_one(database, two, batch):
    calm, busy = two
    bodies, truth = storm()
    random.Random(batch).shuffle(bodies)
    one_by_one(database, calm, bodies)
    for start in range(0, len(bodies), batch):
        ingest(database, busy, bodies[start : start + batch])
    assert picture(database, busy.workspace_id) == picture(database, calm.workspace_id)
    assert {group for group, *_ in picture(database, busy.workspace_id)} == truth
    counts_are_exact(database, busy.workspace_id)


def test_resolving_reopening_and_new_problems_in_one_batch_end_like_one_by_one(database, two):
    """One batch that ends a whole incident, reopens a problem of another and brings problems related
    to both: the new ones must not join the incident that resolved earlier in the same batch."""
    calm, busy = two
    first = [
        problem_body(f"a{i}", display=f"P-A{i}", minute=i, entities=("SERVICE-A",), root_cause="HOST-A")
        for i in range(4)
    ] + [
        problem_body(f"b{i}", display=f"P-B{i}", minute=i, entities=("SERVICE-B",), root_cause="HOST-B")
        for i in range(3)
    ]
    second = [
        *(
            problem_body(
                f"a{i}",
                display=f"P-A{i}",
                minute=i,
                entities=("SERVICE-A",),
                root_cause="HOST-A",
                state="RESOLVED",
                observed_minute=20,
            )
            for i in range(4)
        ),
        problem_body(
            "b0",
            display="P-B0",
            entities=("SERVICE-B",),
            root_cause="HOST-B",
            state="RESOLVED",
            observed_minute=20,
        ),
        problem_body("late-a", display="P-LA", minute=5, entities=("SERVICE-A",), root_cause="HOST-A"),
        problem_body("late-b", display="P-LB", minute=5, entities=("SERVICE-B",)),
        problem_body("bridge", display="P-X", minute=6, entities=("SERVICE-A", "SERVICE-B")),
    ]
    third = [
        problem_body("b0", display="P-B0", entities=("SERVICE-B",), root_cause="HOST-B", observed_minute=30),
    ]
    for batch in (first, second, third):
        one_by_one(database, calm, batch)
        ingest(database, busy, batch)
    assert picture(database, busy.workspace_id) == picture(database, calm.workspace_id)
    counts_are_exact(database, busy.workspace_id)
    resolved = {group for group, status, *_ in picture(database, busy.workspace_id) if status == "resolved"}
    assert frozenset({"P-A0", "P-A1", "P-A2", "P-A3"}) in resolved


def test_an_update_that_changes_nothing_correlation_reads_touches_no_incident(database, two):
    _calm, wired = two
    body = problem_body("1", display="P-1", entities=("SERVICE-A",), root_cause="HOST-A")
    ingest(database, wired, [body])
    with database.session() as session:
        before = session.scalars(sa.select(Incident.updated_at)).one()
        events = session.scalar(sa.select(sa.func.count()).select_from(IncidentEvent))
    # Newer evidence, same facts: a new notification, nothing for the incident.
    [result] = ingest(
        database,
        wired,
        [
            {
                **body,
                "ProblemDetailsJSONv2": {
                    **body["ProblemDetailsJSONv2"],
                    "evidenceDetails": {"details": [{"startTime": 1_700_000_900_000}]},
                },
            }
        ],
    )
    assert result.outcome == "updated"
    with database.session() as session:
        assert session.scalars(sa.select(Incident.updated_at)).one() == before
        assert session.scalar(sa.select(sa.func.count()).select_from(IncidentEvent)) == events


def test_an_older_delivery_that_fills_in_entities_still_correlates(database, two):
    """The newest notification of a problem carried no entities; an older one that arrives later fills
    them in (it is stale, not newer): the problem still joins the incident those entities lead to."""
    _calm, wired = two
    ingest(database, wired, [problem_body("1", display="P-1", entities=("SERVICE-A",), root_cause="HOST-A")])
    newer = problem_body("2", display="P-2", minute=1, observed_minute=9)
    newer["ImpactedEntities"] = []
    newer["ProblemDetailsJSONv2"]["impactedEntities"] = []
    ingest(database, wired, [newer])
    [result] = ingest(
        database,
        wired,
        [problem_body("2", display="P-2", minute=1, observed_minute=2, entities=("SERVICE-A",))],
    )
    assert result.outcome == "stale"
    groups = {group for group, *_ in picture(database, wired.workspace_id)}
    assert frozenset({"P-1", "P-2"}) in groups


def test_many_requests_for_queued_work_fold_without_rewriting_what_would_not_change(database, account):
    now = utcnow()
    later = now + timedelta(minutes=5)
    with database.session(write=True) as session:
        jobstore.enqueue(
            db_session=session,
            kind="demo",
            workspace_id=account.workspace_id,
            key="k:1",
            payload={"a": 1},
            run_after=later,
        )
        session.commit()
    with database.session() as session:
        untouched = session.scalars(sa.select(Job.updated_at).where(Job.key == "k:1")).one()

    with database.session(write=True) as session:
        jobstore.enqueue_many(
            db_session=session,
            kind="demo",
            requests=[
                jobstore.JobRequest(
                    "k:1", account.workspace_id, {"a": 1}, run_after=later + timedelta(minutes=1)
                ),
                jobstore.JobRequest("k:2", account.workspace_id, {"b": 1}, run_after=later),
                jobstore.JobRequest("k:2", account.workspace_id, {"c": 2}, run_after=now, max_attempts=7),
            ],
        )
        session.commit()
    with database.session() as session:
        rows = {job.key: job for job in session.scalars(sa.select(Job).where(Job.kind == "demo"))}
    assert set(rows) == {"k:1", "k:2"}
    assert rows["k:1"].updated_at == untouched, "a request that changes nothing writes nothing"
    assert rows["k:1"].run_after == later
    assert rows["k:2"].payload == {"b": 1, "c": 2}
    assert rows["k:2"].run_after == now, "the earliest request decides when it starts"
    assert rows["k:2"].max_attempts == 7

    with database.session(write=True) as session:
        jobstore.enqueue_many(
            db_session=session,
            kind="demo",
            requests=[jobstore.JobRequest("k:1", account.workspace_id, {"a": 2}, run_after=now)],
        )
        session.commit()
    with database.session() as session:
        job = session.scalars(sa.select(Job).where(Job.key == "k:1")).one()
        assert (job.payload, job.run_after) == ({"a": 2}, now)
        assert session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.kind == "demo")) == 2


def demo_jobs(database) -> dict[str, list[Job]]:
    with database.session() as session:
        found: dict[str, list[Job]] = {}
        for job in session.scalars(sa.select(Job).where(Job.kind == "demo").order_by(Job.id)):
            found.setdefault(job.key, []).append(job)
        return found


def test_enqueue_many_folds_only_into_queued_twins_and_keeps_a_backing_off_jobs_wait(database, account):
    now = utcnow()
    later = now + timedelta(minutes=5)
    with database.session(write=True) as session:
        for key in ("running", "backing-off"):
            jobstore.enqueue(
                db_session=session,
                kind="demo",
                workspace_id=account.workspace_id,
                key=key,
                payload={"a": 1},
                run_after=later,
            )
        session.commit()
    with database.session(write=True) as session:
        session.execute(sa.update(Job).where(Job.key == "running").values(state="running", attempts=1))
        session.execute(sa.update(Job).where(Job.key == "backing-off").values(attempts=1))
        session.commit()
    # More keys than one statement holds: each becomes one queued job.
    many = [f"many:{n}" for n in range(450)]
    with database.session(write=True) as session:
        jobstore.enqueue_many(
            db_session=session,
            kind="demo",
            requests=[
                jobstore.JobRequest(key, account.workspace_id, {"b": 2}, run_after=now)
                for key in ("running", "backing-off", *many)
            ],
        )
        session.commit()
    jobs = demo_jobs(database)
    assert [(job.state, job.payload) for job in jobs["running"]] == [
        ("running", {"a": 1}),
        ("queued", {"b": 2}),
    ]
    [backing_off] = jobs["backing-off"]
    assert (backing_off.payload, backing_off.run_after) == ({"a": 1, "b": 2}, later)
    assert all(len(jobs[key]) == 1 and jobs[key][0].payload == {"b": 2} for key in many)


def test_enqueue_many_queues_a_key_whose_twin_was_claimed_between_its_insert_and_its_read(
    database, account, monkeypatch
):
    """The insert skipped the key (a twin was queued), then a worker claimed the twin before the read:
    the key goes round again and is queued."""
    with database.session(write=True) as session:
        jobstore.enqueue(
            db_session=session, kind="demo", workspace_id=account.workspace_id, key="k", payload={"a": 1}
        )
        session.commit()
    from borealis.driver import Driver

    query_many = Driver.query_many
    rounds = []

    def claimed_meanwhile(self, db_session, statements):
        rounds.append(len(statements))
        if len(rounds) > 1:
            return query_many(self, db_session, statements)
        inserted = query_many(self, db_session, statements[:1])
        db_session.execute(sa.update(Job).where(Job.key == "k").values(state="running"))
        return inserted + query_many(self, db_session, statements[1:])

    monkeypatch.setattr(Driver, "query_many", claimed_meanwhile)
    with database.session(write=True) as session:
        jobstore.enqueue_many(
            db_session=session,
            kind="demo",
            requests=[jobstore.JobRequest("k", account.workspace_id, {"b": 2})],
        )
        session.commit()
    assert len(rounds) == 2
    assert [(job.state, job.payload) for job in demo_jobs(database)["k"]] == [
        ("running", {"a": 1}),
        ("queued", {"b": 2}),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"pid": 123456789012345678901234567890}',
        '{"n": NaN, "i": -Infinity}',
        '{"s": "caf\\u00e9 \\ud83d\\ude00", "f": 1.5e-7, "big": -9223372036854775809}',
        '[1, 2, {"a": null, "b": true}]',
    ],
)
def test_fast_json_answers_as_the_standard_library(text):
    expected = json.loads(text)
    assert repr(jsontext.loads(text)) == repr(expected)
    assert repr(jsontext.loads(text.encode())) == repr(expected)


def test_fast_json_refuses_what_the_standard_library_refuses_with_its_message():
    with pytest.raises(json.JSONDecodeError) as ours:
        jsontext.loads('{"PID": "1",}')
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads('{"PID": "1",}')
    assert (ours.value.msg, ours.value.pos) == (theirs.value.msg, theirs.value.pos)


def test_fast_json_writes_what_reads_back_the_same():
    value = {"big": 2**80, "nested": [{"k": "v"}], 1: "int key"}
    assert json.loads(jsontext.dumps(value)) == {"big": 2**80, "nested": [{"k": "v"}], "1": "int key"}


def test_a_candidate_whose_entities_changed_is_scored_with_its_new_ones(database, two):
    """Candidates' facts are kept between batches; a candidate updated since must not be scored with
    what it looked like before."""
    _calm, wired = two
    ingest(database, wired, [problem_body("a", display="P-A", entities=("SERVICE-X",))])
    # P-B scores against P-A (and so reads P-A's facts) and joins it.
    ingest(database, wired, [problem_body("b", display="P-B", minute=1, entities=("SERVICE-X",))])
    # P-A moves on to another entity, in a later notification.
    ingest(
        database,
        wired,
        [problem_body("a", display="P-A", observed_minute=5, entities=("SERVICE-X", "SERVICE-Y"))],
    )
    ingest(database, wired, [problem_body("c", display="P-C", minute=2, entities=("SERVICE-Y",))])
    groups = {group for group, *_ in picture(database, wired.workspace_id)}
    assert groups == {frozenset({"P-A", "P-B", "P-C"})}
    with database.session() as session:
        attachment = session.get(
            IncidentProblem, session.scalar(sa.select(Problem.id).where(Problem.pid == "c"))
        )
        assert "SERVICE-Y" in attachment.reason
