"""Logs: JSON lines with the request or job they belong to, an access log, and secrets redacted.

Every layer logs through the standard library; ``configure_logging`` (called by the entry points) sends
it out as JSON, and ``redact`` masks API keys, tokens and webhook secrets in anything that could carry
them (job failure reasons, error messages).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from borealis.middleware import request_id_var

# --- redaction -----------------------------------------------------------------------------------------

_REDACTED = "[REDACTED]"
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]] = [
    # Borealis API keys.
    (re.compile(r"\bbrl_[A-Za-z0-9_\-]+"), "brl_" + _REDACTED),
    # Dynatrace tokens (dt0c01.<id>.<secret>, and the other dt0xNN kinds): keep only the kind.
    (re.compile(r"\b(dt0[a-z][0-9]{2})\.[^\s\"'&,;)]+"), r"\1." + _REDACTED),
    # Authorization header values.
    (re.compile(r"\b(Api-Token|Bearer|Basic)\s+[^\s\"',;]+", re.IGNORECASE), r"\1 " + _REDACTED),
    # Query strings and key=value text: the webhook's ?token=, and anything named like a secret.
    (
        re.compile(r"\b((?:[\w-]*token|[\w-]*secret|password|api_?key)=)[^&\s\"'#]+", re.IGNORECASE),
        r"\1" + _REDACTED,
    ),
    # JSON text: "apiToken": "...", "webhookSecret": "...", "password": "...".
    (
        re.compile(r"(\"[\w-]*(?:token|secret|password|api_?key)[\w-]*\"\s*:\s*\")[^\"]*(\")", re.IGNORECASE),
        r"\1" + _REDACTED + r"\2",
    ),
]


def redact(text: str) -> str:
    """The text with API keys, Dynatrace tokens, authorization values and ``token=`` values masked."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_redact_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


# --- structured logs -----------------------------------------------------------------------------------

# The job a worker thread is running, so its log lines say which one.
job_context_var: ContextVar[tuple[int, str] | None] = ContextVar("job_context", default=None)

_STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    # uvicorn adds color_message: the same text with terminal colours.
    | {"message", "asctime", "taskName", "color_message"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id or job, extras; secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["requestId"] = request_id
        job = job_context_var.get()
        if job is not None:
            entry["jobId"], entry["jobKind"] = job
        for name, value in record.__dict__.items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_") and name not in entry:
                entry[name] = _redact_value(value)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def json_handler(stream: TextIO | None = None) -> logging.Handler:
    """A stream handler that writes redacted JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: str = "INFO", stream: TextIO | None = None) -> None:
    """Send every log record (ours, uvicorn's, libraries') as JSON to stderr; for serve and worker."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(json_handler(stream))
    root.setLevel(level)
    # httpx logs every request line at INFO; our own client logs what matters.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)


# --- access log ----------------------------------------------------------------------------------------

access_logger = logging.getLogger("borealis.access")


def log_access(scope: Scope, status: int, started: float) -> None:
    """The access line of one request (method, path with the query, status, milliseconds); the log's
    formatter redacts secrets in the query. Callers check ``access_logger`` is at DEBUG first."""
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("path", "") + (f"?{query}" if query else "")
    access_logger.debug(
        "%s %s %s",
        scope.get("method", "?"),
        path,
        status,
        extra={
            "method": scope.get("method"),
            "path": path,
            "status": status,
            "durationMs": round((time.perf_counter() - started) * 1000, 2),
        },
    )


class AccessLogMiddleware:
    """One DEBUG line per request (``log_access``). At the default INFO level it costs one level check.
    Webhook deliveries, answered ahead of this middleware, write the same line themselves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.DEBUG):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            log_access(scope, status, started)
