"""Operations: /metrics in the Prometheus text format, and JSON log lines with the request id and no
secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from borealis.dynatrace.transport import record_api_call, set_api_call_recorder
from borealis.jobstore import enqueueing as jobs_enqueueing
from borealis.logs import configure_logging, json_handler, redact
from borealis.middleware import request_id_var
from borealis.observability import record_dynatrace_call, record_job, record_webhook
from tests.support.webhooks import notification, wire_connection

FAMILIES = {
    "borealis_webhooks": "counter",
    "borealis_webhook_ingest_seconds": "histogram",
    "borealis_jobs": "gauge",
    "borealis_jobs_finished": "counter",
    "borealis_job_duration_seconds": "histogram",
    "borealis_dynatrace_api_calls": "counter",
    "borealis_dynatrace_rate_limited": "counter",
}


def scrape(client) -> dict[str, object]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def sample(families, family: str, name: str, **labels: str) -> float:
    for candidate in families[family].samples:
        if candidate.name == name and all(candidate.labels.get(k) == v for k, v in labels.items()):
            return candidate.value
    return 0.0


def test_metrics_has_every_family_in_prometheus_text_format(client):
    text = client.get("/metrics").text
    for name, kind in FAMILIES.items():
        assert f"# TYPE {name}{'_total' if kind == 'counter' else ''} {kind}" in text, name
    assert scrape(client).keys() >= FAMILIES.keys()


def test_metrics_count_webhooks_jobs_and_dynatrace_calls(client, database, account):
    # As importing borealis.observability does (another test may have swapped the hook since).
    set_api_call_recorder(record_dynatrace_call)
    before = scrape(client)
    record_webhook("accepted", 0.004)
    record_job("test.metrics", "done", 0.25)
    # The Dynatrace client's hook feeds the same counters, 429s counted apart.
    record_api_call("GET /api/v2/problems", 200)
    record_api_call("GET /api/v2/problems", 429)
    with database.session(write=True) as session:
        jobs_enqueueing.enqueue(
            db_session=session, kind="problem.enrich", workspace_id=account.workspace_id, key="problem:1"
        )
        session.commit()
    after = scrape(client)

    def grew(family: str, name: str, **labels: str) -> float:
        return sample(after, family, name, **labels) - sample(before, family, name, **labels)

    assert grew("borealis_webhooks", "borealis_webhooks_total", outcome="accepted") == 1
    assert grew("borealis_webhook_ingest_seconds", "borealis_webhook_ingest_seconds_count") == 1
    assert (
        grew("borealis_jobs_finished", "borealis_jobs_finished_total", kind="test.metrics", outcome="done")
        == 1
    )
    assert (
        grew(
            "borealis_job_duration_seconds",
            "borealis_job_duration_seconds_count",
            kind="test.metrics",
            outcome="done",
        )
        == 1
    )
    calls = "borealis_dynatrace_api_calls_total"
    assert grew("borealis_dynatrace_api_calls", calls, endpoint="GET /api/v2/problems", status="200") == 1
    assert grew("borealis_dynatrace_api_calls", calls, endpoint="GET /api/v2/problems", status="429") == 1
    assert (
        grew(
            "borealis_dynatrace_rate_limited",
            "borealis_dynatrace_rate_limited_total",
            endpoint="GET /api/v2/problems",
        )
        == 1
    )
    # Job counts come from the database: every state of a kind that exists, zeros included.
    assert sample(after, "borealis_jobs", "borealis_jobs", kind="problem.enrich", state="queued") == 1
    assert sample(after, "borealis_jobs", "borealis_jobs", kind="problem.enrich", state="failed") == 0


@pytest.fixture
def captured_access_log() -> Iterator[io.StringIO]:
    """The access log as the JSON handler writes it, at DEBUG for the length of a test."""
    stream = io.StringIO()
    handler = json_handler(stream)
    access = logging.getLogger("borealis.access")
    previous = access.level
    access.addHandler(handler)
    access.setLevel(logging.DEBUG)
    yield stream
    access.removeHandler(handler)
    access.setLevel(previous)


def test_log_line_is_json_with_the_request_id_and_secrets_redacted(client, captured_access_log):
    token = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    response = client.get(
        "/healthz",
        params={"token": "webhook-secret-value", "note": token},
        headers={"X-Request-ID": "req-metrics-1"},
    )
    assert response.status_code == 200

    lines = [json.loads(line) for line in captured_access_log.getvalue().splitlines()]
    [entry] = [line for line in lines if line.get("requestId") == "req-metrics-1"]
    assert entry["level"] == "DEBUG"
    assert entry["status"] == 200
    assert entry["path"].startswith("/healthz?token=[REDACTED]")
    assert "webhook-secret-value" not in json.dumps(entry)
    assert "0123456789abcdef" not in json.dumps(entry)
    assert "dt0c01.[REDACTED]" in entry["message"]


def test_a_webhook_delivery_writes_the_access_line_with_its_secret_redacted(
    client, account, app, database, captured_access_log
):
    wired = wire_connection(database, app.state.secret_box, account.workspace_id)
    response = client.post(wired.url, json=notification(), headers={"X-Request-ID": "req-hook-1"})
    assert response.status_code == 200

    lines = [json.loads(line) for line in captured_access_log.getvalue().splitlines()]
    [entry] = [line for line in lines if line.get("requestId") == "req-hook-1"]
    assert (entry["method"], entry["status"]) == ("POST", 200)
    assert entry["path"] == f"{wired.path}?token=[REDACTED]"
    assert wired.secret not in json.dumps(entry)


def test_every_secret_form_is_redacted():
    text = redact(
        "key brl_AbCdEf123_-xyz; Authorization: Api-Token dt0c01.AAAA.BBBB; Bearer s3cr3tvalue; "
        "POST /dynatrace/webhook/u1?token=abc123&x=1; "
        '{"apiToken": "dt0c01.CCCC.DDDD", "webhookSecret": "wh-secret", "password": "hunter22"}'
    )
    for secret in (
        "AbCdEf123",
        "AAAA",
        "BBBB",
        "s3cr3tvalue",
        "abc123",
        "CCCC",
        "DDDD",
        "wh-secret",
        "hunter22",
    ):
        assert secret not in text, secret
    assert "x=1" in text, "other query values stay readable"
    assert "brl_[REDACTED]" in text
    assert "token=[REDACTED]" in text


def test_formatter_redacts_message_arguments_extras_and_exceptions():
    stream = io.StringIO()
    logger = logging.getLogger("borealis.test.redaction")
    logger.propagate = False
    handler = json_handler(stream)
    logger.addHandler(handler)
    token = request_id_var.set("req-7")
    try:
        try:
            raise RuntimeError("lookup failed for dt0c01.EEEE.FFFF")
        except RuntimeError:
            logger.exception(
                "calling with %s", "Api-Token dt0c01.GGGG.HHHH", extra={"url": "https://x/hook?token=IIII"}
            )
    finally:
        request_id_var.reset(token)
        logger.removeHandler(handler)
    entry = json.loads(stream.getvalue())
    assert entry["requestId"] == "req-7"
    assert entry["logger"] == "borealis.test.redaction"
    assert entry["url"] == "https://x/hook?token=[REDACTED]"
    assert "RuntimeError" in entry["exception"]
    for secret in ("EEEE", "FFFF", "GGGG", "HHHH", "IIII"):
        assert secret not in stream.getvalue(), secret


def test_configure_logging_sends_library_records_as_json():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (
        list(root.handlers),
        root.level,
        [logging.getLogger(name).level for name in ("httpx", "httpcore")],
    )
    try:
        configure_logging("INFO", stream)
        logging.getLogger("somelibrary.module").info("Started server process [%d]", 42)
        logging.getLogger("borealis.test").debug("below the level")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        for name, level in zip(("httpx", "httpcore"), saved[2], strict=True):
            logging.getLogger(name).setLevel(level)
        logging.captureWarnings(False)
    [entry] = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert (entry["logger"], entry["message"], entry["level"]) == (
        "somelibrary.module",
        "Started server process [42]",
        "INFO",
    )
