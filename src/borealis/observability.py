"""Metrics: Prometheus counters and histograms, and job counts read from the database at scrape time.

Metrics live in this one module so every layer records into the same objects: the webhook receiver calls
``record_webhook``, the Dynatrace client calls ``record_dynatrace_call``, the worker calls ``record_job``.
Counters and histograms are per process (prometheus-client's default registry): scrape every ``borealis
serve`` replica on ``/metrics`` and every ``borealis worker`` on its ``--metrics-port``; Prometheus sums
them. Job counts by kind and state come from the database at scrape time, so any replica reports the
whole picture.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from borealis.db import Database
from borealis.jobstore import listing as jobs_listing
from borealis.jobstore.models import JobState

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
