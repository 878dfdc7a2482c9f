"""The webhook writer process: deliveries reach it intact, a writer that dies is replaced, and it ends
with the server."""

from __future__ import annotations

import asyncio
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from borealis import jsontext
from borealis.app import create_app
from borealis.db import StoredJson, utcnow
from borealis.ingest.delivery import Answer, from_wire, job, to_wire
from borealis.ingest.writer import Router, WebhookWriter, WriterPool
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
    received = from_wire(to_wire(sent))
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
    sent = job(workspace_id="u", token="t", body=body, received_at=utcnow(), content_type="text/plain", id=7)
    assert sent.notification is not None or sent.rejection
    crossed(sent)


@pytest.mark.parametrize("body", REJECTED)
def test_a_rejected_body_crosses_with_its_reason(body):
    sent = job(workspace_id="u", token="t", body=body, received_at=utcnow())
    assert sent.notification is None
    assert sent.rejection
    crossed(sent)


def test_long_numbers_and_times_cross_exactly():
    document = notification(observed_ms=1_700_000_000_123, end_ms=1_700_000_600_456)
    document["ProblemDetailsJSONv2"]["huge"] = 123456789012345678901234567890
    sent = job(workspace_id="u", token="t", body=encode(document), received_at=utcnow())
    received = crossed(sent)
    assert "123456789012345678901234567890" in from_wire(to_wire(sent)).notification.details.text
    assert received.notification.observed_at == sent.notification.observed_at
    assert received.received_at == sent.received_at


def test_a_users_deliveries_stay_on_one_writer_while_any_is_held():
    router = Router(2)
    first = router.take("alice")
    assert router.take("alice") == first  # held: in arrival order on the same writer
    bob = router.take("bob")
    assert bob != first  # a new user goes to the writer with fewer deliveries
    router.done("alice")
    assert router.take("alice") == first  # one of alice's still held
    router.done("alice")
    router.done("alice")
    # alice has none left: she goes where there are fewest (bob's one is on the other writer)
    assert router.take("alice") == first
    carol = router.take("carol")
    assert router.take("carol") == carol == first
    router.done("alice")
    # alice, free again, leaves carol's busy writer for the other one
    assert router.take("alice") == bob


def test_users_spread_over_the_writers():
    router = Router(3)
    writers = [router.take(f"user-{number}") for number in range(9)]
    assert sorted(writers) == [0, 0, 0, 1, 1, 1, 2, 2, 2]


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
        writer.put(to_wire(job(workspace_id="u", token="t", body=b"{}", received_at=utcnow(), id=7)))
        wait_until(lambda: answered, what="the answer")
    finally:
        writer.stop(5)
    assert answered == [(7, Answer(200, {"stored": True}))]
    assert calls == [1, 1]


class Held:
    """Stands in for one writer process: answers a delivery when the test releases its user."""

    def __init__(self, answered: list[tuple[int, str]]) -> None:
        self.answered = answered
        self.released: dict[str, asyncio.Event] = {}

    def backlog(self) -> int:
        return 0

    async def submit(self, job):
        await self.released.setdefault(job.workspace_id, asyncio.Event()).wait()
        self.answered.append((job.id, job.workspace_id))
        return Answer(200, {"user": job.workspace_id})


def test_a_users_stuck_batch_holds_up_only_that_users_writer():
    """One user's batch waiting on a lock (another replica writing the same problem, say) leaves the
    other writers to everyone else: the same user's next delivery waits behind it on the same writer,
    another user's is answered meanwhile by another."""

    async def scenario() -> tuple[list[tuple[int, str]], list[int]]:
        answered: list[tuple[int, str]] = []
        pool = WriterPool([Held(answered), Held(answered)])
        sent = [
            asyncio.create_task(
                pool.submit(
                    job(workspace_id=workspace_id, token="t", body=b"{}", received_at=utcnow(), id=number)
                )
            )
            for number, workspace_id in enumerate(["alice", "alice", "bob"], start=1)
        ]
        await asyncio.sleep(0.05)
        writers = [index for index, client in enumerate(pool.clients) if "alice" in client.released]
        for client in pool.clients:
            client.released.setdefault("bob", asyncio.Event()).set()
        await sent[2]
        first = list(answered)
        for client in pool.clients:
            client.released.setdefault("alice", asyncio.Event()).set()
        await asyncio.gather(*sent)
        return first, writers

    # A loop of its own on a thread of its own: the browser tests leave one running on this thread.
    with ThreadPoolExecutor(1) as thread:
        first, writers = thread.submit(asyncio.run, scenario()).result(timeout=30)
    assert first == [(3, "bob")]
    assert len(writers) == 1, "both of alice's deliveries wait on one writer"


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
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        first = client.post(wired.url, content=encode(notification(pid="-1", observed_ms=1_700_000_000_000)))
        assert first.status_code == 200
        writer = app.state.webhook_writer.clients[0]._process
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
        assert app.state.webhook_writer.clients[0]._process.pid != writer.pid
    assert stored(database) == 1 + sum(answer.status_code == 200 for answer in answers)


def test_the_server_starts_the_writers_the_settings_ask_for(settings, database, make_account):
    """On PostgreSQL the server starts the writers the settings ask for (SQLite, one writer at a
    time, gets one), each a process of its own, and two users' deliveries sent at once are all stored."""
    app = create_app(settings.model_copy(update={"webhook_writers": 2}), database)
    users = [make_account(f"sre{number}@example.com") for number in range(2)]
    wired = [wire_connection(database, app.state.secret_box, user.workspace_id) for user in users]
    with serve_in_thread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        pool = app.state.webhook_writer
        assert len(pool.clients) == (1 if database.is_sqlite else 2)
        pids = {writer._process.pid for writer in pool.clients}
        assert len(pids) == len(pool.clients)

        def send(number: int) -> list[int]:
            return [
                client.post(
                    wired[number].url,
                    content=encode(notification(pid=f"-{number}{step}", observed_ms=1_700_000_000_000)),
                ).status_code
                for step in range(5)
            ]

        with ThreadPoolExecutor(2) as pool_of_senders:
            statuses = list(pool_of_senders.map(send, range(2)))
    assert statuses == [[200] * 5, [200] * 5]
    assert stored(database) == 10


def test_the_writer_ends_with_the_server(settings, database):
    app = create_app(settings, database)
    with serve_in_thread(app):
        writer = app.state.webhook_writer.clients[0]._process
        assert writer.poll() is None
    wait_until(lambda: writer.poll() is not None, what="the writer process to end")


def test_an_application_served_again_on_a_new_event_loop_gets_a_writer_there(settings, database, account):
    app = create_app(settings, database)
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    pids = []
    for server_number in range(2):
        # Without the lifespan nothing stops the writer between the two: the second server's event loop
        # cannot use the first one's connection to it.
        with serve_in_thread(app, lifespan="off") as server, httpx.Client(base_url=server.url) as client:
            body = encode(notification(pid=f"-{server_number + 10}"))
            assert client.post(wired.url, content=body).status_code == 200
            pids.append(app.state.webhook_writer.clients[0]._process.pid)
    assert pids[0] != pids[1]
    assert stored(database) == 2
    app.state.webhook_writer.clients[0]._process.kill()
