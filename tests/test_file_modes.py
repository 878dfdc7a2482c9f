"""The data folder is 0700 and the database, its WAL and the key file are 0600, whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess

import sqlalchemy as sa

from borealis.crypto import SecretBox
from borealis.db import Database
from tests.support.processes import BOREALIS, process_env


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_an_embedded_start_keeps_the_data_folder_and_database_to_their_owner(tmp_path):
    data = tmp_path / "data"
    env = process_env("unused", data)
    del env["BOREALIS_DATABASE_URL"]
    result = subprocess.run(
        [BOREALIS, "db", "upgrade"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        umask=0o022,
    )
    assert result.returncode == 0, result.stderr
    assert mode(data) == 0o700
    assert mode(data / "borealis.db") == 0o600


def test_the_write_ahead_log_and_an_old_lax_database_are_owner_only(tmp_path):
    path = tmp_path / "borealis.db"
    previous = os.umask(0o022)
    try:
        path.touch(mode=0o644)
        os.chmod(path, 0o644)
        database = Database(f"sqlite:///{path}")
        with database.engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            connection.execute(sa.text("INSERT INTO t VALUES (1)"))
            assert mode(path) == 0o600
            wal = path.with_name(path.name + "-wal")
            assert wal.exists()
            assert mode(wal) == 0o600
        database.engine.dispose()
    finally:
        os.umask(previous)


def test_the_generated_key_and_its_folder_are_owner_only(tmp_path):
    data = tmp_path / "fresh"
    previous = os.umask(0o022)
    try:
        SecretBox.from_key_file(data)
    finally:
        os.umask(previous)
    assert mode(data) == 0o700
    assert mode(data / "secret.key") == 0o600
