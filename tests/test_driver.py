"""The hand-written SQL driver against the ORM, on the database of the run: what one path writes the other
reads back unchanged, and both store the same representation (SQLite compares times as text, so the two
must agree to the character).

Covered, per statement kind the driver issues or its callers build through it:
``reader`` (every column, named columns, ``undecoded`` JSON) with ``execute`` and ``RowReader.dicts``;
``writer`` ``INSERT`` and ``UPDATE ... WHERE key`` with ``execute_many`` and ``RowWriter.params``;
``statement`` (the connection touches, the duplicate bump) with ``execute`` and ``execute_many``; a plain
``execute`` of a SELECT; ``marks`` for IN lists; ``inserter`` (many rows in one statement, with ``ON
CONFLICT`` and ``RETURNING``); ``query_many`` and ``pipeline`` (nested blocks, SQLAlchemy refused
inside); and the callers' readers (``problems.service._lock_rows`` with its known notifications and the
problems it creates, ``delivery._connections``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis import jsontext
from borealis.db import StoredJson
from borealis.driver import Driver
from borealis.dynatrace.models import Connection
from borealis.dynatrace.problem_notification import ProblemNotification
from borealis.ingest import delivery, intake
from borealis.problems import service as problems_service
from borealis.problems.models import FollowUp, Notification, Problem
from borealis.workspaces.models import Workspace

problems: sa.Table = Problem.__table__  # type: ignore[assignment]
notifications: sa.Table = Notification.__table__  # type: ignore[assignment]
follow_ups: sa.Table = FollowUp.__table__  # type: ignore[assignment]
connections: sa.Table = Connection.__table__  # type: ignore[assignment]

KOLKATA = timezone(timedelta(hours=5, minutes=30))
NEW_YORK = timezone(timedelta(hours=-5))
# Not UTC, with microseconds: the driver must store each as the ORM does, in UTC.
WHEN = datetime(2024, 3, 1, 12, 30, 45, 123456, tzinfo=KOLKATA)
LATER = datetime(2024, 3, 1, 2, 0, 0, 1, tzinfo=NEW_YORK)
# No microseconds: SQLite text still carries six zeros, as the ORM writes it.
WHOLE = datetime(2024, 3, 1, 9, 0, 0, tzinfo=KOLKATA)
TEXT = "Überlast ✓ 日本語 🚀 \"quoted\" 'single' back\\slash\nnew line"
BIG = 2**70
DOCUMENT = {
    "title": TEXT,
    "numbers": [0, -1, 2**31, 2**63 - 1, BIG, 1.5],
    "flags": [True, False, None],
    "nested": {"ünïcødé": {"deeper": [[{"key": "🚀"}]], "empty": {}}, "list": []},
}
TAGS = [{"key": "env", "value": "prod ✓"}, {"key": "[Kubernetes]namespace", "value": None}]


@dataclass
class Owner:
    workspace_id: str
    connection_id: str


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def add_owner(database, email: str) -> Owner:
    with database.session(write=True) as session:
        workspace = Workspace(name=email)
        session.add(workspace)
        session.flush()
        connection = Connection(
            workspace_id=workspace.id,
            environment_url="https://abc12345.live.dynatrace.com",
            token_ciphertext="cipher",
            webhook_secret_ciphertext="secret-cipher",
            webhook_secret_hash="0" * 64,
        )
        session.add(connection)
        session.commit()
        return Owner(workspace.id, connection.id)


@pytest.fixture
def owner(database) -> Owner:
    return add_owner(database, "driver@example.com")


def add_problem(database, owner: Owner, pid_key: str = "-1", **values: Any) -> int:
    """A problem written through the ORM, at fixed times; returns its id."""
    for name in ("first_received_at", "last_received_at", "created_at", "updated_at"):
        values.setdefault(name, WHEN)
    with database.session(write=True) as session:
        problem = Problem(
            connection_id=owner.connection_id,
            workspace_id=owner.workspace_id,
            pid_key=pid_key,
            pid=values.pop("pid", pid_key),
            state=values.pop("state", "OPEN"),
            priority=values.pop("priority", "high"),
            **values,
        )
        session.add(problem)
        session.commit()
        return problem.id


def orm_row(database, model: type, key: Any) -> dict[str, Any]:
    """Every column of a row as the ORM reads it, from a fresh session."""
    with database.session() as session:
        found = session.get(model, key)
        assert found is not None
        return {column.name: getattr(found, column.name) for column in model.__table__.c}


def stored(database, table: sa.Table, key: Any) -> dict[str, Any]:
    """Every column of a row as the database holds it, as text: what the two paths must agree on."""
    with database.session() as session:
        columns = [sa.cast(column, sa.Text).label(column.name) for column in table.c]
        row = session.execute(sa.select(*columns).where(table.c.id == key)).one()
        return dict(row._mapping)


def written(database, work) -> Any:
    """Run ``work(session, driver)`` in a write transaction and commit it."""
    with database.session(write=True) as session:
        result = work(session, Driver.of(session))
        session.commit()
        return result


def read(database, work) -> Any:
    with database.session() as session:
        return work(session, Driver.of(session))


def assert_utc(value: datetime) -> None:
    assert value.tzinfo is UTC


# --- the driver itself -------------------------------------------------------------------------------


def test_one_driver_per_database_with_its_markers(database):
    with database.session() as session:
        driver = Driver.of(session)
        assert Driver.of(session) is driver
    mark = "?" if database.is_sqlite else "%s"
    assert driver.mark == mark
    assert driver.marks(1) == mark
    assert driver.marks(3) == f"{mark}, {mark}, {mark}"
    assert driver.marker(problems.c.details) == (mark if database.is_sqlite else "%s::jsonb")
    assert driver.marker(problems.c.title) == mark


def test_builders_are_built_once_per_shape(database):
    with database.session() as session:
        driver = Driver.of(session)
    assert driver.reader(follow_ups, ("id", "states")) is driver.reader(follow_ups, ("id", "states"))
    assert driver.writer(follow_ups, ("states",), key="id") is driver.writer(
        follow_ups, ("states",), key="id"
    )
    assert driver.writer(follow_ups, ("states",)) is not driver.writer(follow_ups, ("states",), key="id")


def test_statement_needs_one_mark_per_parameter(database):
    with database.session() as session:
        driver = Driver.of(session)
    with pytest.raises(ValueError, match="one \\{mark\\}"):
        driver.statement(
            connections, "UPDATE connections SET last_webhook_at = {mark}", ("last_webhook_at", "id")
        )


def test_query_answers_rows_execute_none_and_execute_many_of_nothing_does_nothing(database, owner):
    problem_id = add_problem(database, owner)

    def work(session, driver):
        update = f"UPDATE problems SET title = {driver.mark} WHERE id = {driver.mark}"
        assert driver.execute(session, update, ["changed", problem_id]) is None
        driver.execute_many(session, update, [])
        return driver.query(session, f"SELECT id, title FROM problems WHERE id = {driver.mark}", [problem_id])

    assert written(database, work) == [(problem_id, "changed")]
    assert orm_row(database, Problem, problem_id)["title"] == "changed"


def test_a_pipeline_writes_in_order_and_reads_what_it_wrote(database, owner):
    problem_id = add_problem(database, owner, notification_count=0)
    select = "SELECT title, notification_count FROM problems WHERE id = {mark}"

    def work(session, driver):
        update = f"UPDATE problems SET title = {driver.mark} WHERE id = {driver.mark}"
        with driver.pipeline(session):
            driver.execute(session, update, ["first", problem_id])
            driver.execute_many(session, update, [["second", problem_id], ["third", problem_id]])
            count = f"UPDATE problems SET notification_count = notification_count + {driver.mark} WHERE id = {driver.mark}"
            driver.execute_many(session, count, [[3, problem_id], [4, problem_id]])
            seen = driver.query(session, select.format(mark=driver.mark), [problem_id])
            driver.execute(session, update, ["last", problem_id])
        return seen

    assert written(database, work) == [("third", 7)]
    assert orm_row(database, Problem, problem_id)["title"] == "last"


def fail_in_pipeline(database, inside) -> None:
    """Run ``inside(session, driver, update)`` in a pipeline of a write transaction, which must fail on
    the missing column it writes; ``update`` sets a problem's title by id."""
    with database.session(write=True) as session:
        driver = Driver.of(session)
        update = f"UPDATE problems SET title = {driver.mark} WHERE id = {driver.mark}"

        def send() -> None:
            with driver.pipeline(session):
                inside(session, driver, update)

        with pytest.raises(Exception, match="no_such_column"):
            send()


def test_a_failing_statement_fails_its_pipeline_and_nothing_is_kept(database, owner):
    problem_id = add_problem(database, owner)

    def inside(session, driver, update) -> None:
        driver.execute(session, update, ["lost", problem_id])
        driver.execute(session, "UPDATE problems SET no_such_column = 1")
        driver.execute(session, update, ["lost too", problem_id])

    fail_in_pipeline(database, inside)
    assert orm_row(database, Problem, problem_id)["title"] != "lost"
    assert orm_row(database, Problem, problem_id)["title"] != "lost too"


def test_query_many_answers_each_statement_in_order_and_sees_what_came_before(database, owner):
    problem_id = add_problem(database, owner, notification_count=0)

    def work(session, driver):
        update = f"UPDATE problems SET notification_count = {driver.mark} WHERE id = {driver.mark}"
        select = f"SELECT notification_count FROM problems WHERE id = {driver.mark}"
        with driver.pipeline(session):
            driver.execute(session, update, [1, problem_id])
            return driver.query_many(
                session,
                [
                    (select, [problem_id]),
                    (
                        f"UPDATE problems SET notification_count = 5 WHERE id = {driver.mark} RETURNING id",
                        [problem_id],
                    ),
                    (select, [problem_id]),
                    (select, [-1]),
                ],
            )

    assert written(database, work) == [[(1,)], [(problem_id,)], [(5,)], []]


def test_a_block_inside_a_pipeline_is_part_of_it(database, owner):
    """An inner block ends without a round trip of its own: on PostgreSQL its failing statement fails
    the outer block, at its end (on SQLite, where nothing is pipelined, at once). Nothing is kept."""
    problem_id = add_problem(database, owner, title="before")
    reached: list[str] = []

    def inside(session, driver, update) -> None:
        driver.execute(session, update, ["lost", problem_id])
        with driver.pipeline(session):
            driver.execute(session, "UPDATE problems SET no_such_column = 1")
        reached.append("the outer block's end")

    fail_in_pipeline(database, inside)
    assert reached == ([] if database.is_sqlite else ["the outer block's end"])
    assert orm_row(database, Problem, problem_id)["title"] == "before"


def test_sqlalchemy_statements_are_refused_inside_a_pipeline(database, owner):
    """SQLAlchemy would read a pipelined SELECT's rows before they arrive and find none: on PostgreSQL
    the engine refuses its statements inside a pipeline, and they run again once it ended."""
    problem_id = add_problem(database, owner, title="found")
    select = sa.select(problems.c.title).where(problems.c.id == problem_id)
    with database.session(write=True) as session:
        driver = Driver.of(session)
        with driver.pipeline(session):
            if database.is_sqlite:
                assert session.scalar(select) == "found"
            else:
                with pytest.raises(RuntimeError, match="inside a driver pipeline"):
                    session.scalar(select)
        if not database.is_sqlite:
            session.rollback()
        assert session.scalar(select) == "found"


# --- reader: what the ORM wrote, read by the driver ---------------------------------------------------


def test_reader_reads_every_problem_column_as_the_orm_does(database, owner):
    problem_id = add_problem(
        database,
        owner,
        pid="-1_1709275245123V2",
        display_id="P-24031",
        title=TEXT,
        severity=None,
        impacted_entities=[{"entityId": "HOST-1", "name": TEXT, "type": "HOST"}],
        tags=TAGS,
        management_zones=[],
        start_time=WHEN,
        end_time=None,
        details=DOCUMENT,
        search_text=TEXT.lower(),
        first_received_at=WHEN,
        last_received_at=LATER,
        notification_count=2**31 - 1,
        lifecycle={"evidence": {"state": [1709275245123, "OPEN"]}, "big": BIG},
    )
    expected = orm_row(database, Problem, problem_id)

    def work(session, driver):
        if not database.is_sqlite:
            # The driver answers UTC whatever zone the session shows times in.
            session.execute(sa.text("SET LOCAL TIME ZONE 'Asia/Kolkata'"))
        reader = driver.reader(problems)
        return reader.dicts(driver.query(session, f"{reader.sql} WHERE id = {driver.mark}", [problem_id]))

    [row] = read(database, work)
    assert row == expected
    assert row["title"] == TEXT
    assert row["severity"] is None
    assert row["end_time"] is None
    assert row["details"] == DOCUMENT
    assert row["details"]["numbers"][4] == BIG
    assert row["tags"] == TAGS
    assert row["management_zones"] == []
    assert row["lifecycle"]["big"] == BIG
    assert row["notification_count"] == 2**31 - 1
    assert row["start_time"] == utc(WHEN)
    assert row["last_received_at"] == utc(LATER)
    for name in ("start_time", "first_received_at", "last_received_at", "created_at", "updated_at"):
        assert_utc(row[name])


@pytest.mark.parametrize(
    ("details", "expected"),
    [(DOCUMENT, DOCUMENT), ({}, {}), ([1, "two"], [1, "two"]), (None, None)],
    ids=["document", "empty", "list", "none"],
)
def test_reader_keeps_undecoded_json_as_stored_json(database, owner, details, expected):
    """``_lock_rows`` reads the details document without decoding it; a JSON null (what the ORM stores
    for None) comes back as None."""
    problem_id = add_problem(database, owner, details=details)

    def work(session, driver):
        reader = driver.reader(problems, undecoded=("details",))
        return reader.dicts(driver.query(session, f"{reader.sql} WHERE id = {driver.mark}", [problem_id]))

    [row] = read(database, work)
    if expected is None:
        assert row["details"] is None
    else:
        assert isinstance(row["details"], StoredJson)
        assert jsontext.loads(row["details"].text) == expected
    assert {name: value for name, value in row.items() if name != "details"} == {
        name: value for name, value in orm_row(database, Problem, problem_id).items() if name != "details"
    }


def test_reader_of_named_columns_reads_booleans_big_integers_and_lists(database, owner):
    problem_id = add_problem(database, owner)
    states = [["OPEN", 0], ["RESOLVED", 1_709_275_245_123_456]]
    with database.session(write=True) as session:
        follow_up = FollowUp(
            problem_id=problem_id,
            workspace_id=owner.workspace_id,
            created=True,
            correlate=False,
            enrich=True,
            previous_keys=None,
            states=states,
            next_at=2**62,
            queued_at=WHEN,
        )
        session.add(follow_up)
        session.commit()
        follow_up_id = follow_up.id

    def work(session, driver):
        reader = driver.reader(
            follow_ups,
            ("id", "created", "correlate", "enrich", "previous_keys", "states", "next_at", "queued_at"),
        )
        return reader.dicts(
            driver.query(session, f"{reader.sql} WHERE problem_id = {driver.mark}", [problem_id])
        )

    [row] = read(database, work)
    assert row == {
        "id": follow_up_id,
        "created": True,
        "correlate": False,
        "enrich": True,
        "previous_keys": None,
        "states": states,
        "next_at": 2**62,
        "queued_at": utc(WHEN),
    }
    assert type(row["created"]) is bool
    assert type(row["correlate"]) is bool
    assert_utc(row["queued_at"])


# --- writer INSERT: what the driver wrote, read by the ORM --------------------------------------------


def notification_row(
    problem_id: int | None, owner: Owner, content_hash: str, **changes: Any
) -> dict[str, Any]:
    """The columns ``problems.service._notification_row`` writes, in its order."""
    row = {
        "problem_id": problem_id,
        "connection_id": owner.connection_id,
        "source": "webhook",
        "outcome": "created",
        "pid": "-1",
        "display_id": "P-1",
        "state": "OPEN",
        "state_raw": None,
        "title": TEXT,
        "observed_at": WHOLE,
        "content_hash": content_hash,
        "received_at": LATER,
        "last_received_at": LATER,
        "delivery_count": 1,
        "warnings": ["unreplaced placeholder in {ProblemTitle} ✓", TEXT],
        "raw_body": '{"PID": "-1", "ProblemTitle": "' + TEXT + '"}',
    }
    row.update(changes)
    return row


@pytest.mark.parametrize("with_problem", [True, False], ids=["problem", "test-notification"])
def test_insert_stores_what_the_orm_stores(database, owner, with_problem):
    problem_id = add_problem(database, owner) if with_problem else None
    by_driver = notification_row(problem_id, owner, "a" * 64)
    by_orm = notification_row(problem_id, owner, "b" * 64)

    def work(session, driver):
        writer = driver.writer(notifications, tuple(by_driver))
        assert writer.sql.startswith(f"INSERT INTO notifications ({', '.join(by_driver)}) VALUES (")
        driver.execute_many(session, writer.sql, writer.params([by_driver]))

    written(database, work)
    with database.session(write=True) as session:
        session.add(Notification(**by_orm))
        session.commit()
        ids = dict(session.execute(sa.select(Notification.content_hash, Notification.id)).all())

    read_back = orm_row(database, Notification, ids["a" * 64])
    assert read_back["problem_id"] == problem_id
    assert read_back["title"] == TEXT
    assert read_back["state_raw"] is None
    assert read_back["observed_at"] == utc(WHOLE)
    assert read_back["received_at"] == utc(LATER)
    assert read_back["warnings"] == by_driver["warnings"]
    assert read_back["raw_body"] == by_driver["raw_body"]
    twin = orm_row(database, Notification, ids["b" * 64])
    assert {**read_back, "id": None, "content_hash": None} == {**twin, "id": None, "content_hash": None}
    assert {**stored(database, notifications, ids["a" * 64]), "id": None, "content_hash": None} == {
        **stored(database, notifications, ids["b" * 64]),
        "id": None,
        "content_hash": None,
    }


def test_insert_of_many_rows_keeps_each_rows_values(database, owner):
    problem_ids = [add_problem(database, owner, pid_key=f"-{n}") for n in range(3)]
    rows = [
        {
            "problem_id": problem_id,
            "workspace_id": owner.workspace_id,
            "created": n == 0,
            "correlate": n != 1,
            "enrich": False,
            "previous_keys": None if n == 0 else [f"entity:HOST-{n}", TEXT],
            "states": [("OPEN", 0), ("RESOLVED", 1_709_275_245_123_456 + n)],
            "next_at": 1_709_275_245_123_456 + n,
            "queued_at": WHEN + timedelta(microseconds=n),
        }
        for n, problem_id in enumerate(problem_ids)
    ]

    def work(session, driver):
        writer = driver.writer(follow_ups, tuple(rows[0]))
        driver.execute_many(session, writer.sql, writer.params(rows))

    written(database, work)
    with database.session() as session:
        found = {f.problem_id: f for f in session.scalars(sa.select(FollowUp))}
    for n, row in enumerate(rows):
        follow_up = found[row["problem_id"]]
        assert follow_up.created is (n == 0)
        assert follow_up.correlate is (n != 1)
        assert follow_up.enrich is False
        assert follow_up.previous_keys == row["previous_keys"]
        # Tuples go as JSON arrays, and come back as lists.
        assert follow_up.states == [["OPEN", 0], ["RESOLVED", 1_709_275_245_123_456 + n]]
        assert follow_up.next_at == row["next_at"]
        assert follow_up.queued_at == utc(WHEN) + timedelta(microseconds=n)


def test_insert_refuses_a_naive_time_on_sqlite(owner):
    """The ORM refuses a naive time on both databases; the driver converts times to text on SQLite and
    refuses a naive one there (on PostgreSQL it passes values as they are, so callers only give aware
    times). Judged on an in-memory SQLite database, whichever database the suite runs on."""
    row = notification_row(None, owner, "c" * 64, received_at=datetime(2024, 3, 1, 12, 0))
    with Session(sa.create_engine("sqlite://")) as session:
        writer = Driver.of(session).writer(notifications, tuple(row))
    with pytest.raises(ValueError, match="naive datetime"):
        writer.params([row])


# --- writer UPDATE by key: the problem write-back ----------------------------------------------------


def after_values(details: Any) -> dict[str, Any]:
    """New values for every column ``problems.service._write_back`` may write."""
    return {
        "pid": "-1_1709275245123V2",
        "display_id": "P-2",
        "api_problem_id": "-1_1709275245123V2",
        "title": TEXT,
        "state": "RESOLVED",
        "severity": "AVAILABILITY",
        "impact": None,
        "priority": "critical",
        "problem_url": "https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-1",
        "impacted_entity": TEXT,
        "impacted_entities": [{"entityId": "HOST-1", "name": "web-1 ✓", "type": "HOST"}],
        "root_cause_entity_id": None,
        "root_cause_entity_name": TEXT,
        "root_cause_entity_type": "SERVICE",
        "tags": TAGS,
        "tags_raw": "env:prod ✓",
        "management_zones": [{"id": str(BIG), "name": "Zone ✓"}],
        "start_time": WHEN,
        "end_time": LATER,
        "details": details,
        "details_format": "v2",
        "search_text": TEXT.lower(),
        "lifecycle": {"evidence": {"state": [1709275245123, "RESOLVED"]}, "big": BIG, "none": None},
        "last_received_at": LATER,
        "notification_count": 2**31 - 1,
        "duplicate_count": 0,
        "updated_at": LATER,
    }


@pytest.mark.parametrize(
    "details",
    [DOCUMENT, StoredJson('{"b": 1,  "a": ["✓", 2, {"c": null}]}'), None],
    ids=["document", "stored-json", "none"],
)
def test_update_by_key_stores_what_the_orm_stores(database, owner, details):
    by_driver = add_problem(database, owner, pid_key="-1", title="before", details={"old": True})
    by_orm = add_problem(database, owner, pid_key="-2", title="before", details={"old": True})
    values = after_values(details)
    untouched = orm_row(database, Problem, by_driver)

    def work(session, driver):
        writer = driver.writer(problems, tuple(values), key="id")
        assert writer.sql.startswith("UPDATE problems SET pid = ")
        assert writer.sql.endswith(f" WHERE id = {driver.mark}")
        driver.execute_many(session, writer.sql, writer.params([{**values, "id": by_driver}]))

    written(database, work)
    orm_details = jsontext.loads(details.text) if isinstance(details, StoredJson) else details
    with database.session(write=True) as session:
        session.execute(
            sa.update(Problem).where(Problem.id == by_orm).values(**{**values, "details": orm_details})
        )
        session.commit()

    row = orm_row(database, Problem, by_driver)
    assert row["details"] == orm_details
    assert row["title"] == TEXT
    assert row["impact"] is None
    assert row["root_cause_entity_id"] is None
    assert row["start_time"] == utc(WHEN)
    assert row["end_time"] == utc(LATER)
    assert row["lifecycle"]["big"] == BIG
    assert row["management_zones"] == values["management_zones"]
    # The columns not named stay as they were.
    for name in ("id", "connection_id", "workspace_id", "pid_key", "first_received_at", "created_at"):
        assert row[name] == untouched[name]
    twin = orm_row(database, Problem, by_orm)
    assert {**row, "id": None, "pid_key": None} == {**twin, "id": None, "pid_key": None}
    driver_stored, orm_stored = stored(database, problems, by_driver), stored(database, problems, by_orm)
    if isinstance(details, StoredJson) and database.is_sqlite:
        # SQLite keeps the text as it came (jsonb keeps it parsed).
        assert driver_stored["details"] == details.text
        driver_stored["details"] = orm_stored["details"]
    assert {**driver_stored, "id": None, "pid_key": None} == {**orm_stored, "id": None, "pid_key": None}


def test_update_by_key_of_some_columns_per_row(database, owner):
    """An update by key of some columns, each row with its own values (the lifecycle step writes problems
    back this way; the follow-up table is a convenient one to check it on)."""
    problem_ids = [add_problem(database, owner, pid_key=f"-{n}") for n in range(2)]
    with database.session(write=True) as session:
        waiting = [
            FollowUp(
                problem_id=p, workspace_id=owner.workspace_id, states=[["OPEN", 0]], next_at=1, queued_at=WHEN
            )
            for p in problem_ids
        ]
        session.add_all(waiting)
        session.commit()
        ids = [f.id for f in waiting]
    updates = [
        {"id": ids[0], "correlate": True, "enrich": False, "states": [["OPEN", 0], ["RESOLVED", 2**60]]},
        {"id": ids[1], "correlate": False, "enrich": True, "states": []},
    ]

    def work(session, driver):
        writer = driver.writer(follow_ups, ["correlate", "enrich", "states"], key="id")
        driver.execute_many(session, writer.sql, writer.params(updates))

    written(database, work)
    for update in updates:
        row = orm_row(database, FollowUp, update["id"])
        assert (row["correlate"], row["enrich"], row["states"]) == (
            update["correlate"],
            update["enrich"],
            update["states"],
        )
        assert row["next_at"] == 1
        assert row["queued_at"] == utc(WHEN)


# --- statements of the callers' own ------------------------------------------------------------------


def touch_webhook(database, connection_id: str, at: datetime) -> None:
    def work(session, driver):
        touch = driver.statement(
            connections, intake._TOUCH_WEBHOOK, ("last_webhook_at", "id", "last_webhook_at")
        )
        driver.execute(session, touch.sql, touch.params([{"id": connection_id, "last_webhook_at": at}])[0])

    written(database, work)


def test_webhook_touch_moves_only_forward_from_what_the_orm_wrote(database, owner):
    """The comparison runs in the database: on SQLite between texts, so the driver's text of a time
    must sort as the ORM's does, to the microsecond."""
    touch_webhook(database, owner.connection_id, WHEN)
    assert orm_row(database, Connection, owner.connection_id)["last_webhook_at"] == utc(WHEN)

    with database.session(write=True) as session:
        session.get(Connection, owner.connection_id).last_webhook_at = LATER
        session.commit()
    touch_webhook(database, owner.connection_id, LATER - timedelta(microseconds=1))
    assert orm_row(database, Connection, owner.connection_id)["last_webhook_at"] == utc(LATER)
    touch_webhook(database, owner.connection_id, LATER)
    assert orm_row(database, Connection, owner.connection_id)["last_webhook_at"] == utc(LATER)
    # The same instant in another zone is no later.
    touch_webhook(database, owner.connection_id, utc(LATER).astimezone(KOLKATA))
    assert orm_row(database, Connection, owner.connection_id)["last_webhook_at"] == utc(LATER)
    touch_webhook(database, owner.connection_id, LATER + timedelta(microseconds=1))
    assert orm_row(database, Connection, owner.connection_id)["last_webhook_at"] == utc(LATER) + timedelta(
        microseconds=1
    )


def test_test_touch_writes_the_report_document_and_moves_forward(database, owner):
    def touch(at: datetime, report: Any) -> None:
        row = {"id": owner.connection_id, "last_test_notification_at": at, "last_test_report": report}

        def work(session, driver):
            statement = driver.statement(connections, intake._TOUCH_TEST, intake._TOUCH_TEST_PARAMS)
            driver.execute(session, statement.sql, statement.params([row])[0])

        written(database, work)

    touch(WHEN, DOCUMENT)
    row = orm_row(database, Connection, owner.connection_id)
    assert row["last_test_notification_at"] == utc(WHEN)
    assert row["last_test_report"] == DOCUMENT
    touch(WHEN - timedelta(microseconds=1), {"older": True})
    assert orm_row(database, Connection, owner.connection_id)["last_test_report"] == DOCUMENT
    touch(WHEN, {"same instant": "✓"})
    assert orm_row(database, Connection, owner.connection_id)["last_test_report"] == {"same instant": "✓"}
    with database.session(write=True) as session:
        session.get(Connection, owner.connection_id).last_test_report = {"by": "orm"}
        session.commit()
    by_orm = stored(database, connections, owner.connection_id)["last_test_report"]
    touch(LATER, {"by": "orm"})
    assert stored(database, connections, owner.connection_id)["last_test_report"] == by_orm


def test_duplicate_bump_counts_on_each_notification(database, owner):
    problem_id = add_problem(database, owner)
    hashes = ["a" * 64, "b" * 64, "c" * 64]
    with database.session(write=True) as session:
        session.add_all(Notification(**notification_row(problem_id, owner, h)) for h in hashes)
        session.commit()
    bumps = [
        {"problem_id": problem_id, "content_hash": hashes[0], "delivery_count": 1, "last_received_at": WHEN},
        {
            "problem_id": problem_id,
            "content_hash": hashes[1],
            "delivery_count": 2**20,
            "last_received_at": LATER,
        },
    ]

    def work(session, driver):
        bump = driver.statement(
            notifications, problems_service._BUMP_DUPLICATE, problems_service._BUMP_DUPLICATE_PARAMS
        )
        driver.execute_many(session, bump.sql, bump.params(bumps))

    written(database, work)
    with database.session() as session:
        found = {n.content_hash: n for n in session.scalars(sa.select(Notification))}
    assert (found[hashes[0]].delivery_count, found[hashes[0]].last_received_at) == (2, utc(WHEN))
    assert (found[hashes[1]].delivery_count, found[hashes[1]].last_received_at) == (2**20 + 1, utc(LATER))
    assert (found[hashes[2]].delivery_count, found[hashes[2]].last_received_at) == (1, utc(LATER))


# --- IN lists and the callers' readers ---------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 7, 200])
def test_in_lists_of_any_size_find_exactly_their_rows(database, owner, size):
    """``_known_hashes``'s plain SELECT, with two IN lists side by side."""
    problem_ids = [add_problem(database, owner, pid_key=f"-{n}") for n in range(3)]
    hashes = [f"{n:064x}" for n in range(size)]
    with database.session(write=True) as session:
        session.add_all(
            Notification(**notification_row(problem_id, owner, h))
            for problem_id in problem_ids
            for h in hashes[::2]
        )
        session.commit()
    asked = problem_ids[:2]

    def work(session, driver):
        sql = (
            "SELECT problem_id, content_hash FROM notifications"
            f" WHERE problem_id IN ({driver.marks(len(asked))}) AND content_hash IN ({driver.marks(len(hashes))})"
        )
        return set(driver.query(session, sql, [*asked, *hashes]))

    assert read(database, work) == {(p, h) for p in asked for h in hashes[::2]}


def lock_rows(session: Session, keys, hashes=("0" * 64,), create=()):
    return problems_service._lock_rows(
        session, session.get_bind().dialect.name, keys, list(hashes), create=list(create)
    )


def test_known_hashes_as_the_lifecycle_reads_them(database, owner):
    """Which of the batch's content hashes each locked problem has already, past one chunk of keys."""
    other = add_owner(database, "other@example.com")
    count = problems_service._CHUNK + 1
    problem_ids = [add_problem(database, owner, pid_key=f"-{n}") for n in range(count)]
    # The other connection's problem with the same PID key and hash is not one of ours.
    foreign = add_problem(database, other, pid_key="-0")
    with database.session(write=True) as session:
        session.add_all(Notification(**notification_row(p, owner, "a" * 64)) for p in problem_ids[::50])
        session.add(Notification(**notification_row(problem_ids[1], owner, "c" * 64)))
        session.add(Notification(**notification_row(foreign, other, "a" * 64)))
        session.commit()
    keys = [(owner.connection_id, f"-{n}") for n in range(count)]
    _, known, created = written(database, lambda session, _: lock_rows(session, keys, ["a" * 64, "b" * 64]))
    assert known == {(p, "a" * 64) for p in problem_ids[::50]}
    assert created == set()


def test_locked_rows_are_the_connections_problems_by_key(database, owner):
    other = add_owner(database, "other@example.com")
    ids = {
        key: add_problem(database, owner, pid_key=key, title=TEXT, details=DOCUMENT) for key in ("-2", "-1")
    }
    add_problem(database, other, pid_key="-1")
    keys = [(owner.connection_id, "-1"), (owner.connection_id, "-2"), (owner.connection_id, "-3")]

    rows, _, _ = written(database, lambda session, _: lock_rows(session, keys))
    assert sorted(rows) == [(owner.connection_id, "-1"), (owner.connection_id, "-2")]
    for (_, key), row in rows.items():
        expected = orm_row(database, Problem, ids[key])
        assert isinstance(row["details"], StoredJson)
        assert jsontext.loads(row["details"].text) == expected.pop("details")
        assert {name: value for name, value in row.items() if name != "details"} == expected


@dataclass
class FirstDelivery:
    """What ``_lock_rows`` reads of a first delivery to create its problem."""

    connection_id: str
    workspace_id: str
    notification: Any
    received_at: datetime


def test_created_problems_are_locked_and_read_back_as_the_orm_reads_them(database, owner):
    """Problems created through the driver (many rows in one statement, in chunks) are the rows the ORM
    reads; a key stored already is left as it is and not reported as created."""
    kept = add_problem(database, owner, pid_key="-0", title="kept")
    count = problems_service._CHUNK + 2
    firsts = [
        FirstDelivery(
            owner.connection_id,
            owner.workspace_id,
            ProblemNotification(pid=f"-{n}", display_id=f"P-{n}", state="OPEN", title=f"title {n}"),
            WHEN + timedelta(microseconds=n),
        )
        for n in range(count)
    ]
    keys = [(owner.connection_id, first.notification.pid_key) for first in firsts]
    rows, known, created = written(database, lambda session, _: lock_rows(session, keys, create=firsts))
    assert created == set(keys[1:])
    assert sorted(rows) == sorted(keys)
    assert known == set()
    assert (rows[keys[0]]["id"], rows[keys[0]]["title"]) == (kept, "kept")
    for key in keys[1:]:
        row = rows[key]
        expected = orm_row(database, Problem, row["id"])
        assert expected["state"] == "OPEN"
        assert expected["first_received_at"].tzinfo is UTC
        assert (row.pop("details"), expected.pop("details")) == (None, None)
        assert row == expected
    # Stored as the ORM stores a new problem's documents (SQLite compares them as text).
    as_text = stored(database, problems, rows[keys[1]]["id"])
    assert {name: as_text[name] for name in ("details", "impacted_entities", "tags", "lifecycle")} == {
        "details": "null",
        "impacted_entities": "[]",
        "tags": "[]",
        "lifecycle": "{}",
    }


def test_follow_ups_written_by_the_driver_read_back_through_the_orm(database, owner):
    """What intake appends (one row per change, two for one problem here) is what the job reads."""
    problem_id = add_problem(database, owner, pid_key="-1")
    rows = [
        {
            "problem_id": problem_id,
            "workspace_id": owner.workspace_id,
            "created": version == 1,
            "correlate": True,
            "enrich": version == 1,
            "previous_keys": None if version == 1 else ["e:SERVICE-A", "t:env:prod"],
            "states": [["OPEN", 1_700_000_000_000_000]] if version == 1 else [["OPEN", 0], ["RESOLVED", 2]],
            "next_at": 1_700_000_000_000_000 + version,
            "queued_at": WHEN,
            "version": version,
        }
        for version in (1, 2)
    ]

    def append(session: Session, driver: Driver) -> None:
        writer = driver.writer(FollowUp.__table__, list(rows[0]))
        driver.execute_many(session, writer.sql, writer.params(rows))

    written(database, append)
    with database.session() as session:
        found = list(session.scalars(sa.select(FollowUp).order_by(FollowUp.id)))
        read_back = [{name: getattr(f, name) for name in rows[0]} for f in found]
    assert read_back == rows


def test_webhook_connections_read_by_user(database, owner):
    other = add_owner(database, "other@example.com")
    with database.session(write=True) as session:
        connection = session.get(Connection, other.connection_id)
        connection.token_ciphertext = None
        connection.last_webhook_at = WHEN
        connection.last_test_notification_at = LATER
        session.commit()
    found = read(
        database,
        lambda session, _: delivery._connections(session, [owner.workspace_id, other.workspace_id, "nobody"]),
    )
    assert sorted(found) == sorted([owner.workspace_id, other.workspace_id])
    for owner_of in (owner, other):
        expected = orm_row(database, Connection, owner_of.connection_id)
        connection = found[owner_of.workspace_id]
        for name in delivery._CONNECTION_COLUMNS:
            assert getattr(connection, name) == expected[name], name
    assert found[owner.workspace_id].connected
    assert not found[other.workspace_id].connected
    assert found[other.workspace_id].last_webhook_at == utc(WHEN)
    assert_utc(found[other.workspace_id].last_test_notification_at)
