"""An acknowledged webhook is durable: kill -9 the server mid-stream, restart it, every 2xx is stored."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import sqlalchemy as sa

from borealis import migrate
from borealis.crypto import SecretBox, digest, new_secret
from borealis.db import Database
from borealis.dynatrace.models import Connection
from borealis.problems.models import Problem
from borealis.workspaces import service as workspaces_service
from tests.support.waiting import wait_until
from tests.support.webhooks import encode, notification

SECRET_KEY = "durability-test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BOREALIS_DATA_DIR": str(data_dir), "BOREALIS_SECRET_KEY": SECRET_KEY}
    env.pop("BOREALIS_DATABASE_URL", None)
    borealis = Path(sys.executable).parent / "borealis"
    server = subprocess.Popen(
        [str(borealis), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _healthy(port), what="the server to start")
    except AssertionError:
        server.kill()
        raise
    return server


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_every_acknowledged_delivery_survives_kill_9(tmp_path):
    url = f"sqlite:///{tmp_path / 'borealis.db'}"
    migrate.upgrade(url)
    database = Database(url)
    secret = new_secret("whs_")
    box = SecretBox.from_passphrase(SECRET_KEY)
    with database.session(write=True) as session:
        _, workspace = workspaces_service.create_user(db_session=session, email="kill@example.com")
        session.add(
            Connection(
                workspace_id=workspace.id,
                environment_url="https://abc12345.live.dynatrace.com",
                token_ciphertext=box.encrypt("dt0c01.DURABLE"),
                webhook_secret_ciphertext=box.encrypt(secret),
                webhook_secret_hash=digest(secret),
            )
        )
        session.commit()
        workspace_id = workspace.id

    port = free_port()
    server = start(tmp_path, port)
    webhook = f"http://127.0.0.1:{port}/dynatrace/webhook/{workspace_id}?token={secret}"
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(worker: int) -> None:
        with httpx.Client(timeout=10) as http:
            for n in range(10_000):
                if stop.is_set():
                    return
                pid = f"-{worker:02d}{n:06d}"
                try:
                    response = http.post(webhook, content=encode(notification(pid, problem_id=f"P-{pid}")))
                except httpx.HTTPError:
                    return
                if 200 <= response.status_code < 300:
                    with lock:
                        acknowledged.add(pid)

    threads = [threading.Thread(target=sender, args=(worker,)) for worker in range(16)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acknowledged) >= 300, what="300 acknowledged deliveries")
    finally:
        os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=30)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) >= 300

    server = start(tmp_path, port)
    try:
        after = httpx.post(webhook, content=encode(notification("-after", problem_id="P-after")), timeout=10)
        assert after.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)

    with database.session() as session:
        stored = set(session.scalars(sa.select(Problem.pid)))
    database.dispose()
    assert acknowledged - stored == set()
    assert "-after" in stored
