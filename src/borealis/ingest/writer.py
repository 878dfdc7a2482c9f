"""The webhook writer: a process beside the server that commits deliveries in batches.

Python runs one thread of a process at a time, and a delivery costs work in two places: the server's
(HTTP, parsing the body, answering) and the writer's (authenticating, the lifecycle step, SQL, the
commit). In one process those add up; in two they run on two cores at once.
The server starts the writer (``WriterClient``) and talks to it over a socket pair: it parses each
delivery and sends it on, and gets the answers back a batch at a time. On PostgreSQL it starts several
(``WriterPool``), and a workspace's deliveries go to one of them at a time.

The writer commits whatever has queued up in one transaction (group commit: one fsync for many
deliveries) and only then answers each, so every 2xx is durable. That transaction holds the lifecycle
step and records the rest (correlation, analysis, enrichment) as follow-ups with a job that carries them
out (``borealis.jobs.follow_ups``, on the workers, in short transactions of their own). The writer never
carries out follow-ups and never takes a lock that background work holds for long: it answers at intake
speed whatever the workers do, and each problem is correlated once for all its deliveries meanwhile.
Whoever reads incidents first has its own follow-ups done (``borealis.api.deps.CorrelatedUser``).

If the server goes away (stopped, or killed), the writer sees its socket close and exits; if the writer
dies, the deliveries it held are answered 500 ("send it again") and the next delivery starts another.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import sqlalchemy as sa

from borealis import jsontext
from borealis.db import Database
from borealis.driver import Driver
from borealis.ingest.delivery import NOT_STORED, Answer, Job, error, from_wire, process, to_wire

logger = logging.getLogger("borealis.webhook")

# A batch is whatever queued up while the last one ran, this many at most (waiting for more would only
# add latency: the server keeps working meanwhile, on its own core).
MAX_BATCH = 256
# Writer processes on PostgreSQL unless the settings say (``webhook_writers``): one per two cores, as
# each needs about a core of its own and the database as much again. Each has one transaction in
# flight, with its batch sent as one pipeline: threads in one process would take turns at its one
# interpreter lock. On two cores, 32 senders: one writer stored 2,520/s, two 2,340/s, three 1,980/s,
# and one process of two threads 2,030/s. SQLite takes one writer at a time: one process.
DEFAULT_WRITERS = max(1, min(8, (os.cpu_count() or 1) // 2))
# The module the writer's process runs: an entry point that installs the start-up hooks intake asks
# (does a change matter to correlation), then calls ``serve``.
WRITER_PROCESS = "borealis.assembly"
_RETRIES = 3
# When this process last handed a delivery to a writer (``time.monotonic``; 0: never).
_last_delivery = 0.0


def receiving(within: float = 0.05) -> bool:
    """Whether this process handed a webhook delivery to its writer in the last ``within`` seconds: work
    that can wait (carrying out follow-ups in the same process) gives way to a burst while it lasts."""
    return time.monotonic() - _last_delivery < within


# Frames on the socket: a 4-byte length and JSON. To the writer: the settings, then one delivery each
# (``delivery.to_wire``); back: the answers of a batch.
_LENGTH = struct.Struct("!I")


# --- the server's end -----------------------------------------------------------------------------------


class WriterClient:
    """Starts the writer process, hands it deliveries, and routes its answers to the waiting requests."""

    def __init__(self, database_url: str, *, log_level: str = "WARNING") -> None:
        self.database_url = database_url
        self.log_level = log_level
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Answer]] = {}
        self._channel: _Channel | None = None
        self._connecting: asyncio.Lock | None = None
        self._connecting_loop: asyncio.AbstractEventLoop | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._socket: socket.socket | None = None
        self._spawn()

    def backlog(self) -> int:
        """Deliveries handed over and not answered yet."""
        return len(self._pending)

    async def submit(self, job: Job) -> Answer:
        """Hand a parsed delivery to the writer; returns its answer once it is committed."""
        channel = self._channel
        if channel is None or channel.closed or channel.loop is not asyncio.get_running_loop():
            channel = await self._connect()
        global _last_delivery
        _last_delivery = time.monotonic()
        job.id = next(self._ids)
        future = channel.loop.create_future()
        self._pending[job.id] = future
        channel.send(_frame(to_wire(job)))
        return await future

    async def start(self) -> None:
        """Connect to the writer on the running event loop (else the first delivery does)."""
        await self._connect()

    async def stop(self, timeout: float = 10.0) -> None:
        """Close the socket (the writer finishes its batch and exits) and wait for the process."""
        self._answer_pending()
        if self._channel is not None:
            self._channel.close()
        elif self._socket is not None:
            self._socket.close()
        self._channel, self._socket = None, None
        process_ = self._process
        if process_ is not None:
            try:
                await asyncio.to_thread(process_.wait, timeout)
            except subprocess.TimeoutExpired:
                process_.kill()

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", WRITER_PROCESS, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal stops the server, which then closes the socket.
            start_new_session=True,
        )
        theirs.close()
        settings = jsontext.dumps({"database_url": self.database_url, "log_level": self.log_level})
        ours.sendall(_frame(settings.encode()))
        self._socket = ours

    async def _connect(self) -> _Channel:
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._connecting_loop is not loop:
            self._connecting, self._connecting_loop = asyncio.Lock(), loop
        async with self._connecting:
            channel = self._channel
            if channel is not None and not channel.closed:
                if channel.loop is loop:
                    return channel
                # The application is served on another event loop now (the last one ended without
                # ``stop``): this one gets a writer of its own.
                self._channel, self._socket = None, None
                if self._process is not None:
                    self._process.kill()
            if self._socket is None:
                self._spawn()
            assert self._socket is not None
            _, channel = await loop.create_unix_connection(lambda: _Channel(self, loop), sock=self._socket)
            self._channel = channel
            return channel

    def _answer_pending(self) -> None:
        """Answer every delivery still waiting "send it again" (its transaction, if any, rolled back
        or committed: Dynatrace's retry then lands as a duplicate at worst)."""
        for future in self._pending.values():
            if not future.done():
                future.set_result(error(500, "internal_error", NOT_STORED))
        self._pending.clear()

    def _settle(self, answers: list[list[Any]]) -> None:
        for job_id, status, body in answers:
            future = self._pending.pop(job_id, None)
            if future is not None and not future.done():
                future.set_result(Answer(status, body))

    def _lost(self, channel: _Channel) -> None:
        """The writer went away: answer what it held, and start another on the next delivery."""
        if channel is not self._channel:
            return
        if self._pending:
            logger.error("the webhook writer stopped with %d deliveries unanswered", len(self._pending))
        self._answer_pending()
        self._channel, self._socket = None, None
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


class WriterPool:
    """The server's writer processes (``WriterClient`` each). A workspace's deliveries go to one of them at
    a time (``Router``): two writers' batches never wait for each other's rows (a problem, the workspace's
    counts, the workspace's follow-up job), and a workspace's deliveries are written in the order they came."""

    def __init__(self, clients: list[WriterClient]) -> None:
        self.clients = clients
        self._router = Router(len(clients))

    @classmethod
    def spawn(
        cls, database_url: str, *, log_level: str = "WARNING", writers: int | None = None
    ) -> WriterPool:
        """Start the writers of a server (``writers``: how many on PostgreSQL; SQLite has one)."""
        count = 1 if database_url.startswith("sqlite") else writers or DEFAULT_WRITERS
        return cls([WriterClient(database_url, log_level=log_level) for _ in range(count)])

    def backlog(self) -> int:
        """Deliveries handed over and not answered yet."""
        return sum(client.backlog() for client in self.clients)

    async def submit(self, job: Job) -> Answer:
        """Hand a parsed delivery to its workspace's writer; returns its answer once it is committed."""
        client = self.clients[self._router.take(job.workspace_id)]
        try:
            return await client.submit(job)
        finally:
            self._router.done(job.workspace_id)

    async def start(self) -> None:
        for client in self.clients:
            await client.start()

    async def stop(self, timeout: float = 10.0) -> None:
        await asyncio.gather(*(client.stop(timeout) for client in self.clients))


class _Channel(asyncio.Protocol):
    """The socket to the writer on the server's event loop: deliveries out (those of one turn of the loop
    in one write), batches of answers in."""

    def __init__(self, client: WriterClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.loop = loop
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._outbox: list[bytes] = []
        self._inbox = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def send(self, frame: bytes) -> None:
        if not self._outbox:
            self.loop.call_soon(self._flush)
        self._outbox.append(frame)

    def _flush(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._outbox))
        self._outbox.clear()

    def data_received(self, data: bytes) -> None:
        self._inbox += data
        start = 0
        while len(self._inbox) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._inbox, start)
            end = start + _LENGTH.size + length
            if len(self._inbox) < end:
                break
            self.client._settle(jsontext.loads(bytes(self._inbox[start + _LENGTH.size : end])))
            start = end
        del self._inbox[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.client._lost(self)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


def _frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


# --- the writer's end -----------------------------------------------------------------------------------


class WebhookWriter:
    """Applies queued jobs in batches, one transaction each, on a thread of its own; hands each
    batch's answers (job id, answer) to ``answer``."""

    def __init__(
        self,
        database: Database,
        answer: Callable[[list[tuple[int, Answer]]], None],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.database = database
        self.answer = answer
        self.max_batch = max_batch
        self._checkpointer = Checkpointer(database) if database.is_sqlite else None
        # Deliveries in their wire form (read back on the thread); None: stop.
        self._inbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="borealis-webhook-writer", daemon=True)
        self._thread.start()

    def put(self, wire: bytes) -> None:
        """Queue a delivery as ``delivery.to_wire`` wrote it."""
        self._inbox.put(wire)

    def stop(self, timeout: float | None = None) -> None:
        """Apply what is queued, then end the thread."""
        self._inbox.put(None)
        self._thread.join(timeout)

    def process(self, jobs: list[Job]) -> list[Answer]:
        """Run jobs in one transaction and commit; returns one answer per job (raises on failure)."""
        # Leaving the block closes the session, which rolls back whatever did not commit. On PostgreSQL
        # the batch is one pipeline: a round trip only where a read needs its answer, and the writes
        # go with the commit.
        with self.database.session(write=True) as session, Driver.of(session).pipeline(session):
            answers = process(session, jobs)
            session.commit()
        return answers

    def _run(self) -> None:
        while True:
            jobs, stopping = self._next_batch()
            if jobs:
                answers = self._answer(jobs)
                if self._checkpointer is not None:
                    self._checkpointer.nudge()
                self.answer([(job.id, answer) for job, answer in zip(jobs, answers, strict=True)])
            if stopping:
                return

    def _next_batch(self) -> tuple[list[Job], bool]:
        """The next deliveries to commit together, and whether the server closed the socket."""
        wires: list[bytes] = []
        item = self._inbox.get()
        while item is not None:
            wires.append(item)
            if len(wires) == self.max_batch:
                return [from_wire(wire) for wire in wires], False
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return [from_wire(wire) for wire in wires], False
        return [from_wire(wire) for wire in wires], True

    def _answer(self, jobs: list[Job]) -> list[Answer]:
        # The driver's statements raise the DBAPI's own errors, SQLAlchemy's its wrapped ones.
        passing = (sa.exc.OperationalError, self.database.engine.dialect.dbapi.OperationalError)
        for attempt in range(_RETRIES):
            try:
                return self.process(jobs)
            except passing as exc:
                # Lock timeouts and deadlocks between processes: the whole batch is safe to run again.
                logger.warning("webhook batch attempt %d failed: %s", attempt + 1, type(exc).__name__)
            except Exception:
                logger.exception("webhook batch of %d failed", len(jobs))
                break
        if len(jobs) == 1:
            return [error(500, "internal_error", NOT_STORED)]
        # One bad delivery must not fail the others: run each alone.
        return [answer for job in jobs for answer in self._answer([job])]


class Router:
    """Which writer takes a delivery. A workspace with deliveries queued or being written has them all on
    one writer, which takes the next too; a workspace with none goes to the writer with the fewest
    deliveries, so workspaces spread over the writers as they come and go."""

    def __init__(self, writers: int) -> None:
        self._load = [0] * writers
        # workspace id -> [their writer, their deliveries on it]
        self._held: dict[str, list[int]] = {}

    def take(self, workspace_id: str) -> int:
        """The writer for the workspace's next delivery, counted as held until ``done``."""
        held = self._held.get(workspace_id)
        if held is None:
            held = self._held[workspace_id] = [self._load.index(min(self._load)), 0]
        held[1] += 1
        self._load[held[0]] += 1
        return held[0]

    def done(self, workspace_id: str) -> None:
        """One of the workspace's deliveries is answered."""
        held = self._held[workspace_id]
        held[1] -= 1
        self._load[held[0]] -= 1
        if not held[1]:
            del self._held[workspace_id]


class Checkpointer:
    """Copies the SQLite write-ahead log into the database file from a thread of its own.

    Left to SQLite, the commit that finds the log past its limit does this copy itself, and every
    delivery of that batch waits for it. Here a separate connection does it after commits (at most
    every ``PAUSE`` seconds, ``PASSIVE``: it never blocks the writer), so the log stays short and
    commits stay quick; the SQLite engine works outside the GIL meanwhile.
    """

    PAUSE = 0.05

    def __init__(self, database: Database) -> None:
        self.database = database
        self._wanted = threading.Event()
        self._thread = threading.Thread(target=self._run, name="borealis-wal-checkpoint", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        self._wanted.set()

    def _run(self) -> None:
        connection = None
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                if connection is None:
                    connection = self.database.engine.raw_connection()
                connection.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except Exception as exc:  # the next commit asks again; SQLite still checkpoints on its own
                logger.warning("WAL checkpoint failed: %s", type(exc).__name__)
                if connection is not None:
                    connection.invalidate()
                    connection = None
            time.sleep(self.PAUSE)


def serve(sock: socket.socket) -> None:
    """The writer process: read deliveries until the server closes the socket, then finish and exit.

    This thread reads deliveries; the writer thread applies them.
    """
    inbox = sock.makefile("rb")
    settings = jsontext.loads(_read(inbox, _LENGTH.unpack(_read(inbox, _LENGTH.size))[0]))
    from borealis.logs import configure_logging

    configure_logging(settings["log_level"])
    # A batch that meets a dropped connection is run again (``_RETRIES``): no check before each.
    database = Database(settings["database_url"], ping=False)
    sending = threading.Lock()

    def answer(answers: list[tuple[int, Answer]]) -> None:
        payload = jsontext.dumps([[job_id, a.status, a.body] for job_id, a in answers]).encode()
        try:
            with sending:
                sock.sendall(_frame(payload))
        except OSError:
            pass  # the server is gone: nobody waits for these answers

    writer = WebhookWriter(database, answer)
    gc.collect()
    gc.freeze()
    try:
        while True:
            head = inbox.read(_LENGTH.size)
            if len(head) < _LENGTH.size:
                break
            writer.put(_read(inbox, _LENGTH.unpack(head)[0]))
    except EOFError:
        pass
    finally:
        writer.stop()
        database.dispose()


def _read(inbox: BinaryIO, size: int) -> bytes:
    data = inbox.read(size)
    if len(data) < size:
        raise EOFError
    return data


def main(fd: int) -> None:
    """The writer process, once its entry point installed the hooks."""
    # The server closes the socket to stop the writer; signals meant for the server are not for it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(socket.socket(fileno=fd))
