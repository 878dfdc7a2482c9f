"""The flow of one accepted notification: parse result -> lifecycle -> a recorded follow-up.

The lifecycle step and the follow-up it queues (correlation into incidents, an analysis for a new
incident, enrichment) are written in the caller's transaction, so a problem, its notification and what
must follow from it are committed together or not at all. The follow-up itself is carried out above this
layer (``borealis.jobs.follow_ups``): by a job, in short transactions of its own (the webhook and sync),
or for the problems just written in this transaction too (``follow_up_now``: enrichment and direct
callers, through the installed hooks).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from borealis import jobstore
from borealis.db import utcnow
from borealis.driver import Driver
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import template_report
from borealis.dynatrace.problem_details import from_api_problem
from borealis.dynatrace.problem_notification import ProblemNotification
from borealis.ingest.hooks import installed as hooks
from borealis.problems import lifecycle
from borealis.problems import service as problems_service
from borealis.problems.models import ENDED_STATES, FollowUp

SOURCES = problems_service.SOURCES
# The job that carries out a workspace's queued follow-ups (``borealis.jobs.follow_ups``).
FOLLOW_UP_JOB = "problem.follow_up"
FOLLOW_UP_MAX_ATTEMPTS = 20
_follow_ups: sa.Table = FollowUp.__table__  # type: ignore[assignment]
_connections: sa.Table = Connection.__table__  # type: ignore[assignment]


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


def ingest_many(
    *,
    db_session: Session,
    items: Sequence[Accepted],
    follow_up_now: bool = True,
    being_enriched: Collection[int] = (),
) -> list[IngestResult]:
    """Ingest notifications in order, in the caller's transaction; returns one result per item.

    The lifecycle step writes each problem and queues its follow-up (``FollowUp``) in this transaction.
    A job per workspace (``FOLLOW_UP_JOB``) carries the follow-ups out later, in short transactions of its
    own. With ``follow_up_now`` the follow-ups of the problems this call changed (theirs only) run here
    too, so the caller commits those problems and their incidents together; the webhook and sync jobs
    pass False. ``being_enriched`` names the problems whose enrichment this write is: they ask for no
    second one.
    """
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
                workspace_id=item.connection.workspace_id,
                notification=notification,
                source=item.source,
                raw_body=item.raw_body,
                received_at=received_at,
            )
        )

    workspace_ids = sorted({delivery.workspace_id for delivery in deliveries})
    if follow_up_now:
        # Correlation lock first: every step that correlates takes it before any problem row.
        for workspace_id in workspace_ids:
            hooks().lock_workspace(db_session=db_session, workspace_id=workspace_id)
    applied = problems_service.apply_notifications(db_session=db_session, deliveries=deliveries)
    changed: dict[int, problems_service.Applied] = {}
    for position, outcome in zip(positions, applied, strict=True):
        results[position] = IngestResult(
            outcome=outcome.outcome,
            alert_id=outcome.problem_id,
            problem_id=outcome.display_id,
            pid=outcome.pid,
            state=outcome.state,
        )
        if outcome.outcome != lifecycle.DUPLICATE:
            # Once per problem, with its columns as the whole batch left them.
            changed.setdefault(outcome.problem_id, outcome)
    with Driver.of(db_session).pipeline(db_session):
        waiting = _queue_follow_ups(db_session, list(changed.values()), being_enriched=being_enriched)
        # Then the connections, the incidents, the jobs: the lock order of docs/architecture.md.
        _touch_connections(db_session, items)
    if follow_up_now and waiting:
        hooks().follow_up(db_session=db_session, problem_ids=sorted(changed))
        # Only what is left (states to replay after another problem's) needs the job.
        waiting = _users_still_waiting(db_session, sorted(changed))
    _request_follow_up_jobs(db_session, waiting)
    return [result for result in results if result is not None]


def _users_still_waiting(db_session: Session, problem_ids: list[int]) -> set[str]:
    statement = sa.select(FollowUp.workspace_id).where(FollowUp.problem_id.in_(problem_ids)).distinct()
    return set(db_session.scalars(statement))


def follow_up_key(workspace_id: str) -> str:
    return f"workspace:{workspace_id}"


def _request_follow_up_jobs(db_session: Session, workspace_ids: Collection[str]) -> None:
    """The job that carries out these workspaces' follow-ups (one queued per workspace: a burst folds into it)."""
    requests = [
        jobstore.JobRequest(
            key=follow_up_key(workspace_id),
            workspace_id=workspace_id,
            payload={},
            max_attempts=FOLLOW_UP_MAX_ATTEMPTS,
        )
        for workspace_id in sorted(workspace_ids)
    ]
    jobstore.enqueue_many(db_session=db_session, kind=FOLLOW_UP_JOB, requests=requests)


def _queue_follow_ups(
    db_session: Session, changed: Sequence[problems_service.Applied], *, being_enriched: Collection[int] = ()
) -> set[str]:
    """Record what each changed problem still needs, a row per change (the job merges a problem's rows
    when it carries them out); returns the workspaces who have follow-ups waiting now.

    Only inserts: nothing here waits on a follow-up that the job is carrying out meanwhile.
    """
    picture_changed = hooks().picture_changed
    now = utcnow()
    inserts: list[dict[str, Any]] = []
    for applied in changed:
        correlate = applied.previous is None or picture_changed(applied.previous, applied.row)
        # An open problem created or changed is fetched again, unless this write is its enrichment.
        enrich = (
            applied.outcome in (lifecycle.CREATED, lifecycle.UPDATED)
            and applied.state not in ENDED_STATES
            and applied.problem_id not in being_enriched
        )
        if not (correlate or enrich):
            continue
        previous = applied.previous
        states = [list(step) for step in applied.states]
        inserts.append(
            {
                "problem_id": applied.problem_id,
                "workspace_id": applied.row["workspace_id"],
                "created": previous is None,
                "correlate": correlate,
                "enrich": enrich,
                "previous_keys": None if previous is None else hooks().index_keys(previous),
                "states": bounded_states(states),
                "next_at": _next_at(states, now),
                "queued_at": now,
                "version": applied.row["notification_count"],
            }
        )
    if inserts:
        driver = Driver.of(db_session)
        writer = driver.writer(_follow_ups, list(inserts[0]))
        driver.execute_many(db_session, writer.sql, writer.params(inserts))
    return {row["workspace_id"] for row in inserts}


# States replayed per follow-up at most: the first and the newest (a problem flapping all through a
# burst keeps its first and latest flips on the timeline).
_MAX_STATES = 16


def bounded_states(states: list[Any]) -> list[Any]:
    return states if len(states) <= _MAX_STATES else states[:2] + states[-(_MAX_STATES - 2) :]


def _next_at(states: list[list[Any]], now: datetime) -> int:
    """When the first state of a new follow-up arrived (its queueing time if it took none)."""
    timed = [at for _state, at in states if at]
    return timed[0] if timed else int(now.timestamp() * 1_000_000)


def pending_follow_ups(*, db_session: Session, workspace_id: str | None = None) -> bool:
    """Whether any follow-up (of this workspace, or of any workspace) is waiting."""
    statement = sa.select(FollowUp.id)
    if workspace_id is not None:
        statement = statement.where(FollowUp.workspace_id == workspace_id)
    return db_session.scalar(statement.limit(1)) is not None


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


def _touch_connections(db_session: Session, items: Sequence[Accepted]) -> None:
    """Record on each connection when its webhook last delivered, and its newest test notification,
    with a statement each (the loaded objects are updated as committed: nothing left to flush)."""
    webhook_at: dict[str, tuple[Connection, datetime]] = {}
    tests: dict[str, tuple[Connection, datetime, ProblemNotification]] = {}
    for item in items:
        connection, at = item.connection, item.received_at
        if at is None:
            continue
        if item.source == "webhook" and (
            connection.id not in webhook_at or webhook_at[connection.id][1] < at
        ):
            webhook_at[connection.id] = (connection, at)
        if item.notification.is_test and (connection.id not in tests or tests[connection.id][1] <= at):
            tests[connection.id] = (connection, at, item.notification)
    driver = Driver.of(db_session)
    # In connection order, as every writer does: two batches never wait for each other in a circle.
    for connection_id in sorted(webhook_at.keys() | tests.keys()):
        if connection_id in webhook_at:
            _touch_webhook(db_session, driver, *webhook_at[connection_id])
        if connection_id in tests:
            _touch_test(db_session, driver, *tests[connection_id])


# "Last webhook at" is kept to this much: within it the connection's row is left alone, so concurrent
# batches of one connection (two replicas, two writer threads) do not queue on that row for it.
WEBHOOK_TOUCH_EVERY = timedelta(seconds=1)


def _touch_webhook(db_session: Session, driver: Driver, connection: Connection, at: datetime) -> None:
    if connection.last_webhook_at is None or connection.last_webhook_at <= at - WEBHOOK_TOUCH_EVERY:
        touch = driver.statement(_connections, _TOUCH_WEBHOOK, ("last_webhook_at", "id", "last_webhook_at"))
        driver.execute(db_session, touch.sql, touch.params([{"id": connection.id, "last_webhook_at": at}])[0])
        set_committed_value(connection, "last_webhook_at", at)


def _touch_test(
    db_session: Session,
    driver: Driver,
    connection: Connection,
    at: datetime,
    notification: ProblemNotification,
) -> None:
    last = connection.last_test_notification_at
    if last is None or last <= at:
        report = template_report(notification, at)
        row = {"id": connection.id, "last_test_notification_at": at, "last_test_report": report}
        test = driver.statement(_connections, _TOUCH_TEST, _TOUCH_TEST_PARAMS)
        driver.execute(db_session, test.sql, test.params([row])[0])
        set_committed_value(connection, "last_test_notification_at", at)
        set_committed_value(connection, "last_test_report", report)


# Only forward: a delivery committed meanwhile by another process may be newer.
_TOUCH_WEBHOOK = (
    "UPDATE connections SET last_webhook_at = {mark} WHERE id = {mark}"
    " AND (last_webhook_at IS NULL OR last_webhook_at < {mark})"
)
_TOUCH_TEST = (
    "UPDATE connections SET last_test_notification_at = {mark}, last_test_report = {mark} WHERE id = {mark}"
    " AND (last_test_notification_at IS NULL OR last_test_notification_at <= {mark})"
)
_TOUCH_TEST_PARAMS = ("last_test_notification_at", "last_test_report", "id", "last_test_notification_at")
