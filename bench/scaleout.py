"""Scale-out on PostgreSQL: replicas and workers on one database, a storm, and a kill -9 of each kind.

Three runs of the same storm (tenants x problems, each problem delivered ``--deliveries`` times with
exact redeliveries, a resolution for every other problem, and the whole stream reordered within windows):

- ``sqlite``: one ``borealis serve`` on the embedded SQLite default (its in-process workers): the baseline;
- ``pg-serve``: one ``borealis serve`` with its workers on PostgreSQL: the same shape as ``sqlite``;
- ``pg-1``: one ``borealis serve --no-workers`` and one ``borealis worker`` on PostgreSQL;
- ``pg-scale``: ``--replicas`` servers and ``--workers`` workers on PostgreSQL; once ``--kill-at`` of the
  deliveries are acknowledged, one replica and one worker get ``kill -9`` (each kind only where another is
  left to take over). Senders whose replica died send again to another, as Dynatrace does;
- ``matrix`` (only when asked for): ``pg-scale`` with 1 and 2 replicas and 1, 2 and 4 workers, then a
  table of them all;
- ``rate`` (only when asked for): ``sqlite`` and ``pg-serve`` again at each number of senders of
  ``--rate-senders``, in turns. A fixed number of senders measures latency as much as rate: each waits
  for its answer, so a database whose batch takes longer gets fewer deliveries per second from the same
  senders while its processes idle. The best figure of each database over the sweep is its ingest rate,
  and their ratio is the one the docs give.

With ``--writer-only`` no process runs workers: the runs measure the webhook path alone (what the
writer's transaction costs on each database), and the incidents are not checked.

Each run prints throughput, p50/p99/max reply time, how long the background work (the follow-ups, then
every job) took to catch up after the last acknowledgement and, on PostgreSQL, the deadlocks counted by
``pg_stat_database`` and the lock waits over 100 ms (``pg_locks.waitstart``, sampled every 10 ms). Then
it checks the outcome: every acknowledged delivery stored exactly once, one record per problem, the
final states, and the incidents (one per group of related problems, exactly). The Dynatrace environment
is the simulated one (``borealis.simulation``) on loopback, so enrichment and RCA make real calls.

    .venv/bin/python bench/scaleout.py [--tenants 4] [--problems 100] [--deliveries 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from borealis import jsontext, migrate
from borealis.crypto import SecretBox, digest, new_secret
from borealis.db import Database
from borealis.dynatrace.models import Connection
from borealis.simulation import running_fake_dynatrace
from borealis.workspaces import service as workspaces_service
from ingest import HOST, free_port, healthy

SECRET_KEY = "bench-scaleout-secret-key"
PG_ADMIN_URL = os.environ.get("BOREALIS_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
BOREALIS = str(Path(sys.executable).with_name("borealis"))
BASE_MS = 1_700_000_000_000
MINUTE = 60_000
GROUP = 10  # related problems per incident
GROUP_GAP_MINUTES = 240  # far apart: groups never correlate by time


# --- the storm ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    tenant: int
    pid: str
    body: bytes


def problem_body(tenant: int, number: int, *, state: str, observed: int) -> dict[str, Any]:
    group = number // GROUP
    start = BASE_MS + group * GROUP_GAP_MINUTES * MINUTE + (number % GROUP) * MINUTE
    pid = f"-{7_100_000_000_000_000 + tenant * 100_000 + number}"
    service = f"SERVICE-{tenant:04X}{group:012X}"
    host = f"HOST-{tenant:04X}{group:012X}"
    ended = state == "RESOLVED"
    seen = start + observed * MINUTE
    return {
        "ProblemID": f"P-{tenant}{number:05d}",
        "PID": pid,
        "State": state,
        "ProblemTitle": f"Group {group} degradation {number % GROUP}",
        "ProblemSeverity": "PERFORMANCE",
        "ProblemImpact": "SERVICE",
        "ProblemURL": f"https://example.invalid/#problems/problemdetails;pid={pid}",
        "ImpactedEntity": f"Degradation on {service}",
        "ImpactedEntityNames": service.lower(),
        "ImpactedEntities": [{"type": "SERVICE", "name": service.lower(), "entity": service}],
        "Tags": "",
        "ProblemDetailsJSONv2": {
            "problemId": f"{pid}_{start}V2",
            "displayId": f"P-{tenant}{number:05d}",
            "status": "CLOSED" if ended else "OPEN",
            "startTime": start,
            "endTime": seen if ended else -1,
            "rootCauseEntity": {"entityId": {"id": host, "type": "HOST"}, "name": host.lower()},
            "evidenceDetails": {"totalCount": 1, "details": [{"evidenceType": "EVENT", "startTime": seen}]},
        },
    }


def storm(tenants: int, problems: int, deliveries: int, seed: int) -> tuple[list[Delivery], list[Delivery]]:
    """Two waves, each shuffled (retries and parallel senders reorder): every problem's updates with an
    exact redelivery, then its final word (a resolution for every other one) and its redelivery. The
    second wave follows the first, so every group of related problems is open together once and must
    end as exactly one incident."""
    rng = random.Random(seed)
    updates: list[Delivery] = []
    finals: list[Delivery] = []
    for tenant in range(tenants):
        for number in range(problems):
            pid = problem_body(tenant, number, state="OPEN", observed=0)["PID"]
            opened = [
                jsontext.dumps(problem_body(tenant, number, state="OPEN", observed=step)).encode()
                for step in range(deliveries - 3)
            ]
            opened.append(opened[len(opened) // 2])
            last = "RESOLVED" if number % 2 == 0 else "OPEN"
            final = jsontext.dumps(problem_body(tenant, number, state=last, observed=deliveries)).encode()
            updates += [Delivery(tenant, pid, raw) for raw in opened]
            finals += [Delivery(tenant, pid, final), Delivery(tenant, pid, final)]
    rng.shuffle(updates)
    rng.shuffle(finals)
    return updates, finals


# --- processes ------------------------------------------------------------------------------------------


@dataclass
class Tenant:
    workspace_id: str
    secret: str


def prepare(url: str, tenants: int, environment_url: str, token: str) -> list[Tenant]:
    migrate.upgrade(url)
    database = Database(url)
    box = SecretBox.from_passphrase(SECRET_KEY)
    made = []
    with database.session(write=True) as session:
        for index in range(tenants):
            _, workspace = workspaces_service.create_user(
                db_session=session, email=f"tenant{index}@example.com"
            )
            secret = new_secret("whs_")
            session.add(
                Connection(
                    workspace_id=workspace.id,
                    environment_url=environment_url,
                    token_ciphertext=box.encrypt(token),
                    webhook_secret_ciphertext=box.encrypt(secret),
                    webhook_secret_hash=digest(secret),
                )
            )
            made.append(Tenant(workspace.id, secret))
        session.commit()
    database.dispose()
    return made


@contextmanager
def processes(url: str, data_dir: Path, *, writers: int | None = None) -> Iterator[Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOREALIS_")}
    if writers is not None:
        env["BOREALIS_WEBHOOK_WRITERS"] = str(writers)
    env.update(
        BOREALIS_DATABASE_URL=url,
        BOREALIS_DATA_DIR=str(data_dir),
        BOREALIS_SECRET_KEY=SECRET_KEY,
        BOREALIS_LOG_LEVEL="WARNING",
        BOREALIS_ALLOW_PRIVATE_DYNATRACE="true",
    )
    started: list[subprocess.Popen[bytes]] = []

    # The processes' logs (a killed replica's writer complains as it goes), kept out of the report.
    log = (data_dir / "processes.log").open("ab")

    def start(*args: str) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [BOREALIS, *args], env=env, cwd=data_dir, stdout=subprocess.DEVNULL, stderr=log
        )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def serve(start: Any, port: int, *extra: str) -> subprocess.Popen[bytes]:
    return healthy(start("serve", "--host", HOST, "--port", str(port), *extra), port, seconds=60)


# --- sending ---------------------------------------------------------------------------------------------


@dataclass
class Sent:
    latencies: list[float] = field(default_factory=list)
    # (seconds since the first send, reply time) of each reply, to say when the slow ones came.
    timeline: list[tuple[float, float]] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    acknowledged: set[int] = field(default_factory=set)
    resent: int = 0
    last_ack: float = 0.0
    seconds: float = 0.0


async def send(
    deliveries: list[Delivery],
    waves: list[range],
    tenants: list[Tenant],
    ports: list[int],
    *,
    concurrency: int,
    on_progress: Any,
) -> Sent:
    """Send every delivery until it is acknowledged, wave after wave, over ``concurrency`` keep-alive
    connections spread over the replicas; a connection whose replica fails moves to the next one and
    sends again."""
    sent = Sent()
    queue: asyncio.Queue[int] = asyncio.Queue()
    dead: set[int] = set()

    def request(index: int, port: int) -> bytes:
        delivery = deliveries[index]
        tenant = tenants[delivery.tenant]
        head = (
            f"POST /dynatrace/webhook/{tenant.workspace_id} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Authorization: Bearer {tenant.secret}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(delivery.body)}\r\n\r\n"
        )
        return head.encode() + delivery.body

    async def connection(number: int) -> None:
        replica = number % len(ports)
        reader = writer = None
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            while True:
                if replica in dead:
                    replica = (replica + 1) % len(ports)
                    reader = writer = None
                    continue
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(HOST, ports[replica])
                    began = time.perf_counter()
                    writer.write(request(index, ports[replica]))
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
                    status = int(head[9:12])
                    length = next(
                        (
                            int(line[15:])
                            for line in head.split(b"\r\n")
                            if line[:15].lower() == b"content-length:"
                        ),
                        0,
                    )
                    if length:
                        await reader.readexactly(length)
                    sent.latencies.append(time.perf_counter() - began)
                    sent.timeline.append((began - first, sent.latencies[-1]))
                    sent.statuses[status] = sent.statuses.get(status, 0) + 1
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    # The replica is gone (or going): send this delivery again, elsewhere.
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    if not await _alive(ports[replica]):
                        dead.add(replica)
                    sent.resent += 1
                    await asyncio.sleep(0.05)
                    continue
                if 200 <= status < 300:
                    sent.acknowledged.add(index)
                    sent.last_ack = time.perf_counter()
                    on_progress(len(sent.acknowledged))
                    break
                sent.resent += 1
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    began = first = time.perf_counter()
    for wave in waves:
        for index in wave:
            queue.put_nowait(index)
        await asyncio.gather(*(connection(number) for number in range(concurrency)))
    sent.seconds = sent.last_ack - began
    return sent


async def _alive(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    writer.close()
    return True


# --- watching PostgreSQL ----------------------------------------------------------------------------------


class LockWaits:
    """Samples ``pg_locks`` for waits (``waitstart``) every 10 ms; remembers how long each one lasted."""

    def __init__(self, url: str) -> None:
        self._url = url.replace("postgresql+psycopg://", "postgresql://")
        self._waits: dict[tuple[int, Any], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LockWaits:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self._url, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT l.pid, l.waitstart, extract(epoch FROM now() - l.waitstart)"
                    " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE NOT l.granted AND l.waitstart IS NOT NULL AND a.datname = current_database()"
                ).fetchall()
                for pid, since, seconds in rows:
                    key = (pid, since)
                    self._waits[key] = max(self._waits.get(key, 0.0), float(seconds))
                time.sleep(0.01)

    def over(self, seconds: float) -> list[float]:
        return sorted(wait for wait in self._waits.values() if wait > seconds)


def deadlocks(url: str) -> int:
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        return int(
            conn.execute(
                "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
            ).fetchone()[0]
        )


# --- catching up and checking -------------------------------------------------------------------------------


def caught_up(database: Database, *, limit: float) -> tuple[float | None, float | None]:
    """Seconds until the follow-ups are done, and until no job is queued or running (None: not within
    ``limit``)."""
    began = time.monotonic()
    follow_ups = jobs = None
    while time.monotonic() - began < limit and jobs is None:
        with database.session() as session:
            waiting = session.scalar(sa.text("SELECT count(*) FROM follow_ups"))
            follow_up_jobs = session.scalar(
                sa.text(
                    "SELECT count(*) FROM jobs WHERE kind = 'problem.follow_up' AND state IN ('queued', 'running')"
                )
            )
            busy = session.scalar(sa.text("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"))
        if follow_ups is None and not waiting and not follow_up_jobs:
            follow_ups = time.monotonic() - began
        if follow_ups is not None and not busy:
            jobs = time.monotonic() - began
        time.sleep(0.05)
    return follow_ups, jobs


def check(
    database: Database,
    deliveries: list[Delivery],
    sent: Sent,
    tenants: int,
    problems: int,
    warm_workspace: str,
    *,
    incidents_formed: bool = True,
) -> list[str]:
    """What went wrong (empty: nothing); the warm-up tenant's problems are left out. Without
    ``incidents_formed`` (nothing ran the follow-ups) the incidents are not looked at."""
    wrong: list[str] = []
    distinct: dict[str, set[bytes]] = {}
    for index in sent.acknowledged:
        delivery = deliveries[index]
        distinct.setdefault(delivery.pid, set()).add(delivery.body)
    with database.session() as session:
        stored = dict(
            session.execute(
                sa.text(
                    "SELECT p.pid, count(n.id) FROM problems p JOIN notifications n ON n.problem_id = p.id"
                    " WHERE p.workspace_id <> :warm GROUP BY p.pid"
                ),
                {"warm": warm_workspace},
            ).all()
        )
        records = session.scalar(
            sa.text("SELECT count(*) FROM problems WHERE workspace_id <> :warm"), {"warm": warm_workspace}
        )
        states = dict(
            session.execute(
                sa.text("SELECT pid, state FROM problems WHERE workspace_id <> :warm"),
                {"warm": warm_workspace},
            ).all()
        )
        incidents = session.execute(
            sa.text(
                "SELECT ip.incident_id, p.pid FROM incident_problems ip JOIN problems p ON p.id = ip.problem_id"
                " WHERE p.workspace_id <> :warm"
            ),
            {"warm": warm_workspace},
        ).all()
    for pid, bodies in distinct.items():
        if stored.get(pid) != len(bodies):
            wrong.append(f"{pid}: {len(bodies)} distinct deliveries acknowledged, {stored.get(pid)} stored")
    if records != tenants * problems:
        wrong.append(f"{records} problem records for {tenants * problems} problems")
    for pid, state in states.items():
        number = int(pid[1:]) % 100_000
        expected = "RESOLVED" if number % 2 == 0 else "OPEN"
        if state != expected:
            wrong.append(f"{pid} ended {state}, not {expected}")
    groups: dict[int, set[tuple[int, int]]] = {}
    placed: dict[str, int] = {}
    for incident_id, pid in incidents:
        if pid in placed:
            wrong.append(f"{pid} is in two incidents")
        placed[pid] = incident_id
        code = int(pid[1:]) - 7_100_000_000_000_000
        groups.setdefault(incident_id, set()).add((code // 100_000, code % 100_000 // GROUP))
    expected_incidents = tenants * ((problems + GROUP - 1) // GROUP)
    if incidents_formed and (
        len(groups) != expected_incidents or any(len(members) != 1 for members in groups.values())
    ):
        wrong.append(
            f"{len(groups)} incidents (some mixing groups: {sum(len(m) > 1 for m in groups.values())})"
            f" for {expected_incidents} groups"
        )
    if incidents_formed and len(placed) != tenants * problems:
        wrong.append(f"{tenants * problems - len(placed)} problems in no incident")
    return wrong


# --- runs -------------------------------------------------------------------------------------------------------


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"borealis_scaleout_{os.getpid()}"
    admin = PG_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(
    name: str, url: str, args: argparse.Namespace, *, replicas: int, workers: int, kill: bool
) -> dict[str, Any]:
    updates, finals = storm(args.tenants, args.problems, args.deliveries, args.seed)
    deliveries = updates + finals
    waves = [range(len(updates)), range(len(updates), len(deliveries))]
    is_pg = url.startswith("postgresql")
    with tempfile.TemporaryDirectory(prefix="borealis-scaleout-") as tmp, running_fake_dynatrace() as fake:
        data_dir = Path(tmp)
        # One more tenant, whose deliveries warm every replica up (the writer's first batch, the caches)
        # before anything is measured.
        tenants = prepare(url, args.tenants + 1, fake.environment_url, fake.add_token())
        warmup = [
            Delivery(args.tenants, body["PID"], jsontext.dumps(body).encode())
            for number in range(16)
            for step in range(4)
            for body in [problem_body(args.tenants, number, state="OPEN", observed=step)]
        ]
        database = Database(url)
        with processes(url, data_dir, writers=args.webhook_writers) as start:
            ports = [free_port() for _ in range(replicas)]
            # Without workers in any process (``--writer-only``) the writer's work is all there is.
            quiet = workers or args.writer_only
            servers = [serve(start, port, *(["--no-workers"] if quiet else [])) for port in ports]
            background = [start("worker", "--concurrency", "2", "--lease", "10") for _ in range(workers)]
            killed: list[str] = []

            def on_progress(acknowledged: int) -> None:
                if kill and not killed and acknowledged >= args.kill_at * len(deliveries):
                    # One of each kind while another is left to take over its deliveries and jobs.
                    victims = [f"replica {servers[0].pid}"] if replicas > 1 else []
                    victims += [f"worker {background[0].pid}"] if workers > 1 else []
                    if replicas > 1:
                        servers[0].send_signal(signal.SIGKILL)
                    if workers > 1:
                        background[0].send_signal(signal.SIGKILL)
                    killed.append(f"{' and '.join(victims) or 'nothing'} at {acknowledged}")

            asyncio.run(
                send(
                    warmup,
                    [range(len(warmup))],
                    tenants,
                    ports,
                    concurrency=args.concurrency,
                    on_progress=lambda _count: None,
                )
            )
            before = deadlocks(url) if is_pg else 0
            waits = LockWaits(url) if is_pg else None
            with waits or nullcontext():
                sent = asyncio.run(
                    send(
                        deliveries,
                        waves,
                        tenants,
                        ports,
                        concurrency=args.concurrency,
                        on_progress=on_progress,
                    )
                )
                follow_ups, jobs = (
                    (None, None) if args.writer_only else caught_up(database, limit=args.catch_up_limit)
                )
            time.sleep(1.0)  # pg_stat_database is flushed at most every second
            after = deadlocks(url) if is_pg else 0
            errors = (data_dir / "processes.log").read_text(errors="replace").count('"level": "ERROR"')
            wrong = check(
                database,
                deliveries,
                sent,
                args.tenants,
                args.problems,
                tenants[-1].workspace_id,
                incidents_formed=not args.writer_only,
            )
        database.dispose()
    ordered = sorted(sent.latencies)
    result = {
        "name": name,
        "deliveries": len(deliveries),
        "throughput": len(sent.acknowledged) / sent.seconds if sent.seconds else 0.0,
        "p50": ordered[len(ordered) // 2] * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "max": ordered[-1] * 1000,
        "statuses": dict(sorted(sent.statuses.items())),
        "resent": sent.resent,
        "deadlocks": after - before if is_pg else None,
        "waits": waits.over(0.1) if waits else None,
        "follow_ups": follow_ups,
        "jobs": jobs,
        "background": not args.writer_only,
        "killed": killed,
        "slowest": sorted(sent.timeline, key=lambda item: -item[1])[:5],
        "wrong": wrong,
        "logged_errors": errors,
    }
    report(result)
    return result


def _seconds(value: float | None, result: dict[str, Any]) -> str:
    if not result["background"]:
        return "—"
    return "not within the limit" if value is None else f"{value:.1f} s"


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['name']:9s} {result['deliveries']} deliveries: {result['throughput']:7.0f}/s   "
        f"reply p50 {result['p50']:6.1f} ms  p99 {result['p99']:6.1f} ms  max {result['max']:7.1f} ms   "
        f"statuses {result['statuses']}  sent again {result['resent']}"
    )
    if result["deadlocks"] is not None:
        waits = result["waits"]
        longest = f", longest {waits[-1] * 1000:.0f} ms" if waits else ""
        print(f"{'':9s} deadlocks {result['deadlocks']}   lock waits over 100 ms: {len(waits)}{longest}")
    print(
        f"{'':9s} caught up after the last acknowledgement: follow-ups {_seconds(result['follow_ups'], result)}, "
        f"every job {_seconds(result['jobs'], result)}"
    )
    slowest = ", ".join(f"{seconds * 1000:.0f} ms at {at:.1f} s" for at, seconds in result["slowest"])
    print(f"{'':9s} slowest replies: {slowest}")
    if result["killed"]:
        print(f"{'':9s} kill -9: {result['killed'][0]} acknowledged")
    print(f"{'':9s} errors logged by the processes: {result['logged_errors']}")
    print(f"{'':9s} outcome: {'right' if not result['wrong'] else 'WRONG'}")
    for line in result["wrong"][:10]:
        print(f"{'':11s}{line}")
    sys.stdout.flush()


def table(results: list[dict[str, Any]]) -> None:
    """Every run as a row of a Markdown table (for bench/README.md and the docs)."""
    print()
    print(
        "| Run | Throughput | p50 | p99 | max | Deadlocks | Lock waits > 100 ms | Follow-ups caught up "
        "| Every job caught up | kill -9 | Outcome |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        waits = r["waits"]
        waited = (
            "—"
            if waits is None
            else f"{len(waits)}" + (f" (longest {waits[-1] * 1000:.0f} ms)" if waits else "")
        )
        print(
            f"| {r['name']} | {r['throughput']:,.0f}/s | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['max']:,.0f} ms "
            f"| {'—' if r['deadlocks'] is None else r['deadlocks']} | {waited} | {_seconds(r['follow_ups'], r)} "
            f"| {_seconds(r['jobs'], r)} | {r['killed'][0] if r['killed'] else '—'} "
            f"| {'right' if not r['wrong'] else 'WRONG'} |"
        )


def sweep(args: argparse.Namespace, senders: list[int]) -> None:
    """Each database's ingest rate: the best throughput over numbers of senders (the runs in turns, so
    a drift of the machine meets both)."""
    rows = []
    for number in senders:
        at = argparse.Namespace(**{**vars(args), "concurrency": number})
        with tempfile.TemporaryDirectory(prefix="borealis-scaleout-sqlite-") as tmp:
            lite = run(
                f"sqlite@{number}", f"sqlite:///{tmp}/borealis.db", at, replicas=1, workers=0, kill=False
            )
        with postgres_database() as url:
            pg = run(f"pg-serve@{number}", url, at, replicas=1, workers=0, kill=False)
        rows.append((number, lite, pg))
    print()
    print("| Senders | SQLite | p99 | PostgreSQL | p99 | PostgreSQL / SQLite | Outcome |")
    print("|---|---|---|---|---|---|---|")
    for number, lite, pg in rows:
        right = "right" if not (lite["wrong"] or pg["wrong"]) else "WRONG"
        print(
            f"| {number} | {lite['throughput']:,.0f}/s | {lite['p99']:.1f} ms | {pg['throughput']:,.0f}/s "
            f"| {pg['p99']:.1f} ms | {pg['throughput'] / lite['throughput']:.2f} | {right} |"
        )
    best_lite = max(lite["throughput"] for _, lite, _ in rows)
    best_pg = max(pg["throughput"] for _, _, pg in rows)
    print(
        f"ingest rate (the best of the sweep): sqlite {best_lite:,.0f}/s, pg-serve {best_pg:,.0f}/s, "
        f"ratio {best_pg / best_lite:.2f}  (target >= 0.6)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--problems", type=int, default=100, help="per tenant")
    parser.add_argument("--deliveries", type=int, default=10, help="per problem, redeliveries included")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--kill-at", type=float, default=0.4, help="share acknowledged when the kills come")
    parser.add_argument("--catch-up-limit", type=float, default=180.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--webhook-writers",
        type=int,
        help="writer processes per server on PostgreSQL (default: the setting's)",
    )
    parser.add_argument(
        "--writer-only",
        action="store_true",
        help="no workers in any process: the webhook path alone (follow-ups and incidents not checked)",
    )
    parser.add_argument(
        "--only", choices=("sqlite", "pg-serve", "pg-1", "pg-scale", "matrix", "rate"), action="append"
    )
    parser.add_argument(
        "--rate-senders", default="32,64,128,256", help="comma-separated numbers of senders for 'rate'"
    )
    args = parser.parse_args()
    only = set(args.only or ("sqlite", "pg-serve", "pg-1", "pg-scale"))
    print(
        f"scale-out benchmark: {args.tenants} tenants x {args.problems} problems x {args.deliveries} deliveries, "
        f"{args.concurrency} senders, {os.cpu_count()} cores"
    )
    results = {}
    if "sqlite" in only:
        with tempfile.TemporaryDirectory(prefix="borealis-scaleout-sqlite-") as tmp:
            results["sqlite"] = run(
                "sqlite", f"sqlite:///{tmp}/borealis.db", args, replicas=1, workers=0, kill=False
            )
    if "pg-serve" in only:
        with postgres_database() as url:
            results["pg-serve"] = run("pg-serve", url, args, replicas=1, workers=0, kill=False)
    if "pg-1" in only:
        with postgres_database() as url:
            results["pg-1"] = run("pg-1", url, args, replicas=1, workers=1, kill=False)
    if "pg-scale" in only:
        with postgres_database() as url:
            results["pg-scale"] = run(
                "pg-scale", url, args, replicas=args.replicas, workers=args.workers, kill=True
            )
    if "matrix" in only:
        for replicas in (1, 2):
            for workers in (1, 2, 4):
                with postgres_database() as url:
                    name = f"pg-{replicas}r{workers}w"
                    results[name] = run(name, url, args, replicas=replicas, workers=workers, kill=True)
    if "rate" in only:
        sweep(args, [int(number) for number in args.rate_senders.split(",")])
    if results:
        table(list(results.values()))
    for name in ("pg-serve", "pg-1"):
        if "sqlite" in results and name in results and results["sqlite"]["throughput"]:
            ratio = results[name]["throughput"] / results["sqlite"]["throughput"]
            print(f"ratio     {name} / sqlite ingest: {ratio:.2f}  (target >= 0.6)")


if __name__ == "__main__":
    main()
