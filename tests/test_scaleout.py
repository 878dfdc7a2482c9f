"""Scale-out on one database: the webhook's answer path beside background work that holds locks.

Writers (the webhook's group commits), enrichment (which writes the same problems and correlates them at
once) and several follow-up runners work on the same problems at the same time, as replicas and workers
would: none deadlocks (PostgreSQL would raise in the victim: nothing here retries), nothing is lost,
and the grouping ends as one by one.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import sqlalchemy as sa

from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import parse_webhook
from borealis.incidents.models import Incident, IncidentProblem
from borealis.incidents.placement import recorrelate
from borealis.incidents.service import lock_workspace
from borealis.ingest import intake
from borealis.jobs import follow_ups
from borealis.problems.models import FollowUp, Problem
from borealis.sync.models import SyncCounts
from borealis.sync.reconcile import apply_api_problems
from tests.support.builders import problem_body, storm
from tests.support.webhooks import encode, wire_connection


def write_batch(database, connection_id: str, bodies: Sequence[dict[str, Any]]) -> None:
    """One group commit of the webhook writer: the deliveries and their recorded follow-ups, nothing more."""
    with database.session(write=True) as session:
        connection = session.get(Connection, connection_id)
        items = []
        for body in bodies:
            raw = encode(body)
            items.append(intake.Accepted(connection, parse_webhook(raw), "webhook", raw.decode(), utcnow()))
        intake.ingest_many(db_session=session, items=items, follow_up_now=False)
        session.commit()


def enrich(database, connection_id: str, body: dict[str, Any]) -> bool:
    """What the enrichment job writes for a problem: the API's view of it, correlated at once in the same
    transaction, then correlated again with what it learned. False when the problem is not stored yet."""
    with database.session(write=True) as session:
        connection = session.get(Connection, connection_id)
        problem_id = session.scalar(
            sa.select(Problem.id).where(
                Problem.connection_id == connection_id, Problem.display_id == body["ProblemID"]
            )
        )
        if problem_id is None:
            return False
        apply_api_problems(
            db_session=session,
            connection=connection,
            # The API's id of the problem (the builders' pids are not Dynatrace's numbers).
            problems=[{**body["ProblemDetailsJSONv2"], "problemId": body["PID"]}],
            counts=SyncCounts(),
            being_enriched=(problem_id,),
            follow_up_now=True,
        )
        recorrelate(db_session=session, problem_id=problem_id)
        session.commit()
        return True


def placed(database, workspace_id: str) -> dict[str, int]:
    """Each problem of the user and the one incident it sits in (an open or resolved one, never merged)."""
    with database.session() as session:
        rows = session.execute(
            sa.select(Problem.display_id, Incident.id, Incident.status)
            .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
            .join(Incident, Incident.id == IncidentProblem.incident_id)
            .where(Problem.workspace_id == workspace_id)
        ).all()
    assert all(status != "merged" for _display, _incident, status in rows)
    found: dict[str, int] = {}
    for display, incident_id, _status in rows:
        assert display not in found, f"{display} is in two incidents"
        found[display] = incident_id
    return found


def grouping(database, workspace_id: str) -> set[frozenset[str]]:
    members: dict[int, set[str]] = {}
    for display, incident_id in placed(database, workspace_id).items():
        members.setdefault(incident_id, set()).add(display)
    return {frozenset(group) for group in members.values()}


def run_together(*tasks: Callable[[], None]) -> None:
    """Run the tasks on threads of their own at once; the first exception (a deadlock's, say) fails."""
    with ThreadPoolExecutor(max_workers=len(tasks)) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


def test_writers_and_enrichment_on_the_same_problems_never_deadlock(app, database, make_account):
    bodies, truth = storm()
    account = make_account("busy@example.com")
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    arrivals = list(bodies) + [random.Random(4).choice(bodies) for _ in range(len(bodies) // 2)]
    random.Random(5).shuffle(arrivals)
    written = threading.Event()

    def writers() -> None:
        for start in range(0, len(arrivals), 8):
            write_batch(database, wired.connection_id, arrivals[start : start + 8])
        written.set()

    def enrichment() -> None:
        order = list(bodies)
        random.Random(6).shuffle(order)
        while order:
            all_written = written.is_set()
            order = [body for body in order if not enrich(database, wired.connection_id, body)]
            assert not (order and all_written), "acknowledged problems were never stored"

    def follow_up_runner() -> None:
        while not written.is_set():
            follow_ups.follow_up_all(database=database, workspace_ids=[account.workspace_id])
        follow_ups.follow_up_all(database=database, workspace_ids=[account.workspace_id])

    run_together(writers, enrichment, follow_up_runner, follow_up_runner)
    follow_ups.follow_up_all(database=database)
    with database.session() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(FollowUp)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(Problem)) == len(bodies)
    assert grouping(database, account.workspace_id) == truth


def test_parallel_follow_ups_place_like_one_by_one(app, database, make_account):
    bodies, truth = storm()
    account = make_account("parallel@example.com")
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    shuffled = list(bodies)
    random.Random(7).shuffle(shuffled)
    for start in range(0, len(shuffled), 5):
        write_batch(database, wired.connection_id, shuffled[start : start + 5])

    def runner() -> None:
        follow_ups.follow_up_all(database=database)

    run_together(*[runner] * 4)
    assert follow_ups.follow_up_all(database=database) == 0
    assert grouping(database, account.workspace_id) == truth
    assert len(placed(database, account.workspace_id)) == len(bodies)


def test_the_webhook_answers_while_background_work_holds_its_locks(app, database, account, live_server):
    """A transaction holds what correlation and an incident change hold for as long as they run (the
    user's correlation lock, the incident rows; on SQLite an open transaction that read them): new
    deliveries, and a change to a problem already in an incident, are still acknowledged and stored."""
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    related = {"entities": ("SERVICE-A",), "root_cause": "HOST-A"}
    first = problem_body("1", display="P-1", **related)
    write_batch(database, wired.connection_id, [first])
    follow_ups.follow_up_all(database=database)
    later = [
        problem_body("2", display="P-2", minute=1, **related),
        problem_body("1", display="P-1", state="RESOLVED", observed_minute=3, **related),
    ]

    with database.session() as holder:
        lock_workspace(db_session=holder, workspace_id=account.workspace_id)
        held = holder.scalars(sa.select(Incident).where(Incident.workspace_id == account.workspace_id))
        if database.engine.dialect.name == "postgresql":
            held = holder.scalars(
                sa.select(Incident).where(Incident.workspace_id == account.workspace_id).with_for_update()
            )
        assert len(list(held)) == 1
        # A webhook that waited for the holder would wait for ever: the timeout says so.
        with httpx.Client(base_url=live_server.url, timeout=10) as http:
            answers = [http.post(wired.url, json=body) for body in later]
        assert [answer.status_code for answer in answers] == [200, 200]
        assert [answer.json()["outcome"] for answer in answers] == ["created", "updated"]
        holder.rollback()

    follow_ups.follow_up_all(database=database)
    with database.session() as session:
        states = dict(session.execute(sa.select(Problem.display_id, Problem.state)).all())
    assert states == {"P-1": "RESOLVED", "P-2": "OPEN"}
    assert grouping(database, account.workspace_id) == {frozenset({"P-1", "P-2"})}
