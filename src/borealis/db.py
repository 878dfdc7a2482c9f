"""Engine, sessions and the column types every domain shares.

The caller that starts a unit of work (a request, a job) owns its transaction: service functions flush
but never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from borealis import jsontext
from borealis.files import private_database

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON documents: JSONB on PostgreSQL, JSON text elsewhere.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# Big tables get 64-bit keys; SQLite's rowid alias must be INTEGER to autoincrement.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


def normalize_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine tuned per backend: SQLite in WAL with foreign keys and explicit BEGINs."""
    url = normalize_url(url)
    kwargs.setdefault("json_serializer", _json_to_text)
    kwargs.setdefault("json_deserializer", jsontext.loads)
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            private_database(Path(database))
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            pool_size=20,
            max_overflow=20,
            **kwargs,
        )
        _tune_sqlite(engine)
        return engine
    return sa.create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True, **kwargs)


# Reads map the database file instead of copying each page out of the OS cache with a system call: about
# a fifth off the broad searches and deep pages over 1,000,000 problems (a 1.5 GB file). It reserves
# address space only; the pages stay in the OS cache, shared by every connection. SQLite caps the map
# just under 2 GiB; pages beyond it are read as before.
_SQLITE_MMAP_BYTES = 2 << 30


def _tune_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before we acknowledge it (group commit keeps this cheap).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA mmap_size={_SQLITE_MMAP_BYTES}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # A writer takes the lock up front, so two writers never deadlock upgrading a read snapshot.
        immediate = connection.get_execution_options().get("sqlite_immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """One engine and its session factories; lives on the app and in each worker process."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.engine = create_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(sqlite_immediate=True), expire_on_commit=False
        )

    def session(self, *, write: bool = False) -> Session:
        """A new session; ``write=True`` takes SQLite's write lock at BEGIN."""
        return (self._writer if write else self._reader)()

    def dispose(self) -> None:
        self.engine.dispose()


def session_scope(database: Database, *, write: bool = False) -> Iterator[Session]:
    """Yield a session that rolls back whatever its user left uncommitted."""
    session = database.session(write=write)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


class Driver:
    """The DBAPI connection underneath a session, for the few statements the webhook runs for every
    delivery: there SQLAlchemy's work per execution (compiling parameters, processing values, building
    result objects) costs more than the statements themselves.

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
        return _DRIVERS["sqlite" if db_session.get_bind().dialect.name == "sqlite" else "postgresql"]

    def execute(self, db_session: Session, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; returns its rows (none for a statement without)."""
        cursor = db_session.connection().connection.driver_connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []
        finally:
            cursor.close()

    def execute_many(self, db_session: Session, sql: str, rows: Sequence[Sequence[Any]]) -> None:
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
            return _json_to_text
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


@dataclass(frozen=True, slots=True)
class StoredJson:
    """A JSON value as the database holds it, not decoded: for a document a writer only keeps or
    replaces, where decoding it (and encoding it again) would cost more than the rest of its row."""

    text: str


def _stored_json(value: str | None) -> StoredJson | None:
    return None if value is None or value == "null" else StoredJson(value)


def _json_to_text(value: Any) -> str:
    return value.text if isinstance(value, StoredJson) else jsontext.dumps(value)


def _json_from_text(value: str | None) -> Any:
    return None if value is None else jsontext.loads(value)


def _bool_to_int(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _bool_from_int(value: int | None) -> bool | None:
    return None if value is None else bool(value)


_DRIVERS = {"sqlite": Driver("sqlite"), "postgresql": Driver("postgresql")}
