"""The hand-written SQL of the webhook's hot path, run on the DBAPI connection underneath a session.

For the few statements the webhook runs for every delivery, SQLAlchemy's work per execution (compiling
parameters, processing values, building result objects) costs more than the statements themselves. This
module is the only place where values are converted by hand; its callers add only WHERE clauses and a few
statements of their own (``Driver.statement``), with its markers. ``tests/test_driver.py`` checks every
kind of statement against the ORM on both databases: what the driver writes the ORM reads back
unchanged, and the reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis import jsontext
from borealis.db import StoredJson, UTCDateTime, json_to_text


class Driver:
    """Statements on the session's DBAPI connection, one driver per dialect (``Driver.of``).

    Values keep the representation the column types give them (so the ORM reads what this writes and
    the reverse): on SQLite, UTC times as naive ``YYYY-MM-DD HH:MM:SS.ffffff`` text, JSON as text,
    booleans as 0/1; on PostgreSQL, aware times and ``jsonb``. Statements run in the session's
    transaction.
    """

    def __init__(self, dialect: str) -> None:
        self.sqlite = dialect == "sqlite"
        self.mark = "?" if self.sqlite else "%s"
        self._cache: dict[tuple[Any, ...], Any] = {}

    @staticmethod
    def of(db_session: Session) -> Driver:
        """The driver for the session's database (its statements are cached there)."""
        return _DRIVERS["sqlite" if db_session.get_bind().dialect.name == "sqlite" else "postgresql"]

    def query(self, db_session: Session, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement that returns rows; returns them (in a ``pipeline``, once they arrive)."""
        return self.query_many(db_session, [(sql, params)])[0]

    def query_many(
        self, db_session: Session, statements: Sequence[tuple[str, Sequence[Any]]]
    ) -> list[list[tuple[Any, ...]]]:
        """Run statements that return rows, in order; returns each one's rows. In a ``pipeline`` they
        are all sent before the first answer is awaited: one round trip for all of them."""
        connection = db_session.connection().connection.driver_connection
        if self.sqlite:
            return [connection.execute(sql, params).fetchall() for sql, params in statements]
        cursors = []
        try:
            for sql, params in statements:
                cursor = connection.cursor()
                cursors.append(cursor)
                cursor.execute(sql, params)
            return [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def execute(self, db_session: Session, sql: str, params: Sequence[Any] = ()) -> None:
        """Run a statement that returns no rows (in a ``pipeline``, without waiting for it)."""
        cursor = db_session.connection().connection.driver_connection.cursor()
        try:
            cursor.execute(sql, params)
        finally:
            cursor.close()

    @contextmanager
    def pipeline(self, db_session: Session) -> Iterator[None]:
        """On PostgreSQL, send the statements of the block without waiting for each one's answer: a
        ``query`` waits for its rows (and the statements sent before it), the rest are answered by the
        end of the block or by a commit inside it, which raise the first error. Inside, every statement
        goes through the driver: SQLAlchemy looks at a statement's result before it has arrived, so
        the engine refuses its statements there (``db.create_engine``). A block inside another one is
        part of it (no round trip of its own). On SQLite (no round trips) the statements run as they
        come."""
        if self.sqlite:
            yield
            return
        connection = db_session.connection().connection.driver_connection
        if connection.info.pipeline_status != psycopg.pq.PipelineStatus.OFF:
            yield
            return
        # The ORM's pending changes go first, so none is flushed inside (where it could not read back).
        db_session.flush()
        with connection.pipeline():
            yield

    def execute_many(self, db_session: Session, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per parameter row (nothing for no rows)."""
        if not rows:
            return
        cursor = db_session.connection().connection.driver_connection.cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()

    def reader(
        self, table: sa.Table, names: Sequence[str] | None = None, *, undecoded: Sequence[str] = ()
    ) -> RowReader:
        """``SELECT <columns> FROM <table>`` (add the rest) and how to turn its rows into dicts; the JSON
        columns named ``undecoded`` come back as ``StoredJson``."""
        key = ("read", table.name, tuple(names or ()), tuple(undecoded))
        found = self._cache.get(key)
        if found is None:
            columns = [table.c[name] for name in names] if names else list(table.c)
            selected = [
                f"{column.name}::text" if column.name in undecoded and not self.sqlite else column.name
                for column in columns
            ]
            # Identifiers come from our own table definitions, values go as parameters.
            sql = f"SELECT {', '.join(selected)} FROM {table.name}"  # noqa: S608
            decoders = tuple(_stored_json if c.name in undecoded else self.decoder(c) for c in columns)
            found = self._cache[key] = RowReader(sql, tuple(column.name for column in columns), decoders)
        return found

    def writer(self, table: sa.Table, names: Sequence[str], *, key: str | None = None) -> RowWriter:
        """``INSERT`` of these columns, or with ``key`` an ``UPDATE`` of them by that column, and how
        to turn dicts into its parameters."""
        cache_key = ("write", table.name, tuple(names), key)
        found = self._cache.get(cache_key)
        if found is None:
            columns = [table.c[name] for name in names]
            if key is None:
                marks = ", ".join(self.marker(column) for column in columns)
                sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608
                order = tuple(names)
            else:
                sets = ", ".join(f"{column.name} = {self.marker(column)}" for column in columns)
                sql = f"UPDATE {table.name} SET {sets} WHERE {key} = {self.mark}"  # noqa: S608
                order = (*names, key)
                columns.append(table.c[key])
            found = self._cache[cache_key] = RowWriter(sql, order, tuple(self.encoder(c) for c in columns))
        return found

    def inserter(self, table: sa.Table, names: Sequence[str], *, rows: int, tail: str = "") -> RowWriter:
        """``INSERT`` of these columns for ``rows`` rows in one statement, then ``tail`` (an ``ON
        CONFLICT`` or ``RETURNING`` clause of our own); its parameters are ``RowWriter.flat``."""
        cache_key = ("insert", table.name, tuple(names), rows, tail)
        found = self._cache.get(cache_key)
        if found is None:
            columns = [table.c[name] for name in names]
            values = "(" + ", ".join(self.marker(column) for column in columns) + ")"
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES {', '.join([values] * rows)} {tail}"  # noqa: S608
            found = self._cache[cache_key] = RowWriter(
                sql.rstrip(), tuple(names), tuple(self.encoder(c) for c in columns)
            )
        return found

    def statement(self, table: sa.Table, sql: str, names: Sequence[str]) -> RowWriter:
        """A statement of our own about ``table`` whose parameters are values of these columns, in
        order (each ``{mark}`` in ``sql`` stands for the next parameter's marker)."""
        cache_key = ("statement", table.name, sql, tuple(names))
        found = self._cache.get(cache_key)
        if found is None:
            columns = [table.c[name] for name in names]
            pieces = sql.split("{mark}")
            if len(pieces) != len(columns) + 1:
                raise ValueError("one {mark} in the statement per parameter")
            text = pieces[0] + "".join(
                self.marker(c) + piece for c, piece in zip(columns, pieces[1:], strict=True)
            )
            found = self._cache[cache_key] = RowWriter(
                text, tuple(names), tuple(self.encoder(c) for c in columns)
            )
        return found

    def marks(self, count: int) -> str:
        """``count`` parameter markers, for an IN list."""
        return ", ".join([self.mark] * count)

    def marker(self, column: sa.Column[Any]) -> str:
        """The parameter marker for a value of this column."""
        return self.mark if self.sqlite or not _is_json(column) else "%s::jsonb"

    def encoder(self, column: sa.Column[Any]) -> Callable[[Any], Any] | None:
        """How a Python value of this column goes to the driver (None: as it is)."""
        if isinstance(column.type, UTCDateTime):
            return _time_to_sqlite if self.sqlite else None
        if _is_json(column):
            return json_to_text
        if isinstance(column.type, sa.Boolean) and self.sqlite:
            return _bool_to_int
        return None

    def decoder(self, column: sa.Column[Any]) -> Callable[[Any], Any] | None:
        """How a value of this column comes back from the driver (None: as it is)."""
        if isinstance(column.type, UTCDateTime):
            return _time_from_sqlite if self.sqlite else _time_from_postgresql
        if _is_json(column):
            return _json_from_text if self.sqlite else None
        if isinstance(column.type, sa.Boolean) and self.sqlite:
            return _bool_from_int
        return None


@dataclass(frozen=True, slots=True)
class RowReader:
    sql: str
    names: tuple[str, ...]
    decoders: tuple[Callable[[Any], Any] | None, ...]

    def dicts(self, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        pairs = tuple(zip(self.names, self.decoders, strict=True))
        return [
            {
                name: value if decode is None else decode(value)
                for (name, decode), value in zip(pairs, row, strict=True)
            }
            for row in rows
        ]


@dataclass(frozen=True, slots=True)
class RowWriter:
    sql: str
    names: tuple[str, ...]
    encoders: tuple[Callable[[Any], Any] | None, ...]

    def params(self, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
        pairs = tuple(zip(self.names, self.encoders, strict=True))
        return [
            tuple(row[name] if encode is None else encode(row[name]) for name, encode in pairs)
            for row in rows
        ]

    def flat(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """The parameters of one statement for all the rows (``Driver.inserter``)."""
        return [value for params in self.params(rows) for value in params]


def _is_json(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.JSON)


def _time_to_sqlite(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def _time_from_sqlite(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _time_from_postgresql(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _stored_json(value: str | None) -> StoredJson | None:
    return None if value is None or value == "null" else StoredJson(value)


def _json_from_text(value: str | None) -> Any:
    return None if value is None else jsontext.loads(value)


def _bool_to_int(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _bool_from_int(value: int | None) -> bool | None:
    return None if value is None else bool(value)


_DRIVERS = {"sqlite": Driver("sqlite"), "postgresql": Driver("postgresql")}
