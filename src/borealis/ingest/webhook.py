"""``POST /dynatrace/webhook/{workspace_id}``: the hot path.

``WebhookEndpoint`` reads the body and hands it to the webhook writer, a process of its own
(``writer.py``) that authenticates and commits deliveries in batches, and answers each once it is
durable. Here only what needs no database is refused: no secret, an oversized body, a path that cannot
be a workspace id.

The endpoint is reached two ways, with the same answers: ``WebhookFastPath``, an ASGI wrapper the server
puts around the application (``server.py``), answers deliveries before the middleware stack and the
router; and ``router``, an ordinary route of the application, which documents the endpoint in the
OpenAPI document and serves it wherever the application runs without the wrapper.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response, Security
from fastapi.security import APIKeyQuery, HTTPBearer
from starlette.types import Message, Receive, Scope, Send

from borealis import jsontext
from borealis.db import utcnow
from borealis.dynatrace.template import EXPECTED_FIELDS
from borealis.ingest.delivery import NOT_STORED, UNAUTHORIZED, Answer, error, job
from borealis.ingest.writer import WriterPool
from borealis.logs import access_logger, log_access
from borealis.middleware import request_id_var
from borealis.observability import record_webhook
from borealis.problems.schemas import WebhookAnswer
from borealis.schemas import ErrorResponse

logger = logging.getLogger("borealis.webhook")

PREFIX = "/dynatrace/webhook/"
# API routes under the prefix (workspace ids are UUIDs, so no delivery path collides with them).
NOT_DELIVERIES = frozenset({PREFIX + "install"})
# Deliveries handed to the writer and not answered yet, at most.
MAX_QUEUED = 20_000
# A workspace id and secret the writer accepted are trusted this long to parse bodies here, ahead of the
# writer's check (which every delivery still passes); at most this many are remembered.
TRUSTED_SECONDS = 300.0
MAX_TRUSTED = 10_000
_JSON_HEADERS = [(b"content-type", b"application/json")]


def get_writer(app: Any) -> WriterPool:
    """The writers of this application, started on first use."""
    writer = getattr(app.state, "webhook_writer", None)
    if writer is None:
        with _writer_lock:
            writer = getattr(app.state, "webhook_writer", None)
            if writer is None:
                settings = app.state.settings
                writer = WriterPool.spawn(
                    app.state.database.url, log_level=settings.log_level, writers=settings.webhook_writers
                )
                app.state.webhook_writer = writer
    return writer


_writer_lock = threading.Lock()


class WebhookEndpoint:
    """The ASGI endpoint. Refuses before queueing what needs no database: no secret, oversized body.

    A body is parsed only once its secret is known to be right: here when the writer accepted this
    workspace id and secret a moment ago (parsing then costs the writer nothing), else in the writer after
    it checked the secret. A sender without the secret never has its body read."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._trusted: dict[tuple[str, str], float] = {}

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, workspace_id: str, headers: _Headers
    ) -> None:
        answer = await self.answer(scope, receive, workspace_id, headers)
        if answer is not None:
            await send(
                {"type": "http.response.start", "status": answer.status, "headers": _headers_of(answer)}
            )
            await send({"type": "http.response.body", "body": answer.encoded})

    async def answer(
        self, scope: Scope, receive: Receive, workspace_id: str, headers: _Headers
    ) -> Encoded | None:
        """The answer to one delivery, encoded; None when the sender left before its body ended."""
        started = time.perf_counter()
        received_at = utcnow()
        token = headers.bearer or _query_token(scope)
        limit = self.app.state.settings.max_body_bytes
        try:
            body = None if headers.content_length > limit else await _read_body(receive, limit)
        except ClientGone:
            record_webhook("client_gone", None)
            return None
        if body is None:
            answer = error(413, "payload_too_large", f"request body is larger than {limit} bytes")
        elif not token or not workspace_id or len(workspace_id) > 64 or "/" in workspace_id:
            answer = error(401, "not_authenticated", UNAUTHORIZED)
        else:
            writer = get_writer(self.app)
            if writer.backlog() > MAX_QUEUED:
                answer = error(503, "busy", "too many notifications queued; Dynatrace will send it again")
            else:
                sender = (workspace_id, token)
                trusted = self._trusted.get(sender, 0.0) > time.monotonic()
                try:
                    answer = await writer.submit(
                        job(
                            workspace_id=workspace_id,
                            token=token,
                            body=body,
                            received_at=received_at,
                            content_type=headers.content_type,
                            parse=trusted,
                        )
                    )
                    self._remember(sender, answer.status, trusted=trusted)
                except Exception:
                    logger.exception("webhook delivery failed")
                    answer = error(500, "internal_error", NOT_STORED)
        encoded = _encode(answer)
        outcome = answer.body.get("outcome") if answer.status == 200 else answer.body["error"]["code"]
        record_webhook(str(outcome), time.perf_counter() - started if answer.status == 200 else None)
        if access_logger.isEnabledFor(logging.DEBUG):
            log_access(scope, answer.status, started)
        return encoded

    def _remember(self, sender: tuple[str, str], status: int, *, trusted: bool) -> None:
        """Trust a sender the writer authenticated; forget one it refused."""
        if status == 401:
            self._trusted.pop(sender, None)
        elif not trusted and status < 500:
            if len(self._trusted) >= MAX_TRUSTED:
                self._trusted.clear()
            self._trusted[sender] = time.monotonic() + TRUSTED_SECONDS


class ClientGone(Exception):
    """The sender hung up mid-body: nobody waits for an answer, and nothing is stored."""


class WebhookFastPath:
    """Answers ``POST /dynatrace/webhook/{workspace_id}`` ahead of the middleware stack (sessions, access
    log, routing): the one endpoint Dynatrace hammers gets the shortest path. Everything else passes to
    the application, which answers deliveries the same way through ``router`` where this is left out."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.endpoint = endpoint_of(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].startswith(PREFIX)
            and scope["method"] == "POST"
            and scope["path"] not in NOT_DELIVERIES
        ):
            workspace_id = scope["path"][len(PREFIX) :]
            headers = _read_headers(scope)
            request_id = headers.request_id or _new_request_id()
            raw_id = request_id.encode("latin-1", "replace")

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"].append((b"x-request-id", raw_id))
                await send(message)

            token = request_id_var.set(request_id)
            try:
                await self.endpoint(scope, receive, send_with_id, workspace_id, headers)
            finally:
                request_id_var.reset(token)
            return
        await self.app(scope, receive, send)


def endpoint_of(app: Any) -> WebhookEndpoint:
    """The application's one endpoint (its trusted senders are shared by both ways in)."""
    endpoint = getattr(app.state, "webhook_endpoint", None)
    if endpoint is None:
        endpoint = app.state.webhook_endpoint = WebhookEndpoint(app)
    return endpoint


# Request ids of this process: a random prefix and a counter (as unique as the middleware's random ones
# for finding a request in the logs, without a system call per delivery).
_REQUEST_PREFIX = secrets.token_hex(4)
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    return f"{_REQUEST_PREFIX}{next(_request_numbers) & 0xFFFFFFFF:08x}"


@dataclass(slots=True)
class _Headers:
    """What the webhook reads of a request's headers, found in one pass over them."""

    request_id: str | None = None
    # The first ``Authorization: Bearer`` credential.
    bearer: str | None = None
    # The last Content-Type given.
    content_type: str | None = None
    # The largest Content-Length declared (0: none).
    content_length: int = 0


def _read_headers(scope: Scope) -> _Headers:
    found = _Headers()
    for name, value in scope["headers"]:
        if name == b"authorization":
            if found.bearer is None:
                scheme, _, credential = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and credential.strip():
                    found.bearer = credential.strip()
        elif name == b"content-type":
            found.content_type = value.decode("latin-1")
        elif name == b"content-length":
            if value.isdigit():
                found.content_length = max(found.content_length, int(value))
        elif name == b"x-request-id" and value and found.request_id is None:
            found.request_id = value.decode("latin-1")[:64]
    return found


def _query_token(scope: Scope) -> str | None:
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


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The body, or None once it grows past ``limit``. Raises ``ClientGone`` if the sender left (or was
    cut off for sending too slowly) before the end: a part of a body is never taken for a delivery."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


@dataclass(slots=True)
class Encoded:
    """An answer as it goes on the wire."""

    status: int
    encoded: bytes


def _encode(answer: Answer) -> Encoded:
    if answer.status >= 400:
        request_id = request_id_var.get()
        if request_id:
            answer.body["error"]["requestId"] = request_id
    return Encoded(answer.status, jsontext.dumps(answer.body).encode())


def _headers_of(answer: Encoded) -> list[tuple[bytes, bytes]]:
    return [*_JSON_HEADERS, (b"content-length", str(len(answer.encoded)).encode())]


# The webhook secret, sent either way (the header wins when both are). Declared for the OpenAPI document;
# the endpoint reads them itself, the same way on both ways in.
_SECRET_IN_HEADER = HTTPBearer(
    scheme_name="webhookBearer",
    description="The webhook secret as 'Authorization: Bearer <secret>' (what an installed notification sends).",
    auto_error=False,
)
_SECRET_IN_URL = APIKeyQuery(
    name="token",
    scheme_name="webhookToken",
    description="The webhook secret in the URL's token parameter (the URL from GET /dynatrace/webhook-url).",
    auto_error=False,
)


def _notification_fields() -> dict[str, Any]:
    """The payload template's fields (``EXPECTED_FIELDS``) as JSON schema properties."""
    entity = {
        "type": "object",
        "properties": {name: {"type": "string"} for name in ("type", "name", "entity")},
    }
    expanded = {
        "ImpactedEntities": {"type": "array", "items": entity},
        "ProblemDetailsJSONv2": {"type": "object"},
    }
    return {
        name: {
            "type": "string",
            **expanded.get(name, {}),
            "description": f"Without it Borealis lacks {what}.",
        }
        for name, what in EXPECTED_FIELDS.items()
    }


def _refusal(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


router = APIRouter(tags=["dynatrace"])


@router.post(
    PREFIX + "{workspace_id:path}",
    operation_id="receive_dynatrace_webhook",
    summary="Receive a Dynatrace problem notification",
    dependencies=[Security(_SECRET_IN_HEADER), Security(_SECRET_IN_URL)],
    response_model=WebhookAnswer,
    responses={
        200: {"description": "Stored (or counted as a redelivery, or recorded as a test)."},
        400: _refusal("The body cannot be read as a JSON object (the message says why)."),
        401: _refusal(
            "The webhook secret is missing or wrong, or the workspace id has no connection (one answer for "
            "both, so the answer does not tell which ids exist)."
        ),
        413: _refusal("The body is larger than the limit."),
        422: _refusal("The body has no usable problem identity (the message names what is missing)."),
        500: _refusal("An unexpected error; the notification was not stored."),
        503: _refusal("Too many notifications queued; Dynatrace sends it again."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": _notification_fields(),
                        "additionalProperties": True,
                        "description": (
                            "The notification as the payload template lays it out; every field is optional, "
                            "and what a field's absence costs is in its description."
                        ),
                    }
                }
            },
        }
    },
)
async def receive_webhook(request: Request, workspace_id: str) -> Response:
    """Where Dynatrace's custom integration posts problem notifications. Use the URL and the payload
    template from GET /dynatrace/webhook-url. The body is read as JSON whatever the Content-Type says, up
    to the server's body limit (1 MiB by default). The answer comes once the notification is durably
    stored; Dynatrace's test notification is recorded as a connection check (see GET /dynatrace/status),
    never as a problem. A body with no usable problem is refused and kept for troubleshooting
    (GET /dynatrace/rejected-deliveries)."""
    answer = await endpoint_of(request.app).answer(
        request.scope, request.receive, workspace_id, _read_headers(request.scope)
    )
    if answer is None:  # the sender is gone: nobody reads this
        return Response(status_code=400)
    return Response(answer.encoded, status_code=answer.status, media_type="application/json")
