"""``borealis demo`` as a real process on a free port, with the account it prints."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import BOREALIS
from tests.support.waiting import wait_until


@dataclass
class RunningDemo:
    url: str
    email: str
    password: str
    api_key: str
    lines: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_demo(folder: Path) -> Iterator[RunningDemo]:
    """Start ``borealis demo`` with its data in ``folder/data-demo`` and none of the caller's BOREALIS_
    settings; stopped (SIGTERM) when the block ends, its output printed for a failing test."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOREALIS_") and k != "NGROK_URL"}
    errors = (folder / "demo.log").open("w")
    process = subprocess.Popen(
        [BOREALIS, "demo", "--port", str(port), "--data-dir", str(folder / "data-demo")],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        login = wait_until(
            lambda: next((line for line in lines if " with password " in line), None) or process.poll(),
            timeout=60,
            what="the demo to print its account",
        )
        assert isinstance(login, str), f"borealis demo exited with {process.returncode}"
        key = wait_until(lambda: next((line for line in lines if line.startswith("API key")), None))
        words = login.split()
        yield RunningDemo(
            url=f"http://127.0.0.1:{port}",
            email=words[words.index("as") + 1],
            password=words[-1],
            api_key=key.split()[-1],
            lines=lines,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        errors.close()
        print("--- borealis demo ---\n" + "".join(lines))
