"""Webhook ingest throughput against a bare ASGI endpoint on the same server, in the same run.

Starts the server as ``make run`` does (embedded SQLite in a fresh data directory), then drives
``POST /__bare`` and ``POST /dynatrace/webhook/{workspace_id}`` with 32 concurrent keep-alive senders over
loopback, with distinct and repeated PIDs (repeats are identical redeliveries). Prints throughput,
p50/p99 latency, the ratio (target >= 0.2, p99 < 50 ms, no errors), and checks that every 2xx is stored.
Before them it drives the reference DESIGN 10 quotes, a minimal FastAPI route that only parses the JSON
(on the same server), to show what the machine gives such a route against the same bare endpoint.

With ``--without-storage`` the webhook answers each delivery once it is parsed and put in its wire form,
and stores nothing: the server's side alone, the most the webhook could reach on this machine with a
writer that cost nothing.

    .venv/bin/python bench/ingest.py [--seconds 10] [--concurrency 32] [--without-storage]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from borealis import migrate
from borealis.crypto import SecretBox, digest, new_secret
from borealis.db import Database
from borealis.dynatrace.models import Connection
from borealis.problems.models import Notification
from borealis.workspaces import service as workspaces_service

sys.path.insert(0, str(Path(__file__).parent))
import loadgen

HOST = "127.0.0.1"
SECRET_KEY = "bench-secret-key"
BASE_MS = 1_700_000_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def prepare(data_dir: Path) -> tuple[str, str, str]:
    """A workspace with a connected Dynatrace connection; returns (database url, workspace id, webhook
    secret)."""
    url = f"sqlite:///{data_dir / 'borealis.db'}"
    migrate.upgrade(url)
    database = Database(url)
    box = SecretBox.from_passphrase(SECRET_KEY)
    secret = new_secret("whs_")
    with database.session(write=True) as session:
        _, workspace = workspaces_service.create_user(db_session=session, email="bench@example.com")
        session.add(
            Connection(
                workspace_id=workspace.id,
                environment_url="https://abc12345.live.dynatrace.com",
                token_ciphertext=box.encrypt("dt0c01.BENCH"),
                webhook_secret_ciphertext=box.encrypt(secret),
                webhook_secret_hash=digest(secret),
            )
        )
        session.commit()
        workspace_id = workspace.id
    database.dispose()
    return url, workspace_id, secret


def body(index: int, pids: int) -> bytes:
    """A notification from the suggested template; PIDs repeat, each delivery later than the last."""
    pid = f"-{7_000_000_000_000_000 + index % pids}"
    at = BASE_MS + index * 1000
    return json.dumps(
        {
            "ProblemID": f"P-{index % pids}",
            "PID": pid,
            "State": "RESOLVED" if index % 7 == 6 else "OPEN",
            "ProblemTitle": f"Response time degradation on service {index % 50}",
            "ProblemSeverity": "PERFORMANCE",
            "ProblemImpact": "SERVICE",
            "ProblemURL": f"https://abc12345.live.dynatrace.com/#problems/problemdetails;pid={pid}",
            "ImpactedEntity": "Response time degradation on Web service checkout",
            "ImpactedEntityNames": "checkout",
            "ImpactedEntities": [
                {"type": "SERVICE", "name": "checkout", "entity": f"SERVICE-{index % 50:016X}"}
            ],
            "Tags": "env:prod, [Kubernetes]namespace:shop",
            "ProblemDetailsJSONv2": {
                "problemId": f"{pid}_{BASE_MS}V2",
                "displayId": f"P-{index % pids}",
                "status": "OPEN",
                "startTime": BASE_MS,
                "endTime": -1,
                "rootCauseEntity": {
                    "entityId": {"id": f"SERVICE-{index % 50:016X}", "type": "SERVICE"},
                    "name": "checkout",
                },
                "managementZones": [{"id": "1", "name": "Shop"}],
                "evidenceDetails": {
                    "totalCount": 1,
                    "details": [{"evidenceType": "EVENT", "startTime": at, "endTime": -1}],
                },
            },
        }
    ).encode()


def start_server(data_dir: Path, port: int, extra: list[str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BOREALIS_DATA_DIR": str(data_dir),
        "BOREALIS_SECRET_KEY": SECRET_KEY,
        "BOREALIS_LOG_LEVEL": "WARNING",
    }
    env.pop("BOREALIS_DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "benchserver.py"), "--port", str(port), *extra], env=env
    )
    return healthy(server, port, seconds=30)


def healthy(server: subprocess.Popen[bytes], port: int, *, seconds: float) -> subprocess.Popen[bytes]:
    """``server`` once its ``/healthz`` answers 200 (killed, and the run ended, if not within ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"the server on port {port} did not start")


def as_the_writer(database: Database, jobs: list[Any]) -> None:
    """Run webhook jobs as the writer does (one transaction), then carry out the follow-ups they
    queued, as it does once deliveries pause: what one notification costs the server in all. As in the
    writer, a thread of its own copies the SQLite write-ahead log into the database after commits."""
    from borealis import assembly
    from borealis.ingest.delivery import process
    from borealis.ingest.writer import Checkpointer
    from borealis.jobs import follow_ups

    assembly.install()
    with database.session(write=True) as session:
        process(session, jobs)
        session.commit()
    follow_ups.follow_up_all(database=database)
    if database.is_sqlite:
        checkpointer = _checkpointers.get(database)
        if checkpointer is None:
            checkpointer = _checkpointers[database] = Checkpointer(database)
        checkpointer.nudge()


_checkpointers: dict[Database, Any] = {}


def follow_up_drain(url: str) -> tuple[int, float]:
    """How many follow-ups wait when the burst ends, and how long the server takes to finish them."""
    database = Database(url)
    started = time.monotonic()
    count = "SELECT count(*) FROM follow_ups"
    try:
        with database.session() as session:
            pending = session.scalar(sa.text(count))
        while True:
            with database.session() as session:
                if not session.scalar(sa.text(count)):
                    return pending, time.monotonic() - started
            time.sleep(0.05)
    finally:
        database.dispose()


def report(name: str, result: loadgen.Result) -> None:
    print(
        f"{name:8s} {result.count:7d} requests in {result.seconds:5.1f} s = {result.throughput:8.0f}/s   "
        f"p50 {result.percentile(0.5) * 1000:6.2f} ms   p99 {result.percentile(0.99) * 1000:6.2f} ms   "
        f"errors {result.errors}"
    )


async def drive(args: argparse.Namespace, port: int, workspace_id: str, secret: str) -> tuple:
    bare = [loadgen.request_bytes(HOST, port, "/__bare", body(i, args.pids)) for i in range(200)]
    path = f"/dynatrace/webhook/{workspace_id}?token={secret}"
    hooks = [loadgen.request_bytes(HOST, port, path, body(i, args.pids)) for i in range(args.distinct)]
    # Warm up both paths (connections, caches, the writer process).
    await loadgen.run(HOST, port, bare, concurrency=args.concurrency, duration=1.0)
    warm = await loadgen.run(HOST, port, hooks[:500], concurrency=args.concurrency, duration=60, cycle=False)
    reference = [loadgen.request_bytes(HOST, port, "/__fastapi", body(i, args.pids)) for i in range(200)]
    reference_result = await loadgen.run(
        HOST, port, reference, concurrency=args.concurrency, duration=args.seconds / 2
    )
    bare_result = await loadgen.run(HOST, port, bare, concurrency=args.concurrency, duration=args.seconds)
    # Last, so that the follow-ups the burst leaves are measured as it ends.
    hook_result = await loadgen.run(
        HOST, port, hooks[500:], concurrency=args.concurrency, duration=args.seconds
    )
    return warm, bare_result, hook_result, reference_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pids", type=int, default=2000, help="distinct problems")
    parser.add_argument("--distinct", type=int, default=20000, help="distinct bodies before they repeat")
    parser.add_argument(
        "--without-storage", action="store_true", help="answer once parsed, store nothing (the server alone)"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="borealis-bench-") as tmp:
        data_dir = Path(tmp)
        url, workspace_id, secret = prepare(data_dir)
        port = free_port()
        server = start_server(data_dir, port, ["--without-storage"] if args.without_storage else [])
        try:
            warm, bare, hook, reference = asyncio.run(drive(args, port, workspace_id, secret))
            pending, drained = follow_up_drain(url)
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(
            f"ingest benchmark: {args.concurrency} concurrent senders, loopback, embedded SQLite, "
            f"{os.cpu_count()} cores"
        )
        report("bare", bare)
        report("webhook", hook)
        report("fastapi", reference)
        if bare.throughput:
            print(
                f"reference {reference.throughput / bare.throughput:.3f}  (a minimal FastAPI route that only "
                "parses the JSON, against the bare endpoint; DESIGN 10 quotes about 0.24)"
            )
        ratio = hook.throughput / bare.throughput if bare.throughput else 0.0
        if args.without_storage:
            print(f"ratio    {ratio:.3f}  (without storage: the server's side alone, nothing was stored)")
            print(f"statuses {dict(sorted(hook.statuses.items()))}")
            return
        print(f"ratio    {ratio:.3f}  (target >= 0.2; p99 target < 50 ms)")
        acknowledged = sum(1 for _, status in warm.answered + hook.answered if 200 <= status < 300)
        database = Database(url)
        with database.session() as session:
            stored = session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Notification.delivery_count), 0)))
            problems = session.scalar(sa.text("SELECT count(*) FROM problems"))
        database.dispose()
        verdict = "every 2xx stored" if stored == acknowledged else "MISMATCH"
        print(
            f"durable  {acknowledged} acknowledged, {stored} deliveries stored over {problems} problems: {verdict}"
        )
        print(f"statuses {dict(sorted(hook.statuses.items()))}")
        print(
            f"follow-ups {pending} problems waiting for correlation and enrichment when the burst ended, "
            f"all done {drained:.2f} s later"
        )


if __name__ == "__main__":
    main()
