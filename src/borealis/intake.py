"""The flow of one accepted notification across concepts: parse result -> lifecycle -> follow-up steps.

Everything here runs in the caller's transaction (the webhook's group commit, or a sync job), so a
problem, its notification and whatever follows from it are committed together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import ProblemNotification, from_api_problem, template_report
from borealis.incidents import service as incidents_service
from borealis.problems import lifecycle
from borealis.problems import service as problems_service
from borealis.rca import service as rca_service
from borealis.sync import service as sync_service

SOURCES = problems_service.SOURCES


@dataclass(slots=True)
class Accepted:
    """A notification from an authenticated sender, ready to ingest."""

    connection: Connection
    notification: ProblemNotification
    source: str = "webhook"
    raw_body: str = ""
    received_at: datetime | None = None


@dataclass(slots=True)
class IngestResult:
    """What happened to one notification; ``alert_id`` is the problem's id (None for a test)."""

    outcome: str
    alert_id: int | None
    problem_id: str | None
    pid: str | None
    state: str | None

    def as_answer(self) -> dict[str, Any]:
        return {
            "received": True,
            "outcome": self.outcome,
            "problemId": self.problem_id,
            "pid": self.pid,
            "state": self.state,
            "alertId": self.alert_id,
        }


def ingest(
    *,
    db_session: Session,
    connection: Connection,
    notification: ProblemNotification,
    source: str = "webhook",
    raw_body: str = "",
    received_at: datetime | None = None,
) -> IngestResult:
    """Ingest one notification; returns what happened to it."""
    accepted = Accepted(connection, notification, source, raw_body, received_at)
    return ingest_many(db_session=db_session, items=[accepted])[0]


def ingest_api_problem(
    *,
    db_session: Session,
    connection: Connection,
    problem: dict[str, Any],
    received_at: datetime | None = None,
) -> IngestResult:
    """Ingest a v2 problem object from ``GET /api/v2/problems`` (source ``api``); it lands on the same
    record as the webhook's notifications for that problem."""
    import json

    notification = from_api_problem(problem)
    raw = json.dumps(problem, separators=(",", ":"), default=str)
    return ingest(
        db_session=db_session,
        connection=connection,
        notification=notification,
        source="api",
        raw_body=raw,
        received_at=received_at,
    )


def ingest_many(*, db_session: Session, items: Sequence[Accepted]) -> list[IngestResult]:
    """Ingest notifications in order, in the caller's transaction; returns one result per item."""
    results: list[IngestResult | None] = [None] * len(items)
    deliveries: list[problems_service.Delivery] = []
    positions: list[int] = []
    for position, item in enumerate(items):
        if item.source not in SOURCES:
            raise ValueError(f"unknown source {item.source!r}")
        received_at = item.received_at or utcnow()
        item.received_at = received_at
        notification = item.notification
        if notification.is_test:
            results[position] = _record_test(db_session, item, received_at)
            continue
        positions.append(position)
        deliveries.append(
            problems_service.Delivery(
                connection_id=item.connection.id,
                user_id=item.connection.user_id,
                notification=notification,
                source=item.source,
                raw_body=item.raw_body,
                received_at=received_at,
            )
        )

    # Correlation lock first: every writer takes it before any problem row, never after.
    for user_id in sorted({delivery.user_id for delivery in deliveries}):
        incidents_service.lock_user(db_session=db_session, user_id=user_id)
    applied = problems_service.apply_notifications(db_session=db_session, deliveries=deliveries)
    changes: dict[int, incidents_service.ProblemChange] = {}
    created: set[int] = set()
    enrich: dict[int, tuple[int, str, str]] = {}
    for position, outcome in zip(positions, applied, strict=True):
        results[position] = IngestResult(
            outcome=outcome.outcome,
            alert_id=outcome.problem_id,
            problem_id=outcome.display_id,
            pid=outcome.pid,
            state=outcome.state,
        )
        if outcome.outcome == lifecycle.DUPLICATE:
            continue
        # Once per problem, with its columns as the whole batch left them.
        changes.setdefault(outcome.problem_id, incidents_service.ProblemChange(outcome.row, outcome.previous))
        if outcome.outcome == lifecycle.CREATED:
            created.add(outcome.problem_id)
        if outcome.outcome in (lifecycle.CREATED, lifecycle.UPDATED):
            enrich[outcome.problem_id] = (
                outcome.problem_id,
                items[position].connection.user_id,
                outcome.state,
            )

    # Follow-up steps, in this same transaction: correlation into incidents (skipping problems whose
    # correlated columns did not change), an RCA for new problems, enrichment of changed open ones.
    incidents = incidents_service.on_problems_changed(db_session=db_session, changes=list(changes.values()))
    rca_service.after_ingest_many(
        db_session=db_session,
        incidents=[incident for problem_id, incident in incidents.items() if problem_id in created],
    )
    sync_service.request_enrichments(db_session=db_session, problems=list(enrich.values()))

    # Connections last: every writer locks problems before the connection row, never the reverse.
    for item in items:
        connection = item.connection
        if item.source == "webhook":
            _touch(connection, "last_webhook_at", item.received_at)
        if item.notification.is_test:
            last = connection.last_test_notification_at
            if last is None or last <= item.received_at:
                connection.last_test_notification_at = item.received_at
                connection.last_test_report = template_report(item.notification, item.received_at)
    return [result for result in results if result is not None]


def _record_test(db_session: Session, item: Accepted, received_at: datetime) -> IngestResult:
    """A test notification checks the template; it never becomes a problem or an incident."""
    notification = item.notification
    problems_service.record_test_notification(
        db_session=db_session,
        connection_id=item.connection.id,
        notification=notification,
        raw_body=item.raw_body,
        source=item.source,
        received_at=received_at,
    )
    return IngestResult(
        outcome=lifecycle.TEST,
        alert_id=None,
        problem_id=notification.display_id,
        pid=notification.pid,
        state=notification.state,
    )


def _touch(connection: Connection, attribute: str, when: datetime | None) -> None:
    current = getattr(connection, attribute)
    if when is not None and (current is None or current < when):
        setattr(connection, attribute, when)
