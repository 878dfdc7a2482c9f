"""Problem operations: apply notifications (batched), keep rejected deliveries, read one alert.

Applying works on many notifications per call so the webhook's group commit costs a handful of
statements per batch, not per delivery. It is safe with several processes on one database: rows are
created with ``ON CONFLICT DO NOTHING`` and then locked (``FOR NO KEY UPDATE`` on PostgreSQL; SQLite's write
transaction already serializes writers) in key order, so concurrent batches queue instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.driver import Driver
from borealis.dynatrace.problem_notification import ProblemNotification
from borealis.problems import lifecycle, search
from borealis.problems.models import Notification, Problem, ProblemCount, RejectedDelivery

SOURCES = ("webhook", "api")
REJECTED_KEPT_PER_CONNECTION = 20
_CHUNK = 200

problems_table: sa.Table = Problem.__table__  # type: ignore[assignment]
notifications_table: sa.Table = Notification.__table__  # type: ignore[assignment]
counts_table: sa.Table = ProblemCount.__table__  # type: ignore[assignment]
rejected_table: sa.Table = RejectedDelivery.__table__  # type: ignore[assignment]

# Columns the lifecycle owns; written back after every apply.
_MUTABLE = (
    "pid",
    "display_id",
    "api_problem_id",
    "title",
    "state",
    "severity",
    "impact",
    "priority",
    "problem_url",
    "impacted_entity",
    "impacted_entities",
    "root_cause_entity_id",
    "root_cause_entity_name",
    "root_cause_entity_type",
    "tags",
    "tags_raw",
    "management_zones",
    "start_time",
    "end_time",
    "details",
    "details_format",
    "search_text",
    "lifecycle",
    "last_received_at",
    "notification_count",
    "duplicate_count",
    "updated_at",
)
# An identical redelivery: counted on the notification it repeats (delivery count, then the time).
_BUMP_DUPLICATE = (
    "UPDATE notifications SET delivery_count = delivery_count + {mark}, last_received_at = {mark}"
    " WHERE problem_id = {mark} AND content_hash = {mark}"
)
_BUMP_DUPLICATE_PARAMS = ("delivery_count", "last_received_at", "problem_id", "content_hash")
_PRUNE_REJECTED = (
    f"DELETE FROM rejected_deliveries WHERE connection_id = {{mark}} AND id NOT IN (SELECT id FROM"  # noqa: S608 (a constant)
    f" rejected_deliveries WHERE connection_id = {{mark}} ORDER BY id DESC LIMIT {REJECTED_KEPT_PER_CONNECTION})"
)


@dataclass(slots=True)
class Delivery:
    """A notification to apply, with where it came from."""

    connection_id: str
    workspace_id: str
    notification: ProblemNotification
    source: str
    raw_body: str
    received_at: datetime


@dataclass(slots=True)
class Applied:
    """What applying one delivery did. ``row`` is the problem's columns as written with the batch and
    ``previous`` its columns before the batch (None when the batch created it), so later steps can
    tell what changed without reading the problem again."""

    outcome: str
    problem_id: int
    pid: str
    display_id: str | None
    state: str
    row: dict[str, Any] = field(default_factory=dict, repr=False)
    previous: dict[str, Any] | None = field(default=None, repr=False)
    # The states the problem took in this batch, in order, each with when (microseconds since the
    # epoch) the delivery that brought it arrived; the first is its state before the batch (at 0).
    states: list[tuple[str, int]] = field(default_factory=list, repr=False)


def apply_notifications(*, db_session: Session, deliveries: Sequence[Delivery]) -> list[Applied]:
    """Apply deliveries in order (several may concern one problem); returns one result per delivery."""
    if not deliveries:
        return []
    dialect = db_session.get_bind().dialect.name
    key_of = [(delivery.connection_id, _key(delivery)) for delivery in deliveries]
    first_of: dict[tuple[str, str], Delivery] = {}
    for key, delivery in zip(key_of, deliveries, strict=True):
        first_of.setdefault(key, delivery)
    keys = sorted(first_of)

    # Most deliveries concern known problems: read (and lock) those first, with the notifications they
    # already have; create the others after. A round trip each.
    hashes = sorted({delivery.notification.content_hash for delivery in deliveries})
    rows, known_hashes, created = _lock_rows(db_session, dialect, keys, hashes)
    missing = [key for key in keys if key not in rows]
    if missing:
        more, more_hashes, created = _lock_rows(
            db_session, dialect, missing, hashes, create=[first_of[key] for key in missing]
        )
        rows.update(more)
        known_hashes |= more_hashes

    # Each problem as it was before this batch (None: the batch created it).
    previous = {row["id"]: None if key in created else dict(row) for key, row in rows.items()}
    counted_as = {pid: None if row is None else _count_key(row) for pid, row in previous.items()}
    results: list[Applied] = []
    new_notifications: dict[tuple[int, str], dict[str, Any]] = {}
    duplicates: dict[tuple[int, str], dict[str, Any]] = {}
    touched: dict[int, dict[str, Any]] = {}
    states: dict[int, list[tuple[str, int]]] = {}
    fresh = set(created)
    for key, delivery in zip(key_of, deliveries, strict=True):
        row = rows[key]
        problem_id = row["id"]
        notification = delivery.notification
        hash_key = (problem_id, notification.content_hash)
        if hash_key in known_hashes or hash_key in new_notifications:
            outcome = lifecycle.DUPLICATE
            row["duplicate_count"] += 1
            pending = new_notifications.get(hash_key)
            if pending is not None:
                pending["delivery_count"] += 1
                pending["last_received_at"] = delivery.received_at
            else:
                bump = duplicates.setdefault(
                    hash_key, {"problem_id": problem_id, "content_hash": hash_key[1], "delivery_count": 0}
                )
                bump["delivery_count"] += 1
                bump["last_received_at"] = delivery.received_at
        else:
            outcome = lifecycle.apply(row, notification)
            if key in fresh:
                outcome = lifecycle.CREATED
                fresh.discard(key)
            row["notification_count"] += 1
            new_notifications[hash_key] = _notification_row(delivery, problem_id, outcome)
        row["last_received_at"] = max(row["last_received_at"], delivery.received_at)
        touched[problem_id] = row
        before = previous[problem_id]
        taken = states.setdefault(problem_id, [] if before is None else [(before["state"], 0)])
        if not taken or taken[-1][0] != row["state"]:
            taken.append((row["state"], _microseconds(delivery.received_at)))
        results.append(
            Applied(
                outcome=outcome,
                problem_id=problem_id,
                pid=row["pid"],
                display_id=row["display_id"],
                state=row["state"],
            )
        )

    driver = Driver.of(db_session)
    # The writes, sent together: nothing here needs the answer of another.
    with driver.pipeline(db_session):
        _write_back(db_session, touched, previous)
        if new_notifications:
            _insert_notifications(db_session, list(new_notifications.values()))
        if duplicates:
            bump = driver.statement(notifications_table, _BUMP_DUPLICATE, _BUMP_DUPLICATE_PARAMS)
            driver.execute_many(db_session, bump.sql, bump.params(list(duplicates.values())))
        _update_counts(db_session, counted_as, touched)
        search.update_terms(db_session=db_session, changes=_text_changes(previous, touched))
    # Results carry the final state of each problem, as committed with this batch.
    for result in results:
        row = touched[result.problem_id]
        result.state = row["state"]
        result.display_id = row["display_id"]
        result.row = row
        result.previous = previous[result.problem_id]
        result.states = states[result.problem_id]
    return results


def record_test_notification(
    *,
    db_session: Session,
    connection_id: str,
    notification: ProblemNotification,
    raw_body: str,
    source: str,
    received_at: datetime,
) -> None:
    """Keep a test notification in the connection's history; it never becomes a problem."""
    delivery = Delivery(connection_id, "", notification, source, raw_body, received_at)
    _insert_notifications(db_session, [_notification_row(delivery, None, lifecycle.TEST)])


def record_rejected(
    *,
    db_session: Session,
    connection_id: str,
    reason: str,
    raw_body: str,
    content_type: str | None,
    received_at: datetime,
) -> None:
    """Keep an unusable delivery for troubleshooting, and only the newest few per connection (through
    the driver: the webhook writes it inside a ``Driver.pipeline``)."""
    driver = Driver.of(db_session)
    row = {
        "connection_id": connection_id,
        "reason": reason,
        "raw_body": raw_body,
        "content_type": (content_type or None) and content_type[:200],
        "received_at": received_at,
    }
    insert = driver.writer(rejected_table, list(row))
    driver.execute(db_session, insert.sql, insert.params([row])[0])
    prune = driver.statement(rejected_table, _PRUNE_REJECTED, ("connection_id", "connection_id"))
    driver.execute(db_session, prune.sql, prune.params([row])[0])


def list_rejected(*, db_session: Session, connection_id: str) -> list[RejectedDelivery]:
    """The kept rejected deliveries of a connection, newest first."""
    return list(
        db_session.scalars(
            sa.select(RejectedDelivery)
            .where(RejectedDelivery.connection_id == connection_id)
            .order_by(RejectedDelivery.id.desc())
        )
    )


def get(*, db_session: Session, problem_id: int) -> Problem | None:
    """The problem with this id, or None."""
    return db_session.get(Problem, problem_id)


def get_by_pid(*, db_session: Session, connection_id: str, pid: str) -> Problem | None:
    """The problem of this connection with this PID (either form), or None."""
    from borealis.dynatrace.problem_notification import pid_key

    return db_session.scalar(
        sa.select(Problem).where(Problem.connection_id == connection_id, Problem.pid_key == pid_key(pid))
    )


def notifications_of(*, db_session: Session, problem_id: int) -> list[Notification]:
    """The notification history of a problem, oldest first."""
    return list(
        db_session.scalars(
            sa.select(Notification)
            .where(Notification.problem_id == problem_id)
            .order_by(Notification.received_at, Notification.id)
        )
    )


# --- internals -----------------------------------------------------------------------------------------


def _key(delivery: Delivery) -> str:
    key = delivery.notification.pid_key
    if key is None:
        raise ValueError("a notification without a PID cannot be applied to a problem")
    return key


def _new_rows(firsts: Sequence[Delivery]) -> list[dict[str, Any]]:
    """The rows of problems seen for the first time, as their first deliveries found them."""
    now = utcnow()
    rows = []
    for delivery in firsts:
        row = lifecycle.new_problem(delivery.notification)
        row.update(
            connection_id=delivery.connection_id,
            workspace_id=delivery.workspace_id,
            first_received_at=delivery.received_at,
            last_received_at=delivery.received_at,
            notification_count=0,
            duplicate_count=0,
            created_at=now,
            updated_at=now,
        )
        rows.append(row)
    return rows


def _lock_rows(
    db_session: Session,
    dialect: str,
    keys: list[tuple[str, str]],
    hashes: list[str],
    *,
    create: Sequence[Delivery] = (),
) -> tuple[dict[tuple[str, str], dict[str, Any]], set[tuple[int, str]], set[tuple[str, str]]]:
    """The stored rows of these (connection, PID key) problems, locked for this transaction (on
    PostgreSQL; SQLite's write transaction holds the whole database) in key order; which of ``hashes``
    each has as a notification already; and the keys this call created. ``create`` (the first
    deliveries of problems not stored yet) are created first, in key order (one another process creates
    at the same time is left to it, and read once it committed). One round trip for all of it.

    The details document stays as stored (``StoredJson``): a delivery only keeps or replaces it."""
    driver = Driver.of(db_session)
    reader = driver.reader(problems_table, undecoded=("details",))
    # NO KEY UPDATE: writers of a problem queue behind each other, while rows that merely reference it
    # (an incident's problems, its index keys) are written meanwhile without waiting.
    lock = " FOR NO KEY UPDATE" if dialect == "postgresql" else ""
    # Pairs OR-ed, not a row-value IN: SQLite reads its whole index for that one.
    pair = f"(problems.connection_id = {driver.mark} AND problems.pid_key = {driver.mark})"
    statements: list[tuple[str, list[Any]]] = []
    new_rows = _new_rows(create)
    for start in range(0, len(new_rows), _CHUNK):
        chunk = new_rows[start : start + _CHUNK]
        insert = driver.inserter(
            problems_table,
            list(chunk[0]),
            rows=len(chunk),
            tail="ON CONFLICT (connection_id, pid_key) DO NOTHING RETURNING connection_id, pid_key",
        )
        statements.append((insert.sql, insert.flat(chunk)))
    inserts = len(statements)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        pairs = " OR ".join([pair] * len(chunk))
        params = [value for key in chunk for value in key]
        statements.append((f"{reader.sql} WHERE {pairs} ORDER BY connection_id, pid_key{lock}", params))
        statements.append(
            (
                "SELECT n.problem_id, n.content_hash FROM notifications n"  # noqa: S608 (markers only)
                f" JOIN problems ON problems.id = n.problem_id WHERE ({pairs})"
                f" AND n.content_hash IN ({driver.marks(len(hashes))})",
                [*params, *hashes],
            )
        )
    results = driver.query_many(db_session, statements)
    created = {(connection_id, pid_key) for found in results[:inserts] for connection_id, pid_key in found}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    known: set[tuple[int, str]] = set()
    for found, found_hashes in zip(results[inserts::2], results[inserts + 1 :: 2], strict=True):
        for row in reader.dicts(found):
            rows[(row["connection_id"], row["pid_key"])] = row
        known.update((problem_id, content_hash) for problem_id, content_hash in found_hashes)
    return rows, known, created


def _write_back(
    db_session: Session, touched: dict[int, dict[str, Any]], previous: dict[int, dict[str, Any] | None]
) -> None:
    """Write the columns the batch changed, one statement per distinct set of changed columns (a
    redelivery with newer evidence changes a handful of the problem's columns, not all of them)."""
    now = utcnow()
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for problem_id, row in touched.items():
        before = previous.get(problem_id)
        row["updated_at"] = now
        if before is None:
            columns = _MUTABLE
        else:
            columns = tuple(name for name in _MUTABLE if row[name] != before[name])
        groups.setdefault(columns, []).append(row)
    driver = Driver.of(db_session)
    for columns, rows in groups.items():
        writer = driver.writer(problems_table, columns, key="id")
        driver.execute_many(db_session, writer.sql, writer.params(rows))


def _microseconds(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _count_key(row: dict[str, Any]) -> tuple[str, str, str, str]:
    return (row["workspace_id"], row["state"] or "", row["severity"] or "", row["impact"] or "")


def _update_counts(
    db_session: Session,
    counted_as: dict[int, tuple[str, str, str, str] | None],
    touched: dict[int, dict[str, Any]],
) -> None:
    """Move each changed problem between its old and new (state, severity, impact) counts."""
    deltas: dict[tuple[str, str, str, str], int] = {}
    for problem_id, row in touched.items():
        before, after = counted_as.get(problem_id), _count_key(row)
        if before == after:
            continue
        if before is not None:
            deltas[before] = deltas.get(before, 0) - 1
        deltas[after] = deltas.get(after, 0) + 1
    changes = [
        {"workspace_id": key[0], "state": key[1], "severity": key[2], "impact": key[3], "count": delta}
        for key, delta in sorted(deltas.items())
        if delta
    ]
    if not changes:
        return
    # In key order (the driver runs them in turn): concurrent writers lock counts in the same order.
    driver = Driver.of(db_session)
    upsert = driver.statement(
        counts_table, _COUNT_UPSERT, ("workspace_id", "state", "severity", "impact", "count")
    )
    driver.execute_many(db_session, upsert.sql, upsert.params(changes))


_COUNT_UPSERT = (
    "INSERT INTO problem_counts (workspace_id, state, severity, impact, count)"
    " VALUES ({mark}, {mark}, {mark}, {mark}, {mark})"
    " ON CONFLICT (workspace_id, state, severity, impact) DO UPDATE SET count = problem_counts.count + excluded.count"
)


def _text_changes(
    previous: dict[int, dict[str, Any] | None], touched: dict[int, dict[str, Any]]
) -> list[search.TextChange]:
    """The problems whose searchable text this batch changed (created ones start from nothing)."""
    changes = []
    for problem_id, row in touched.items():
        before = (previous.get(problem_id) or {}).get("search_text") or ""
        if before != row["search_text"]:
            changes.append(search.TextChange(problem_id, row["workspace_id"], before, row["search_text"]))
    return changes


def _insert_notifications(db_session: Session, rows: list[dict[str, Any]]) -> None:
    driver = Driver.of(db_session)
    writer = driver.writer(notifications_table, tuple(rows[0]))
    driver.execute_many(db_session, writer.sql, writer.params(rows))


def _notification_row(delivery: Delivery, problem_id: int | None, outcome: str) -> dict[str, Any]:
    notification = delivery.notification
    return {
        "problem_id": problem_id,
        "connection_id": delivery.connection_id,
        "source": delivery.source,
        "outcome": outcome,
        "pid": notification.pid,
        "display_id": notification.display_id,
        "state": notification.state,
        "state_raw": notification.state_raw,
        "title": notification.title,
        "observed_at": notification.observed_at,
        "content_hash": notification.content_hash,
        "received_at": delivery.received_at,
        "last_received_at": delivery.received_at,
        "delivery_count": 1,
        "warnings": notification.warnings
        + [f"unreplaced placeholder in {name}" for name in notification.unreplaced],
        "raw_body": delivery.raw_body,
    }


# --- alerts (the list itself is in listing.py) -----------------------------------------------------


def latest_payloads(*, db_session: Session, problem_ids: list[int]) -> dict[int, str]:
    """The newest raw body stored for each problem."""
    if not problem_ids:
        return {}
    newest = (
        sa.select(sa.func.max(notifications_table.c.id))
        .where(notifications_table.c.problem_id.in_(problem_ids))
        .group_by(notifications_table.c.problem_id)
    )
    statement = sa.select(notifications_table.c.problem_id, notifications_table.c.raw_body).where(
        notifications_table.c.id.in_(newest.scalar_subquery())
    )
    return {row.problem_id: row.raw_body for row in db_session.execute(statement)}


def get_in_workspace(*, db_session: Session, workspace_id: str, problem_id: int) -> Problem | None:
    """The problem with this id if it belongs to the workspace, else None."""
    problem = db_session.get(Problem, problem_id)
    return problem if problem is not None and problem.workspace_id == workspace_id else None
