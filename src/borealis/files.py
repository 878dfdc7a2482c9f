"""Owner-only files and folders: the data folder, the SQLite database and its WAL hold tokens (encrypted),
problems and accounts, so no other user of the machine may read them, whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
# SQLite creates its write-ahead log and shared-memory index beside the database, with the database's
# own mode; they are set too in case they were left by an earlier, laxer start.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed and make it readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    os.chmod(path, PRIVATE_DIR)
    return path


def private_database(path: Path) -> Path:
    """Create the SQLite file owner-only before SQLite opens it, and tighten one that exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        if candidate.exists():
            os.chmod(candidate, PRIVATE_FILE)
    return path
