"""Webhook test helpers: a wired Dynatrace connection and notification bodies like Dynatrace sends."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from borealis.crypto import SecretBox, digest, new_secret
from borealis.db import Database
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import parse_webhook
from borealis.dynatrace.template import SUGGESTED_PAYLOAD
from borealis.ingest import intake
from borealis.jobs import follow_ups
from tests.support.shared import WEBHOOK_SAMPLES

SAMPLES = str(WEBHOOK_SAMPLES)
BASE_MS = 1_700_000_000_000


@dataclass
class Wired:
    workspace_id: str
    connection_id: str
    secret: str

    @property
    def path(self) -> str:
        return f"/dynatrace/webhook/{self.workspace_id}"

    @property
    def url(self) -> str:
        return f"{self.path}?token={self.secret}"


def followed_up(database: Database) -> int:
    """Carry out every waiting follow-up, as the webhook writer does once deliveries pause; returns how
    many. Tests call it where deliveries arrive far apart in real life (each one correlated before the
    next), and before reading incidents from the database directly (the API does this itself)."""
    return follow_ups.follow_up_all(database=database)


def wire_connection(database: Database, secret_box: SecretBox, workspace_id: str) -> Wired:
    """Store a connected Dynatrace connection for the user, as /connect would."""
    secret = new_secret("whs_")
    with database.session(write=True) as session:
        connection = Connection(
            workspace_id=workspace_id,
            environment_url="https://abc12345.live.dynatrace.com",
            token_ciphertext=secret_box.encrypt("dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX." + "A" * 64),
            webhook_secret_ciphertext=secret_box.encrypt(secret),
            webhook_secret_hash=digest(secret),
        )
        session.add(connection)
        session.commit()
        return Wired(workspace_id=workspace_id, connection_id=connection.id, secret=secret)


def notification(
    pid: str = "-4242424242424242424",
    *,
    state: str = "OPEN",
    problem_id: str = "P-1001",
    title: str = "CPU saturation",
    severity: str = "RESOURCE_CONTENTION",
    impact: str = "INFRASTRUCTURE",
    entities: list[dict[str, str]] | None = None,
    tags: str = "env:prod, [Kubernetes]namespace:shop",
    observed_ms: int | None = BASE_MS,
    end_ms: int | None = None,
    root_cause: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A body from the suggested template, with a v2 details document carrying Dynatrace's times."""
    entities = (
        entities
        if entities is not None
        else [{"type": "HOST", "name": "web-1", "entity": "HOST-0000000000000001"}]
    )
    body: dict[str, Any] = {
        "ProblemID": problem_id,
        "PID": pid,
        "State": state,
        "ProblemTitle": title,
        "ProblemSeverity": severity,
        "ProblemImpact": impact,
        "ProblemURL": f"https://abc12345.live.dynatrace.com/#problems/problemdetails;pid={pid}",
        "ImpactedEntity": f"{title} on Host web-1",
        "ImpactedEntityNames": ", ".join(e["name"] for e in entities),
        "ImpactedEntities": entities,
        "Tags": tags,
    }
    if observed_ms is not None:
        body["ProblemDetailsJSONv2"] = {
            "problemId": f"{pid}_{min(BASE_MS, observed_ms)}V2",
            "displayId": problem_id,
            "title": title,
            "status": "CLOSED" if state.upper() in ("RESOLVED", "CLOSED") else "OPEN",
            "startTime": min(BASE_MS, observed_ms),
            "endTime": end_ms if end_ms is not None else -1,
            "rootCauseEntity": root_cause,
            "managementZones": [{"id": "1", "name": "Shop"}],
            "evidenceDetails": {
                "totalCount": 1,
                "details": [{"evidenceType": "EVENT", "startTime": observed_ms, "endTime": -1}],
            },
        }
    body.update(extra)
    return body


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def ingest_raw(database: Database, connection_id: str, raw: bytes) -> intake.IngestResult:
    """Ingest one delivery in its own committed transaction, as one replica's webhook would."""
    with database.session(write=True) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        result = intake.ingest(
            db_session=session, connection=connection, notification=parse_webhook(raw), raw_body=raw.decode()
        )
        session.commit()
        return result


def filled_template() -> bytes:
    """The suggested payload as Dynatrace fills it in for "Send test notification"."""
    values = {
        "{ProblemID}": "999",
        "{PID}": "99999",
        "{State}": "OPEN",
        "{ProblemTitle}": "Dynatrace problem notification test run",
        "{ProblemSeverity}": "AVAILABILITY",
        "{ProblemImpact}": "INFRASTRUCTURE",
        "{ProblemURL}": "https://example.com",
        "{ImpactedEntity}": "MyHost1",
        "{ImpactedEntityNames}": "MyHost1",
        "{ImpactedEntities}": '[{"type": "HOST", "name": "MyHost1", "entity": "HOST-1"}]',
        "{Tags}": "testtag1",
        "{ProblemDetailsJSONv2}": '{"problemId": "99999", "startTime": 1, "endTime": -1}',
    }
    body = SUGGESTED_PAYLOAD
    for placeholder, value in values.items():
        body = body.replace(placeholder, value)
    return body.encode()
