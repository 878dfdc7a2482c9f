"""Engine, sessions and the column types every domain shares.

The caller that starts a unit of work (a request, a job) owns its transaction: service functions flush
but never commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
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


@dataclass(frozen=True, slots=True)
class StoredJson:
    """A JSON value as the database holds it, not decoded: for a document a writer only keeps or
    replaces, where decoding it (and encoding it again) would cost more than the rest of its row. A JSON
    column takes it as it is, through the ORM and the driver alike."""

    text: str


def json_to_text(value: Any) -> str:
    """The JSON text a JSON column stores for ``value`` (a ``StoredJson`` as it is)."""
    return value.text if isinstance(value, StoredJson) else jsontext.dumps(value)


def utcnow() -> datetime:
    return datetime.now(UTC)


def dialect_of(db_session: Session) -> str:
    """``sqlite`` or ``postgresql``: the database this session talks to."""
    return db_session.get_bind().dialect.name


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
    kwargs.setdefault("json_serializer", json_to_text)
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
    kwargs.setdefault("pool_pre_ping", True)
    engine = sa.create_engine(url, pool_size=10, max_overflow=20, **kwargs)
    sa.event.listen(engine, "before_cursor_execute", _refuse_in_pipeline)
    return engine


def _refuse_in_pipeline(_connection: Any, cursor: Any, statement: str, *_args: Any) -> None:
    """SQLAlchemy reads a statement's result as soon as it is sent. In psycopg's pipeline mode
    (``Driver.pipeline``) the result comes later, so a query would seem to return nothing: fail loudly
    instead."""
    if cursor.connection.info.pipeline_status != psycopg.pq.PipelineStatus.OFF:
        raise RuntimeError(f"a SQLAlchemy statement inside a driver pipeline: {statement[:80]}")


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

    def __init__(self, url: str, *, ping: bool = True) -> None:
        """``ping=False``: a pooled PostgreSQL connection is used without a round trip to check it first
        (for a caller that runs a failed transaction again anyway: the webhook writer)."""
        self.url = normalize_url(url)
        self.engine = create_engine(self.url, **({} if ping else {"pool_pre_ping": False}))
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
