"""Throwaway databases for a test run: a SQLite file, or a fresh PostgreSQL database dropped at the end."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from borealis.db import normalize_url

DEFAULT_PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def backend() -> str:
    value = os.environ.get("BOREALIS_TEST_DATABASE", "sqlite").lower()
    if value not in ("sqlite", "postgresql"):
        raise RuntimeError("BOREALIS_TEST_DATABASE must be sqlite or postgresql")
    return value


@contextmanager
def throwaway_database(directory: Path) -> Iterator[str]:
    """Yield the URL of an empty database of the selected backend."""
    if backend() == "sqlite":
        yield f"sqlite:///{directory / 'borealis-test.db'}"
        return
    admin_url = normalize_url(os.environ.get("BOREALIS_TEST_PG_ADMIN_URL", DEFAULT_PG_ADMIN_URL))
    name = f"borealis_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def wipe(engine: sa.Engine, metadata: sa.MetaData) -> None:
    """Empty every table between tests (faster than a new database)."""
    tables = list(reversed(metadata.sorted_tables))
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            names = ", ".join(f'"{table.name}"' for table in tables)
            if names:
                connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        else:
            for table in tables:
                connection.execute(table.delete())
