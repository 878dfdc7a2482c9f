"""Real ``borealis`` processes, for the tests that start, signal, kill and race them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import TEST_SECRET_KEY
from tests.support.shared import REPOSITORY

BOREALIS = str(Path(sys.executable).with_name("borealis"))


def process_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """A child's environment: this test's database and data folder, none of the caller's BOREALIS_
    settings, and the repository importable (for ``--import tests.support...``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOREALIS_")}
    env.update(
        BOREALIS_DATABASE_URL=database_url,
        BOREALIS_DATA_DIR=str(data_dir),
        BOREALIS_SECRET_KEY=TEST_SECRET_KEY,
        PYTHONPATH=str(REPOSITORY),
        **extra,
    )
    return env


@contextmanager
def borealis_processes(env: dict[str, str], cwd: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``borealis`` subprocesses; at the end whatever still runs is killed and each one's stderr is
    printed (pytest shows it when the test failed)."""
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [BOREALIS, *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=30)
        print(f"--- {' '.join(process.args[1:])} (exit {process.returncode}) ---\n{stderr}")


def run_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """One `borealis` command as a user runs it, in the data folder of ``env``."""
    return subprocess.run(
        [BOREALIS, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=env["BOREALIS_DATA_DIR"],
    )
