"""``POST /dynatrace/webhook/{user_id}``: the hot path.

A plain ASGI endpoint (no request objects, no dependency injection) reads and parses the body, then hands
it to the process's single writer thread. The writer commits whatever has queued up in one transaction
(group commit: one fsync for many deliveries) and only then resolves each request, so every 2xx answer is
durable. Authentication happens inside that transaction, against the stored secret hash, so a rotated
secret or a disconnect takes effect at once and in every process.

That transaction holds the lifecycle step and queues the rest (correlation, analysis, enrichment) as
follow-ups; the writer carries them out once deliveries stop queueing, so a burst is acknowledged at
intake speed and each problem is correlated once for all its deliveries meanwhile. Whoever reads
incidents first has its own follow-ups done (``deps.get_current_user``); under a long burst the writer
still gives them a little time between batches, so none waits longer than ``MAX_FOLLOW_UP_LAG``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import sqlalchemy as sa
from sqlalchemy.orm import load_only
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from borealis import intake, jsontext
from borealis.crypto import matches
from borealis.db import Database, utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import PayloadRejected, ProblemNotification, parse_webhook
from borealis.middleware import request_id_var
from borealis.observability import record_webhook
from borealis.problems import service as problems_service

logger = logging.getLogger("borealis.webhook")

PREFIX = "/dynatrace/webhook/"
# API routes under the prefix (user ids are UUIDs, so no delivery path collides with them).
NOT_DELIVERIES = frozenset({PREFIX + "install"})
MAX_BATCH = 256
# After the first delivery of a batch, how long to wait for more: under load a batch then holds about
# one delivery per sender instead of half of them, and each costs half as much of the batch's fixed work.
LINGER_SECONDS = 0.002
MAX_QUEUED = 20_000
# Follow-ups run when no delivery arrived for this long, this many at a time (a delivery that comes
# meanwhile waits for at most one such transaction)...
IDLE_SECONDS = 0.05
IDLE_FOLLOW_UPS = 50
# ... and go on after this much quiet (senders answered a moment ago send again within it).
NEXT_FOLLOW_UPS_SECONDS = 0.005
# ... and, under a burst that never pauses, a few at a time once the oldest waited this long.
MAX_FOLLOW_UP_LAG = 10.0
BUSY_FOLLOW_UPS = 20
_RETRIES = 3
_JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass(slots=True)
class Answer:
    status: int
    body: dict[str, Any]


@dataclass(slots=True)
class _Job:
    user_id: str
    token: str
    notification: ProblemNotification | None
    rejection: str | None
    malformed: bool
    raw_body: str
    content_type: str | None
    received_at: datetime
    done: Callable[[Answer], None] = field(repr=False, default=lambda _answer: None)
    # Set by ``submit``: where the answer goes (answers of one batch are handed over together).
    loop: asyncio.AbstractEventLoop | None = field(repr=False, default=None)
    future: asyncio.Future[Answer] | None = field(repr=False, default=None)


def _error(status: int, code: str, message: str) -> Answer:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    request_id = request_id_var.get()
    if request_id:
        body["error"]["requestId"] = request_id
    return Answer(status, body)


NOT_FOUND = (
    "no Dynatrace connection for this user id; connect first (POST /dynatrace/connect) and copy the URL "
    "from GET /dynatrace/webhook-url"
)
UNAUTHORIZED = (
    "missing or wrong webhook secret: send the URL from GET /dynatrace/webhook-url as is (its ?token=) "
    "or 'Authorization: Bearer <secret>'"
)


class WebhookWriter:
    """One thread per process that applies queued deliveries in batches, one transaction each."""

    def __init__(self, database: Database, *, max_batch: int = MAX_BATCH) -> None:
        self.database = database
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._checkpointer = _Checkpointer(database) if database.is_sqlite else None
        # When the oldest follow-up this writer queued (or found at start) began waiting; None: none.
        self._follow_ups_since: float | None = time.monotonic()
        # Whether the last pause left follow-ups for the next (then it goes on unless deliveries wait).
        self._more_follow_ups = False
        self._thread = threading.Thread(target=self._run, name="borealis-webhook-writer", daemon=True)
        self._thread.start()

    def backlog(self) -> int:
        return self._queue.qsize()

    async def submit(self, job: _Job) -> Answer:
        job.loop = asyncio.get_running_loop()
        job.future = job.loop.create_future()
        self._queue.put(job)
        return await job.future

    def process(self, jobs: list[_Job]) -> list[Answer]:
        """Run jobs in one transaction and commit; returns one answer per job (raises on failure)."""
        with self.database.session(write=True) as session:
            try:
                answers = _process(session, jobs)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        if self._follow_ups_since is None and any(answer.status == 200 for answer in answers):
            self._follow_ups_since = time.monotonic()
        return answers

    def _next_batch(self) -> list[_Job] | None:
        """The next deliveries to commit together, or None after a pause spent on follow-ups."""
        try:
            jobs = [self._queue.get(timeout=self._pause())]
        except queue.Empty:
            self._more_follow_ups = self.follow_up(IDLE_FOLLOW_UPS) == IDLE_FOLLOW_UPS
            return None
        linger_until = time.monotonic() + LINGER_SECONDS
        while len(jobs) < self.max_batch:
            try:
                jobs.append(self._queue.get(timeout=max(0.0, linger_until - time.monotonic())))
            except queue.Empty:
                break
        # Deliveries came: the next follow-ups wait for a full pause again.
        self._more_follow_ups = False
        return jobs

    def _pause(self) -> float | None:
        """How long without deliveries makes a pause to carry out follow-ups in (None: none wait)."""
        if self._follow_ups_since is None:
            return None
        return NEXT_FOLLOW_UPS_SECONDS if self._more_follow_ups else IDLE_SECONDS

    def follow_up(self, limit: int) -> int:
        """Carry out up to ``limit`` waiting follow-ups in one transaction; returns how many."""
        try:
            with self.database.session(write=True) as session:
                done = intake.follow_up(db_session=session, limit=limit)
                session.commit()
        except Exception:
            # They stay queued; the next pause tries again.
            logger.exception("follow-ups failed")
            return 0
        if done < limit:
            self._follow_ups_since = None
        return done

    def _run(self) -> None:
        while True:
            jobs = self._next_batch()
            if jobs is None:
                continue
            answers = self._answer(jobs)
            if self._checkpointer is not None:
                self._checkpointer.nudge()
            waiting: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Answer], Answer]]] = {}
            for job, answer in zip(jobs, answers, strict=True):
                if job.loop is not None and job.future is not None:
                    waiting.setdefault(job.loop, []).append((job.future, answer))
                else:
                    job.done(answer)
            for loop, settled in waiting.items():
                loop.call_soon_threadsafe(_settle_all, settled)
            since = self._follow_ups_since
            if since is not None and time.monotonic() - since > MAX_FOLLOW_UP_LAG:
                self.follow_up(BUSY_FOLLOW_UPS)

    def _answer(self, jobs: list[_Job]) -> list[Answer]:
        for attempt in range(_RETRIES):
            try:
                return self.process(jobs)
            except sa.exc.OperationalError as exc:
                # Lock timeouts and deadlocks between processes: the whole batch is safe to run again.
                logger.warning("webhook batch attempt %d failed: %s", attempt + 1, type(exc).__name__)
            except Exception:
                logger.exception("webhook batch of %d failed", len(jobs))
                break
        if len(jobs) == 1:
            return [_error(500, "internal_error", "the notification could not be stored; send it again")]
        # One bad delivery must not fail the others: run each alone.
        return [answer for job in jobs for answer in self._answer([job])]


def _settle_all(settled: list[tuple[asyncio.Future[Answer], Answer]]) -> None:
    for future, answer in settled:
        if not future.done():
            future.set_result(answer)


class _Checkpointer:
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


def _process(session: sa.orm.Session, jobs: list[_Job]) -> list[Answer]:
    user_ids = sorted({job.user_id for job in jobs})
    connections = {
        connection.user_id: connection for connection in session.scalars(_CONNECTIONS, {"user_ids": user_ids})
    }
    answers: list[Answer | None] = [None] * len(jobs)
    accepted: list[intake.Accepted] = []
    positions: list[int] = []
    for position, job in enumerate(jobs):
        connection = connections.get(job.user_id)
        if connection is None or not connection.connected:
            answers[position] = _error(404, "not_found", NOT_FOUND)
        elif not matches(job.token, connection.webhook_secret_hash):
            answers[position] = _error(401, "not_authenticated", UNAUTHORIZED)
        elif job.notification is None:
            problems_service.record_rejected(
                db_session=session,
                connection_id=connection.id,
                reason=job.rejection or "unusable body",
                raw_body=job.raw_body,
                content_type=job.content_type,
                received_at=job.received_at,
            )
            status, code = (400, "malformed_payload") if job.malformed else (422, "invalid_payload")
            answers[position] = _error(status, code, job.rejection or "unusable body")
        else:
            positions.append(position)
            accepted.append(
                intake.Accepted(connection, job.notification, "webhook", job.raw_body, job.received_at)
            )
    results = intake.ingest_many(db_session=session, items=accepted, follow_up_now=False)
    for position, result in zip(positions, results, strict=True):
        answers[position] = Answer(200, result.as_answer())
    return [answer for answer in answers if answer is not None]


# What a delivery needs of its connection: who, the secret's hash, whether it is connected, and the times
# intake moves forward (``intake._touch_connections``).
_CONNECTIONS = (
    sa.select(Connection)
    .options(
        load_only(
            Connection.id,
            Connection.user_id,
            Connection.token_ciphertext,
            Connection.webhook_secret_hash,
            Connection.last_webhook_at,
            Connection.last_test_notification_at,
        )
    )
    .where(Connection.user_id.in_(sa.bindparam("user_ids", expanding=True)))
)


def get_writer(app: Any) -> WebhookWriter:
    """The writer of this application, started on first use."""
    writer = getattr(app.state, "webhook_writer", None)
    if writer is None:
        with _writer_lock:
            writer = getattr(app.state, "webhook_writer", None)
            if writer is None:
                writer = WebhookWriter(app.state.database)
                app.state.webhook_writer = writer
    return writer


_writer_lock = threading.Lock()


class WebhookEndpoint:
    """The ASGI endpoint. Refuses before queueing what needs no database: no secret, oversized body."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send, user_id: str) -> None:
        started = time.perf_counter()
        received_at = utcnow()
        token = _token(scope)
        limit = self.app.state.settings.max_body_bytes
        body, too_large = await _read_body(scope, receive, limit)
        if too_large:
            answer = _error(413, "payload_too_large", f"request body is larger than {limit} bytes")
        elif not token:
            answer = _error(401, "not_authenticated", UNAUTHORIZED)
        elif not user_id or len(user_id) > 64 or "/" in user_id:
            answer = _error(404, "not_found", NOT_FOUND)
        else:
            writer = get_writer(self.app)
            if writer.backlog() > MAX_QUEUED:
                answer = _error(503, "busy", "too many notifications queued; Dynatrace will send it again")
            else:
                try:
                    answer = await writer.submit(_job(scope, user_id, token, body, received_at))
                except Exception:
                    logger.exception("webhook delivery failed")
                    answer = _error(
                        500, "internal_error", "the notification could not be stored; send it again"
                    )
        await _send(send, answer)
        outcome = answer.body.get("outcome") if answer.status == 200 else answer.body["error"]["code"]
        record_webhook(str(outcome), time.perf_counter() - started if answer.status == 200 else None)


class WebhookFastPath:
    """Answers ``POST /dynatrace/webhook/{user_id}`` ahead of the middleware stack (sessions, access
    log, routing): the one endpoint Dynatrace hammers gets the shortest path. Everything else passes."""

    def __init__(self, app: ASGIApp, endpoint: WebhookEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(PREFIX)
            and scope["method"] == "POST"
            and scope["path"] not in NOT_DELIVERIES
        ):
            user_id = scope["path"][len(PREFIX) :]
            request_id = _request_id(scope)
            raw_id = request_id.encode("latin-1", "replace")

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"].append((b"x-request-id", raw_id))
                await send(message)

            token = request_id_var.set(request_id)
            try:
                await self.endpoint(scope, receive, send_with_id, user_id)
            finally:
                request_id_var.reset(token)
            return
        await self.app(scope, receive, send)


# Request ids of this process: a random prefix and a counter (as unique as the middleware's random ones
# for finding a request in the logs, without a system call per delivery).
_REQUEST_PREFIX = secrets.token_hex(4)
_request_numbers = itertools.count(1)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id" and value:
            return value.decode("latin-1")[:64]
    return f"{_REQUEST_PREFIX}{next(_request_numbers) & 0xFFFFFFFF:08x}"


def _job(scope: Scope, user_id: str, token: str, body: bytes, received_at: datetime) -> _Job:
    notification: ProblemNotification | None = None
    rejection: str | None = None
    malformed = False
    try:
        notification = parse_webhook(body)
    except PayloadRejected as exc:
        rejection, malformed = exc.message, exc.malformed
    raw = body.decode("utf-8", "replace")
    if "\x00" in raw:
        raw = raw.replace("\x00", "\ufffd")
    content_type = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
    return _Job(user_id, token, notification, rejection, malformed, raw, content_type, received_at)


def _token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credential = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credential.strip():
                return credential.strip()
    query = scope.get("query_string", b"")
    if b"token=" not in query:
        return None
    if b"%" not in query and b"+" not in query:
        # Nothing to unquote (the URL from /webhook-url): split it by hand, as parse_qs would.
        for part in query.split(b"&"):
            name, _, value = part.partition(b"=")
            if name == b"token" and value:
                return value.decode("latin-1")
        return None
    values = parse_qs(query.decode("latin-1")).get("token")
    return values[0] if values and values[0] else None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> tuple[bytes, bool]:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            return b"", True
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


async def _send(send: Send, answer: Answer) -> None:
    payload = jsontext.dumps(answer.body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def install(app: Any) -> None:
    """Put the webhook in front of the application's middleware stack (see ``WebhookFastPath``)."""
    build = app.build_middleware_stack
    endpoint = WebhookEndpoint(app)

    def build_with_webhook() -> ASGIApp:
        return WebhookFastPath(build(), endpoint)

    app.build_middleware_stack = build_with_webhook
