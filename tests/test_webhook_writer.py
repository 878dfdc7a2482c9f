"""The webhook writer process: deliveries reach it intact, a writer that dies is replaced, and it ends
with the server."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from borealis import jsontext
from borealis.app import create_app
from borealis.db import StoredJson, utcnow
from borealis.ingest import writer
from borealis.ingest.delivery import Answer, from_wire, job, to_wire, wire_user
from borealis.ingest.writer import Router, WebhookWriter
from borealis.problems.models import Notification
from tests.support.server import serve_in_thread
from tests.support.waiting import wait_until
from tests.support.webhooks import SAMPLES, encode, notification, wire_connection

REJECTED = [
    b"{not json",
    b"[1, 2]",
    b'{"ProblemTitle": "no identity"}',
    b'{"PID": "{PID}", "ProblemID": "{ProblemID}"}',
    b"\x00\xff" * 10,
]


def crossed(sent):
    """The job as the writer gets it, checked against what was sent: equal, except that the details
    document arrives as the text the database will hold."""
    wire = to_wire(sent)
    assert wire_user(wire) == sent.user_id
    received = from_wire(wire)
    if sent.notification is not None and sent.notification.details is not None:
        stored = received.notification.details
        assert isinstance(stored, StoredJson)
        assert jsontext.loads(stored.text) == sent.notification.details
        received.notification = replace(received.notification, details=sent.notification.details)
    assert received == sent
    return received


@pytest.mark.parametrize("name", sorted(path.name for path in Path(SAMPLES).glob("*.json")))
def test_every_sample_crosses_to_the_writer_unchanged(name):
    body = (Path(SAMPLES) / name).read_bytes()
    sent = job(user_id="u", token="t", body=body, received_at=utcnow(), content_type="text/plain", id=7)
    assert sent.notification is not None or sent.rejection
    crossed(sent)


@pytest.mark.parametrize("body", REJECTED)
def test_a_rejected_body_crosses_with_its_reason(body):
    sent = job(user_id="u", token="t", body=body, received_at=utcnow())
    assert sent.notification is None
    assert sent.rejection
    crossed(sent)


def test_long_numbers_and_times_cross_exactly():
    document = notification(observed_ms=1_700_000_000_123, end_ms=1_700_000_600_456)
    document["ProblemDetailsJSONv2"]["huge"] = 123456789012345678901234567890
    sent = job(user_id="u", token="t", body=encode(document), received_at=utcnow())
    received = crossed(sent)
    assert "123456789012345678901234567890" in from_wire(to_wire(sent)).notification.details.text
    assert received.notification.observed_at == sent.notification.observed_at
    assert received.received_at == sent.received_at


def test_a_users_deliveries_stay_on_one_thread_while_any_is_held():
    router = Router(2)
    first = router.take("alice")
    assert router.take("alice") == first  # held: in arrival order on the same thread
    bob = router.take("bob")
    assert bob != first  # a new user goes to the thread with fewer deliveries
    router.done(["alice"])
    assert router.take("alice") == first  # one of alice's still held
    router.done(["alice", "alice"])
    # alice has none left: she goes where there are fewest (bob's one is on the other thread)
    assert router.take("alice") == first
    carol = router.take("carol")
    assert router.take("carol") == carol == first
    router.done(["alice"])
    # alice, free again, leaves carol's busy thread for the other one
    assert router.take("alice") == bob


def test_users_spread_over_the_threads():
    router = Router(2)
    threads = [router.take(f"user-{number}") for number in range(8)]
    assert sorted(threads) == [0, 0, 0, 0, 1, 1, 1, 1]


def test_a_batch_that_meets_a_lock_error_of_the_driver_runs_again(database):
    """The driver's statements raise the DBAPI's own errors (a deadlock, a lock timeout), not
    SQLAlchemy's: the batch is run again all the same."""
    calls: list[int] = []

    class Contended(WebhookWriter):
        def process(self, jobs):
            calls.append(len(jobs))
            if len(calls) == 1:
                raise database.engine.dialect.dbapi.OperationalError("deadlock detected")
            return [Answer(200, {"stored": True}) for _ in jobs]

    answered: list[tuple[int, Answer]] = []
    writer = Contended(database, answered.extend)
    try:
        writer.put(to_wire(job(user_id="u", token="t", body=b"{}", received_at=utcnow(), id=7)))
        wait_until(lambda: answered, what="the answer")
    finally:
        writer.stop(5)
    assert answered == [(7, Answer(200, {"stored": True}))]
    assert calls == [1, 1]


def test_a_users_stuck_batch_holds_up_only_that_users_thread(database, monkeypatch):
    """One user's batch waiting on a lock (another replica writing the same problem, say) leaves the
    other writer thread to everyone else: the same user's next delivery waits behind it, another
    user's is answered meanwhile."""
    monkeypatch.setattr(writer, "WRITER_THREADS_SQLITE", 2)
    monkeypatch.setattr(writer, "WRITER_THREADS_POSTGRESQL", 2)
    release = threading.Event()

    class Stuck(WebhookWriter):
        def process(self, jobs):
            if any(job.user_id == "alice" for job in jobs):
                assert release.wait(10)
            return [Answer(200, {"user": job.user_id}) for job in jobs]

    answered: list[tuple[int, Answer]] = []
    stuck = Stuck(database, answered.extend)
    try:
        for number, user_id in enumerate(["alice", "alice", "bob"], start=1):
            stuck.put(to_wire(job(user_id=user_id, token="t", body=b"{}", received_at=utcnow(), id=number)))
        wait_until(lambda: answered, what="bob's answer")
        assert [job_id for job_id, _answer in answered] == [3]
        release.set()
        wait_until(lambda: len(answered) == 3, what="alice's answers")
    finally:
        release.set()
        stuck.stop(5)
    assert sorted(job_id for job_id, _answer in answered) == [1, 2, 3]


@pytest.fixture
def own_server(settings, database):
    """A server of its own, so killing its writer leaves the shared one alone."""
    app = create_app(settings, database)
    with serve_in_thread(app) as server:
        yield app, server


def stored(database) -> int:
    with database.session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Notification))


def test_a_killed_writer_is_replaced_and_nothing_acknowledged_is_lost(own_server, account, database):
    app, server = own_server
    wired = wire_connection(database, app.state.secret_box, account.user_id)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.post(wired.url, content=encode(notification(pid="-1", observed_ms=1_700_000_000_000)))
        assert first.status_code == 200
        writer = app.state.webhook_writer._process
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=10)

        answers = []
        for attempt in range(5):
            body = encode(notification(pid="-2", observed_ms=1_700_000_000_000 + attempt))
            answers.append(client.post(wired.url, content=body))
            if answers[-1].status_code == 200:
                break
        # The delivery that finds the writer gone may be refused ("send it again"); the next is stored.
        assert answers[-1].status_code == 200, [answer.text for answer in answers]
        assert all(answer.status_code in (200, 500) for answer in answers)
        assert app.state.webhook_writer._process.pid != writer.pid
    assert stored(database) == 1 + sum(answer.status_code == 200 for answer in answers)


def test_the_writer_ends_with_the_server(settings, database):
    app = create_app(settings, database)
    with serve_in_thread(app):
        writer = app.state.webhook_writer._process
        assert writer.poll() is None
    wait_until(lambda: writer.poll() is not None, what="the writer process to end")


def test_an_application_served_again_on_a_new_event_loop_gets_a_writer_there(settings, database, account):
    app = create_app(settings, database)
    wired = wire_connection(database, app.state.secret_box, account.user_id)
    pids = []
    for server_number in range(2):
        # Without the lifespan nothing stops the writer between the two: the second server's event loop
        # cannot use the first one's connection to it.
        with serve_in_thread(app, lifespan="off") as server, httpx.Client(base_url=server.url) as client:
            body = encode(notification(pid=f"-{server_number + 10}"))
            assert client.post(wired.url, content=body).status_code == 200
            pids.append(app.state.webhook_writer._process.pid)
    assert pids[0] != pids[1]
    assert stored(database) == 2
    app.state.webhook_writer._process.kill()
