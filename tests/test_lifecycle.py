"""The problem lifecycle: order, repetition and concurrency do not change the final record."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import parse_webhook
from borealis.ingest import intake
from borealis.problems import lifecycle
from borealis.problems.models import Notification, Problem, ProblemCount
from tests.support.webhooks import BASE_MS, SAMPLES, encode, notification, wire_connection

API_SAMPLES = Path(SAMPLES).parent / "api-samples"
MINUTE = 60_000

# What must be the same whatever the order: everything but arrival times.
COMPARED = (
    "pid_key",
    "display_id",
    "api_problem_id",
    "title",
    "state",
    "severity",
    "impact",
    "priority",
    "problem_url",
    "impacted_entity",
    "impacted_entities",
    "root_cause_entity_id",
    "root_cause_entity_name",
    "root_cause_entity_type",
    "tags",
    "tags_raw",
    "management_zones",
    "start_time",
    "end_time",
    "details",
    "search_text",
    "notification_count",
    "duplicate_count",
)


# --- a story of one problem, as Dynatrace would tell it in order -------------------------------------------


def story(steps: list[str], pid: str = "-777") -> list[bytes]:
    """Bodies for a sequence like ["open", "open", "resolve", "open", "resolve", "merge"], each later
    in Dynatrace time than the one before; the title and entities evolve along the way."""
    bodies = []
    at = BASE_MS
    for index, step in enumerate(steps):
        at += MINUTE
        entities = [
            {"type": "HOST", "name": f"web-{n}", "entity": f"HOST-{n:016d}"} for n in range(index % 3 + 1)
        ]
        if step == "open":
            body = notification(pid, title=f"CPU saturation #{index}", entities=entities, observed_ms=at)
        elif step == "resolve":
            body = notification(
                pid, state="RESOLVED", title=f"CPU saturation #{index}", observed_ms=at, end_ms=at
            )
        else:  # merge: Dynatrace sends almost nothing with it
            body = {
                "PID": pid,
                "ProblemID": "",
                "State": "MERGED",
                "ProblemTitle": "",
                "ImpactedEntities": "",
                "Tags": "",
            }
        bodies.append(encode(body))
    return bodies


def replay(bodies: list[bytes]) -> dict:
    """Apply bodies the way the service does (duplicates by content hash), without a database."""
    problem: dict | None = None
    seen: set[str] = set()
    for body in bodies:
        parsed = parse_webhook(body)
        if problem is None:
            problem = lifecycle.new_problem(parsed)
            problem.update(notification_count=0, duplicate_count=0)
        if parsed.content_hash in seen:
            problem["duplicate_count"] += 1
            continue
        seen.add(parsed.content_hash)
        lifecycle.apply(problem, parsed)
        problem["notification_count"] += 1
    assert problem is not None
    return {name: problem.get(name) for name in COMPARED}


stories = st.lists(st.sampled_from(["open", "open", "resolve"]), min_size=1, max_size=6).map(
    lambda steps: ["open", *steps]
) | st.lists(st.sampled_from(["open", "resolve"]), min_size=1, max_size=5).map(
    lambda steps: [*steps, "merge"]
)


@st.composite
def deliveries(draw):
    """An ordered story and the same deliveries shuffled, some of them more than once."""
    bodies = story(draw(stories))
    delivered = list(bodies)
    for body in draw(st.lists(st.sampled_from(bodies), max_size=4)):
        delivered.append(body)
    return bodies, draw(st.permutations(delivered))


@settings(max_examples=300, deadline=None)
@given(deliveries())
def test_any_interleaving_and_duplication_ends_like_the_ordered_story(case):
    ordered, shuffled = case
    expected = replay(ordered)
    expected["duplicate_count"] = len(shuffled) - len(ordered)
    assert replay(shuffled) == expected


def test_late_open_after_resolved_does_not_reopen():
    opened, resolved = story(["open", "resolve"])
    assert replay([resolved, opened])["state"] == "RESOLVED"


def test_open_newer_than_the_resolution_reopens():
    bodies = story(["open", "resolve", "open"])
    final = replay(bodies)
    assert final["state"] == "OPEN"
    assert final["end_time"] is None
    assert replay([bodies[2], bodies[1], bodies[0]])["state"] == "OPEN"


def test_open_without_dynatrace_times_never_reopens():
    opened = encode(notification("-9", observed_ms=None))
    resolved = encode(notification("-9", state="RESOLVED", observed_ms=None, title="later"))
    assert replay([resolved, opened])["state"] == "RESOLVED"
    assert replay([opened, resolved])["state"] == "RESOLVED"


def test_merged_with_empty_fields_does_not_blank_what_is_known():
    opened, merged = story(["open", "merge"])
    final = replay([opened, merged])
    assert final["state"] == "MERGED"
    assert final["title"] == "CPU saturation #0"
    assert final["impacted_entities"] == [
        {"entityId": "HOST-0000000000000000", "name": "web-0", "type": "HOST"}
    ]
    assert final["tags"]
    assert final["display_id"] == "P-1001"


def test_resolved_ends_with_dynatrace_end_time():
    final = replay(story(["open", "resolve"]))
    assert final["state"] == "RESOLVED"
    assert final["end_time"] == datetime.fromtimestamp((BASE_MS + 2 * MINUTE) / 1000, UTC)


def test_unknown_state_alone_is_kept_and_later_open_wins():
    odd = encode(notification("-5", state="Acknowledged", observed_ms=BASE_MS))
    assert replay([odd])["state"] == "Acknowledged"
    assert replay([odd, encode(notification("-5", observed_ms=BASE_MS + 1))])["state"] == "OPEN"


# --- through the database --------------------------------------------------------------------------------


@pytest.fixture
def wired(account, app, database):
    return wire_connection(database, app.state.secret_box, account.workspace_id)


def ingest(database, wired, bodies: list[bytes], source: str = "webhook") -> list[intake.IngestResult]:
    with database.session(write=True) as session:
        connection = session.get(Connection, wired.connection_id)
        items = [
            intake.Accepted(connection, parse_webhook(body), source, body.decode(), utcnow())
            for body in bodies
        ]
        results = intake.ingest_many(db_session=session, items=items)
        session.commit()
        return results


def stored(database, pid_key: str) -> dict:
    with database.session() as session:
        problems = session.scalars(sa.select(Problem).where(Problem.pid_key == pid_key)).all()
        assert len(problems) == 1
        return {name: getattr(problems[0], name) for name in COMPARED}


def assert_counts_match(database) -> None:
    """The kept per-user counts equal a real count of the problems."""
    with database.session() as session:
        real = session.execute(
            sa.select(
                Problem.workspace_id,
                Problem.state,
                sa.func.coalesce(Problem.severity, ""),
                sa.func.coalesce(Problem.impact, ""),
                sa.func.count(),
            ).group_by(Problem.workspace_id, Problem.state, Problem.severity, Problem.impact)
        ).all()
        kept = session.execute(
            sa.select(
                ProblemCount.workspace_id,
                ProblemCount.state,
                ProblemCount.severity,
                ProblemCount.impact,
                ProblemCount.count,
            ).where(ProblemCount.count != 0)
        ).all()
    assert sorted(map(tuple, kept)) == sorted(map(tuple, real))


def test_outcomes_of_a_story_in_the_database(database, wired):
    opened, resolved = story(["open", "resolve"], pid="-31")
    outcomes = [r.outcome for r in ingest(database, wired, [opened])]
    outcomes += [r.outcome for r in ingest(database, wired, [opened])]
    outcomes += [r.outcome for r in ingest(database, wired, [resolved])]
    outcomes += [r.outcome for r in ingest(database, wired, [opened])]
    assert outcomes == ["created", "duplicate", "updated", "duplicate"]
    late_open = encode(notification("-31", observed_ms=BASE_MS + 30_000, title="late"))
    (result,) = ingest(database, wired, [late_open])
    assert (result.outcome, result.state) == ("stale", "RESOLVED")
    with database.session() as session:
        problem = session.scalar(sa.select(Problem).where(Problem.pid_key == "-31"))
        assert (problem.notification_count, problem.duplicate_count) == (3, 2)
        rows = session.scalars(sa.select(Notification).where(Notification.problem_id == problem.id)).all()
        assert sorted(r.delivery_count for r in rows) == [1, 1, 3]
        assert problem.title == "CPU saturation #1"


def test_identical_redelivery_in_one_batch_is_counted_not_duplicated(database, wired):
    (body,) = story(["open"], pid="-32")
    results = ingest(database, wired, [body, body, body])
    assert [r.outcome for r in results] == ["created", "duplicate", "duplicate"]
    assert len({r.alert_id for r in results}) == 1
    with database.session() as session:
        (row,) = session.scalars(sa.select(Notification)).all()
        assert row.delivery_count == 3


_example_pids = itertools.count(10**15)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries(), split=st.integers(min_value=1, max_value=4))
def test_shuffled_batches_end_in_the_same_stored_record(database, wired, case, split):
    ordered, shuffled = case
    pid = f"-{next(_example_pids)}"
    ordered = [
        body.replace(b'"-777"', f'"{pid}"'.encode()).replace(b"-777_", f"{pid}_".encode()) for body in ordered
    ]
    shuffled = [
        body.replace(b'"-777"', f'"{pid}"'.encode()).replace(b"-777_", f"{pid}_".encode())
        for body in shuffled
    ]
    for start in range(0, len(shuffled), split):
        ingest(database, wired, shuffled[start : start + split])
    expected = replay(ordered)
    expected["duplicate_count"] = len(shuffled) - len(ordered)
    assert stored(database, pid) == expected
    assert_counts_match(database)


def test_api_problem_lands_on_the_webhook_record(database, wired):
    problem = json.loads((API_SAMPLES / "api-v2-problems-list-open-and-closed.json").read_text())["problems"][
        0
    ]
    hook = notification("-1719139739592062093", problem_id="P-210620", observed_ms=1623004451000)
    hook["ProblemDetailsJSONv2"].update(
        startTime=1623004451000, problemId="-1719139739592062093_1623004451000V2"
    )
    (first,) = ingest(database, wired, [encode(hook)])
    with database.session(write=True) as session:
        connection = session.get(Connection, wired.connection_id)
        result = intake.ingest_api_problem(db_session=session, connection=connection, problem=problem)
        again = intake.ingest_api_problem(db_session=session, connection=connection, problem=problem)
        session.commit()
    assert result.alert_id == first.alert_id
    assert again.outcome == "duplicate"
    with database.session() as session:
        stored_problem = session.get(Problem, first.alert_id)
        assert stored_problem.api_problem_id == "-1719139739592062093_1623004451641V2"
        assert stored_problem.management_zones == [{"id": "8692695975020499402", "name": "Operations Team"}]
        sources = session.scalars(
            sa.select(Notification.source).where(Notification.problem_id == first.alert_id)
        )
        assert sorted(sources) == ["api", "webhook"]


def test_api_problem_first_then_webhook_is_one_record(database, wired):
    problem = json.loads((API_SAMPLES / "api-v2-problems-list-open-and-closed.json").read_text())["problems"][
        1
    ]
    with database.session(write=True) as session:
        connection = session.get(Connection, wired.connection_id)
        api = intake.ingest_api_problem(db_session=session, connection=connection, problem=problem)
        session.commit()
    assert api.outcome == "created"
    assert api.state == "RESOLVED"
    late_open = encode(notification("-8720840650528236841", problem_id="P-210619", observed_ms=1623003600000))
    (hook,) = ingest(database, wired, [late_open])
    assert hook.alert_id == api.alert_id
    assert (hook.outcome, hook.state) == ("stale", "RESOLVED")


# --- concurrency ---------------------------------------------------------------------------------------


def run_concurrently(database, wired, batches: list[list[bytes]]) -> list[str]:
    """Each batch in its own thread and transaction, all released at once; returns the outcomes."""
    barrier = threading.Barrier(len(batches))
    outcomes: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(batch: list[bytes]) -> None:
        try:
            barrier.wait()
            # As the webhook writer does: a transaction that failed on the database is run again.
            for attempt in range(5):
                try:
                    results = ingest(database, wired, batch)
                    break
                except sa.exc.OperationalError:
                    if attempt == 4:
                        raise
            with lock:
                outcomes.extend(result.outcome for result in results)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return outcomes


def test_simultaneous_deliveries_for_one_pid_converge_on_one_record(database, wired):
    bodies = story(["open", "open", "open", "resolve"], pid="-4040")
    batches = [[body] for body in bodies for _ in range(3)]
    outcomes = run_concurrently(database, wired, batches)
    assert outcomes.count("created") == 1
    assert outcomes.count("duplicate") == 8
    expected = replay(bodies)
    expected["duplicate_count"] = 8
    assert stored(database, "-4040") == expected
    assert_counts_match(database)


def test_simultaneous_deliveries_for_many_pids_make_one_record_each(database, wired):
    pids = [f"-{n}" for n in range(100, 140)]
    bodies = {pid: story(["open", "resolve"], pid=pid) for pid in pids}
    batches = [
        [bodies[pid][phase] for pid in (pids if worker % 2 else list(reversed(pids)))]
        for worker in range(6)
        for phase in (0, 1)
    ]
    outcomes = run_concurrently(database, wired, batches)
    assert outcomes.count("created") == len(pids)
    with database.session() as session:
        states = session.execute(sa.select(Problem.pid_key, Problem.state)).all()
        counts = session.execute(sa.select(sa.func.sum(Problem.notification_count))).scalar()
    assert sorted(states) == sorted((pid, "RESOLVED") for pid in pids)
    assert counts == 2 * len(pids)
    assert_counts_match(database)


def test_late_arrival_is_recorded_even_when_it_changes_nothing(database, wired):
    opened, resolved = story(["open", "resolve"], pid="-55")
    ingest(database, wired, [resolved])
    (late,) = ingest(database, wired, [opened])
    assert late.outcome == "stale"
    with database.session() as session:
        outcomes = sorted(session.scalars(sa.select(Notification.outcome)))
    assert outcomes == ["created", "stale"]


def test_received_times_track_first_and_last_delivery(database, wired):
    opened, resolved = story(["open", "resolve"], pid="-56")
    before = utcnow()
    ingest(database, wired, [opened])
    ingest(database, wired, [resolved])
    with database.session() as session:
        problem = session.scalar(sa.select(Problem).where(Problem.pid_key == "-56"))
    assert before - timedelta(seconds=1) <= problem.first_received_at <= problem.last_received_at
