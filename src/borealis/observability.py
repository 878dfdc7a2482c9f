"""Operations: Prometheus metrics, JSON logs with the request id, and redaction of secrets.

Metrics live in this one module so every layer records into the same objects: the webhook receiver calls
``record_webhook``, the Dynatrace client calls ``record_dynatrace_call``, the worker calls ``record_job``.
Counters and histograms are per process (prometheus-client's default registry): scrape every ``borealis
serve`` replica on ``/metrics`` and every ``borealis worker`` on its ``--metrics-port``; Prometheus sums
them. Job counts by kind and state come from the database at scrape time, so any replica reports the
whole picture.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from borealis.db import Database
from borealis.dynatrace.transport import set_api_call_recorder
from borealis.jobs import listing as jobs_listing
from borealis.jobs.models import JobState
from borealis.middleware import request_id_var

logger = logging.getLogger("borealis.observability")

# --- metrics -------------------------------------------------------------------------------------------

WEBHOOKS = Counter(
    "borealis_webhooks",
    "Webhook deliveries by outcome (accepted, duplicate, test, unauthorized, invalid, ...).",
    ["outcome"],
)
WEBHOOK_INGEST_SECONDS = Histogram(
    "borealis_webhook_ingest_seconds",
    "Time from receiving a webhook to acknowledging it (stored durably).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
JOBS_FINISHED = Counter(
    "borealis_jobs_finished",
    "Job attempts by kind and outcome (done, retry, failed, lease_lost, released).",
    ["kind", "outcome"],
)
JOB_DURATION_SECONDS = Histogram(
    "borealis_job_duration_seconds",
    "Wall time of one job attempt, by kind and outcome.",
    ["kind", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
DYNATRACE_API_CALLS = Counter(
    "borealis_dynatrace_api_calls",
    "Dynatrace API calls by endpoint (e.g. 'GET /api/v2/problems/{id}') and HTTP status, or the "
    "failure kind (timeout, unreachable, tls, refused, error) when no answer came.",
    ["endpoint", "status"],
)
DYNATRACE_RATE_LIMITED = Counter(
    "borealis_dynatrace_rate_limited",
    "Dynatrace answers with 429 Too Many Requests, by endpoint template.",
    ["endpoint"],
)


def record_webhook(outcome: str, seconds: float | None = None) -> None:
    """Count one webhook delivery; ``seconds`` is the ingest latency when it was processed."""
    counter = _webhooks_by_outcome.get(outcome)
    if counter is None:
        # Looking a label up costs more than counting; the outcomes are a handful.
        counter = _webhooks_by_outcome[outcome] = WEBHOOKS.labels(outcome=outcome)
    counter.inc()
    if seconds is not None:
        WEBHOOK_INGEST_SECONDS.observe(seconds)


_webhooks_by_outcome: dict[str, Any] = {}


def record_dynatrace_call(endpoint: str, status: int | str) -> None:
    """Count one Dynatrace API call (the client's ``record_api_call`` hook). ``endpoint`` is a template
    such as ``GET /api/v2/problems/{id}``, never a URL with ids in it, so the label set stays small."""
    DYNATRACE_API_CALLS.labels(endpoint=endpoint, status=str(status)).inc()
    if str(status) == "429":
        DYNATRACE_RATE_LIMITED.labels(endpoint=endpoint).inc()


# The Dynatrace client reports every call through its hook; route it here wherever metrics are loaded.
set_api_call_recorder(record_dynatrace_call)


def record_job(kind: str, outcome: str, seconds: float | None = None) -> None:
    """Count one finished job attempt and, when it ran, its duration."""
    JOBS_FINISHED.labels(kind=kind, outcome=outcome).inc()
    if seconds is not None:
        JOB_DURATION_SECONDS.labels(kind=kind, outcome=outcome).observe(seconds)


class _JobsByState(Collector):
    """``borealis_jobs{kind,state}`` read from the database, so it is right whichever process answers."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "borealis_jobs", "Jobs in the database by kind and state.", labels=["kind", "state"]
        )
        session = self.database.session()
        try:
            counts = jobs_listing.counts_by_kind_and_state(db_session=session)
        except Exception as exc:
            # A scrape while the database is away still returns this process's metrics.
            logger.warning("job counts unavailable for /metrics: %s", type(exc).__name__)
            counts = {}
        finally:
            session.close()
        kinds = sorted({kind for kind, _state in counts})
        for kind in kinds:
            for state in JobState:
                family.add_metric([kind, state.value], counts.get((kind, state.value), 0))
        yield family


metrics_router = APIRouter(tags=["health"])


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The metrics in Prometheus text format.",
            "content": {CONTENT_TYPE_PLAIN_0_0_4: {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    """Prometheus text format: this process's counters plus job counts from the database."""
    jobs_registry = CollectorRegistry(auto_describe=False)
    jobs_registry.register(_JobsByState(request.app.state.database))
    body = generate_latest(REGISTRY) + generate_latest(jobs_registry)
    return Response(body, media_type=CONTENT_TYPE_PLAIN_0_0_4)


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
