"""Alembic environment: run against the connection or URL handed over by ``borealis.migrate``."""

from __future__ import annotations

from alembic import context

from borealis.db import create_engine
from borealis.models import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A migration that rebuilds a table drops the old one: with foreign keys on, SQLite would first
        # delete its rows and cascade into every child table. Off for the migration (it can only change
        # outside a transaction), checked before commit, and back on for whoever uses the connection next.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
    try:
        _run(connection, sqlite)
    finally:
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


def _run(connection, sqlite: bool) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migration left rows whose parent is missing: {broken[:5]}")


run()
