"""Pure ASGI middleware: cheap enough for the webhook hot path."""

from __future__ import annotations

import contextvars
import json
import logging
import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from borealis.errors import PayloadTooLarge

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
INTERNAL_ERROR = "something went wrong on our side; the request id helps us"
logger = logging.getLogger("borealis")


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestIdMiddleware:
    """Tag each request with an id (the caller's ``X-Request-ID`` or a new one) for logs and answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
                break
        request_id = request_id or secrets.token_hex(8)
        token = request_id_var.set(request_id)
        raw_id = request_id.encode("latin-1", "replace")

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", raw_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Answered here, while the id is known: the framework's last-resort handler runs outside
            # this middleware, where the answer would carry no id.
            if started:
                raise
            logger.exception("unhandled error: %s", type(exc).__name__)
            body = {"error": {"code": "internal_error", "message": INTERNAL_ERROR, "requestId": request_id}}
            await _send_json(send_with_id, 500, body)
        finally:
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """Refuse bodies over the limit with 413 before the application reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_json(send, 413, self._error())
                return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge(self.max_bytes)
            return message

        response_started = False
        replaced = False

        async def tracking_send(message: Message) -> None:
            # Whoever read the body may have turned the refusal into an answer of its own (a parser's
            # 400): a body over the limit is answered 413 all the same.
            nonlocal response_started, replaced
            if message["type"] == "http.response.start":
                response_started = True
                if too_large and message["status"] != 413:
                    replaced = True
                    await _send_json(send, 413, self._error())
                    return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except Exception:
            if too_large and not response_started:
                await _send_json(send, 413, self._error())
            else:
                raise

    def _error(self) -> dict[str, object]:
        error = {
            "code": "payload_too_large",
            "message": f"request body is larger than {self.max_bytes} bytes",
        }
        request_id = request_id_var.get()
        if request_id:
            error["requestId"] = request_id
        return {"error": error}


class _BodyTooLarge(PayloadTooLarge):
    """Raised from ``receive`` mid-body; whoever reads the body may answer it as any 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"request body is larger than {max_bytes} bytes")
