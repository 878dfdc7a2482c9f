"""Helpers of the enrichment and sync tests: connecting to the fake Dynatrace, waiting for jobs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa

from borealis.db import Database
from borealis.jobstore.models import Job
from borealis.problems.models import Notification, Problem
from borealis.simulation import ALL_SCOPES, FakeDynatrace, to_millis


def connect(account: Any, fake: FakeDynatrace, scopes: Sequence[str] = ALL_SCOPES) -> str:
    """Connect the account to the fake environment with a new token; returns the token."""
    token = fake.add_token(list(scopes))
    response = account.client.post(
        "/dynatrace/connect", json={"environmentUrl": fake.environment_url, "apiToken": token}
    )
    assert response.status_code == 200, response.text
    return token


def jobs(database: Database, kind: str | None = None) -> list[Job]:
    with database.session() as session:
        statement = sa.select(Job).order_by(Job.id)
        if kind is not None:
            statement = statement.where(Job.kind == kind)
        found = list(session.scalars(statement))
        session.expunge_all()
        return found


def settled(database: Database, kind: str) -> list[Job]:
    """The jobs of a kind once every one of them is done or failed (empty while any is pending)."""
    found = jobs(database, kind)
    return found if found and all(job.state in ("done", "failed") for job in found) else []


def problems(database: Database) -> list[Problem]:
    with database.session() as session:
        found = list(session.scalars(sa.select(Problem).order_by(Problem.id)))
        session.expunge_all()
        return found


def history(database: Database, problem_id: int) -> list[tuple[str, str | None]]:
    """(source, state) of a problem's notifications, oldest first."""
    with database.session() as session:
        rows = session.execute(
            sa.select(Notification.source, Notification.state)
            .where(Notification.problem_id == problem_id)
            .order_by(Notification.received_at, Notification.id)
        )
        return [(source, state) for source, state in rows]


def webhook_for(problem: dict[str, Any], state: str = "OPEN") -> dict[str, Any]:
    """What Dynatrace's webhook sends for an API problem with the suggested template."""
    return {
        "ProblemID": problem["displayId"],
        "PID": problem["problemId"].split("_")[0],
        "State": state,
        "ProblemTitle": problem["title"],
        "ProblemSeverity": problem["severityLevel"],
        "ProblemImpact": problem["impactLevel"],
        "ImpactedEntities": [
            {"type": item["entityId"]["type"], "name": item["name"], "entity": item["entityId"]["id"]}
            for item in problem["impactedEntities"]
        ],
        "Tags": "",
        "ProblemDetailsJSONv2": problem,
    }


def deliver(account: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Post a notification to the account's webhook URL as Dynatrace would; returns the answer."""
    url = account.client.get("/dynatrace/webhook-url").json()["webhookUrl"]
    response = httpx.post(url, json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def entity(entity_id: str, name: str) -> dict[str, Any]:
    """An entity reference as the problems API writes it."""
    return {"entityId": {"id": entity_id, "type": entity_id.split("-")[0]}, "name": name}


def closed(problem: dict[str, Any]) -> None:
    """Dynatrace closes the problem now."""
    problem["status"] = "CLOSED"
    problem["endTime"] = to_millis(datetime.now(UTC))
