"""Correlation quality and cost: the scenario corpus replayed through ingest, and the cost of one ingest
with correlation at 1k and 100k stored problems.

Quality: every scenario of ``tests/scenarios`` is replayed through the real ingest path (one transaction
per delivery, as the webhook's writer or a replica runs it), one by one and with 8 concurrent writers,
and its grouping is scored pairwise against the truth (precision, recall, F1). A third replay leaves the
entity cache empty: what a token without ``entities.read`` gets.

Cost: problems are seeded straight into the database as a busy environment holds them (2% open, at
most 450, in open incidents of about three problems each, in the candidate index; the rest resolved),
with an entity cache of services and hosts. Then new problems arrive, half in applications with open
incidents (they join), half anywhere (most open an incident), each resolving a little later: the
writer's transaction is timed per notification, one per transaction and in batches of 64 (group commit
under load), in rounds that alternate between the sizes. Flat from 1k to 100k is the target.

    .venv/bin/python bench/correlation.py [--sizes 1000,100000] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

sys.path.insert(0, str(Path(__file__).parent))
from tests.scenarios import corpus  # noqa: E402
from tests.scenarios.model import webhook_body  # noqa: E402
from tests.support import rca_scenarios  # noqa: E402
from tests.support.databases import throwaway_database  # noqa: E402
from tests.support.replay import load_topology, outcome, pairwise, replay_direct  # noqa: E402

import ingest as ingest_bench  # noqa: E402
from borealis import migrate  # noqa: E402
from borealis.crypto import SecretBox, digest, new_secret  # noqa: E402
from borealis.db import Database, utcnow  # noqa: E402
from borealis.dynatrace.entities import store_entities  # noqa: E402
from borealis.dynatrace.models import Connection  # noqa: E402
from borealis.incidents.index import facts_from, keys_for  # noqa: E402
from borealis.incidents.models import Incident, IncidentKey, IncidentProblem  # noqa: E402
from borealis.ingest import delivery  # noqa: E402
from borealis.problems.models import Problem, ProblemCount  # noqa: E402
from borealis.workspaces import service as workspaces_service  # noqa: E402

OPEN_SHARE = 0.02
MAX_OPEN = 450
TITLES = (
    "Response time degradation",
    "Failure rate increase",
    "CPU saturation",
    "Memory saturation",
    "Low disk space",
    "Process unavailable",
    "User action duration degradation",
    "Long garbage-collection time",
)
ZONES = ("Shop", "Payments", "Search", "Platform", "Data", "Edge")


@contextmanager
def database_of(kind: str) -> Iterator[Database]:
    """A fresh, migrated database of the given kind (PostgreSQL through BOREALIS_TEST_PG_ADMIN_URL)."""
    os.environ["BOREALIS_TEST_DATABASE"] = kind
    with tempfile.TemporaryDirectory(prefix="borealis-bench-") as tmp, throwaway_database(Path(tmp)) as url:
        migrate.upgrade(url)
        database = Database(url)
        try:
            yield database
        finally:
            database.dispose()


def new_workspace(database: Database, name: str) -> tuple[str, str, str]:
    """A workspace with a connected Dynatrace connection; returns (workspace id, connection id, webhook
    secret)."""
    box = SecretBox.from_passphrase("bench-secret-key")
    secret = new_secret("whs_")
    with database.session(write=True) as session:
        _, workspace = workspaces_service.create_user(db_session=session, email=f"{name}@example.com")
        connection = Connection(
            workspace_id=workspace.id,
            environment_url="https://abc12345.live.dynatrace.com",
            token_ciphertext=box.encrypt("dt0c01.BENCH"),
            webhook_secret_ciphertext=box.encrypt(secret),
            webhook_secret_hash=digest(secret),
        )
        session.add(connection)
        session.commit()
        return workspace.id, connection.id, secret


# -- quality ----------------------------------------------------------------------------------------


def replay_corpus(kind: str) -> None:
    print(f"Scenario corpus, replayed through ingest ({kind}); pairwise scores against the true grouping")
    header = "scenario                         problems deliveries  precision recall     F1  ms/delivery"
    print(f"{header}  concurrent  F1 w/o topology")
    with database_of(kind) as database:
        for index, scenario in enumerate(corpus()):
            calm, calm_connection, _ = new_workspace(database, f"calm{index}")
            load_topology(database, calm_connection, scenario)
            began = time.perf_counter()
            replay_direct(database, calm_connection, scenario)
            per_delivery = (time.perf_counter() - began) / len(scenario.deliveries) * 1000
            sequential = outcome(database, calm).grouping
            score = pairwise(sequential, scenario.truth)

            stormy, stormy_connection, _ = new_workspace(database, f"stormy{index}")
            load_topology(database, stormy_connection, scenario)
            replay_direct(database, stormy_connection, scenario, senders=8, seed=index)
            same = "same" if outcome(database, stormy).grouping == sequential else "DIFFERENT"

            blind, blind_connection, _ = new_workspace(database, f"blind{index}")
            replay_direct(database, blind_connection, scenario)
            without = pairwise(outcome(database, blind).grouping, scenario.truth).f1
            print(
                f"{scenario.name:32s} {len(scenario.problems):8d} {len(scenario.deliveries):10d}"
                f" {score.precision:10.3f} {score.recall:6.3f} {score.f1:6.3f} {per_delivery:12.1f}"
                f"  {same:>10s}  {without:15.3f}"
            )


# -- cost -------------------------------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Estate:
    """The monitored environment: 334 applications of ten services on two hosts each (a chain of calls
    from the gateway to the database service). The same at every size, so that only the stored
    problems and the open incidents differ between the measurements."""

    CLUSTERS = 334
    SERVICES = 10
    HOSTS = 2

    def __init__(self, chance: random.Random) -> None:
        self.clusters = self.CLUSTERS
        self.chance = chance

    def service(self, cluster: int, index: int) -> str:
        return f"SERVICE-{cluster * self.SERVICES + index:016X}"

    def host(self, cluster: int, index: int) -> str:
        return f"HOST-{cluster * self.HOSTS + index:016X}"

    def documents(self) -> list[dict[str, Any]]:
        """Every service and host as ``GET /api/v2/entities/{id}`` lists it, with its relationships."""
        found = []
        for cluster in range(self.clusters):
            for index in range(self.SERVICES):
                outgoing = {"runsOnHost": [self.host(cluster, index % self.HOSTS)]}
                if index + 1 < self.SERVICES:
                    outgoing["calls"] = [self.service(cluster, index + 1)]
                found.append(
                    rca_scenarios.entity(
                        self.service(cluster, index), f"svc-{cluster}-{index}", outgoing=outgoing
                    )
                )
            found += [
                rca_scenarios.entity(self.host(cluster, index), f"host-{cluster}-{index}")
                for index in range(self.HOSTS)
            ]
        return found

    def trouble(self, cluster: int | None = None) -> tuple[int, list[str], str | None]:
        """Where a problem strikes: its application, one or two of its services, maybe a host as cause."""
        chance = self.chance
        cluster = chance.randrange(self.clusters) if cluster is None else cluster
        first = chance.randrange(self.SERVICES)
        impacted = [self.service(cluster, first)]
        if chance.random() < 0.3 and first + 1 < self.SERVICES:
            impacted.append(self.service(cluster, first + 1))
        root = self.host(cluster, chance.randrange(self.HOSTS)) if chance.random() < 0.4 else None
        return cluster, impacted, root


def _problem_row(
    chance: random.Random,
    n: int,
    *,
    workspace_id: str,
    connection_id: str,
    start: datetime,
    state: str,
    impacted: list[str],
    root: str | None,
) -> dict[str, Any]:
    title = TITLES[n % len(TITLES)]
    impacted_entities = [{"entityId": e, "name": e.lower(), "type": "SERVICE"} for e in impacted]
    tags = [
        {"context": "CONTEXTLESS", "key": "env", "value": "prod"},
        {"context": "KUBERNETES", "key": "namespace", "value": f"ns-{chance.randrange(12)}"},
    ]
    ended = state != "OPEN"
    return {
        "connection_id": connection_id,
        "workspace_id": workspace_id,
        "pid_key": f"-{n}",
        "pid": f"-{n}",
        "display_id": f"P-{n}",
        "title": title,
        "state": state,
        "severity": "PERFORMANCE",
        "impact": "SERVICES",
        "priority": "medium",
        "problem_url": f"https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-{n}",
        "impacted_entity": title,
        "impacted_entities": impacted_entities,
        "root_cause_entity_id": root,
        "root_cause_entity_name": root and root.lower(),
        "root_cause_entity_type": root and root.split("-")[0],
        "tags": tags,
        "tags_raw": "env:prod",
        "management_zones": [{"id": str(n % len(ZONES)), "name": ZONES[n % len(ZONES)]}],
        "start_time": start,
        "end_time": start + timedelta(minutes=20) if ended else None,
        "search_text": f"{title.lower()}\np-{n}",
        "first_received_at": start,
        "last_received_at": start + timedelta(minutes=20) if ended else start,
        "notification_count": 2 if ended else 1,
        "duplicate_count": 0,
        "lifecycle": {},
        "created_at": start,
        "updated_at": start,
    }


def seed_history(
    database: Database, workspace_id: str, connection_id: str, count: int, now: datetime
) -> list[int]:
    """Store ``count`` problems in incidents of one to five, the newest open (2%, at most 450) and in the
    candidate index, the rest resolved; returns the applications with open incidents."""
    chance = random.Random(count)
    estate = Estate(chance)
    opened = min(MAX_OPEN, max(3, int(count * OPEN_SHARE)))
    rows: list[dict[str, Any]] = []
    groups: list[tuple[int, int, bool]] = []  # first row, size, open
    open_clusters: set[int] = set()
    n = 0
    while n < count:
        is_open = n >= count - opened
        size = min(chance.choice((1, 2, 3, 3, 4, 5)), count - n)
        cluster = chance.randrange(estate.clusters)
        if is_open:
            open_clusters.add(cluster)
            start = now - timedelta(minutes=chance.uniform(1, 50))
        else:
            start = now - timedelta(hours=2) - timedelta(seconds=90 * (count - n))
        for k in range(size):
            _, impacted, root = estate.trouble(cluster)
            state = "OPEN" if is_open else ("MERGED" if k and chance.random() < 0.1 else "RESOLVED")
            rows.append(
                _problem_row(
                    chance,
                    n + k,
                    workspace_id=workspace_id,
                    connection_id=connection_id,
                    start=start + timedelta(seconds=30 * k),
                    state=state,
                    impacted=impacted,
                    root=root,
                )
            )
        groups.append((n, size, is_open))
        n += size
    with database.session(write=True) as session:
        ids: list[int] = []
        for offset in range(0, len(rows), 2000):
            chunk = rows[offset : offset + 2000]
            ids += list(
                session.scalars(sa.insert(Problem).returning(Problem.id, sort_by_parameter_order=True), chunk)
            )
        incidents = []
        for first, size, is_open in groups:
            lead = rows[first]
            incidents.append(
                {
                    "workspace_id": workspace_id,
                    "title": lead["title"],
                    "status": "open" if is_open else "resolved",
                    "priority": "medium",
                    "affected_entities": lead["impacted_entities"],
                    "started_at": lead["start_time"],
                    "resolved_at": None if is_open else lead["start_time"] + timedelta(minutes=25),
                    "problem_count": size,
                    "open_problem_count": size if is_open else 0,
                    "manual": False,
                    "search_text": lead["search_text"],
                    "created_at": lead["start_time"],
                    "updated_at": lead["start_time"],
                }
            )
        incident_ids: list[int] = []
        for offset in range(0, len(incidents), 2000):
            chunk = incidents[offset : offset + 2000]
            incident_ids += list(
                session.scalars(
                    sa.insert(Incident).returning(Incident.id, sort_by_parameter_order=True), chunk
                )
            )
        attachments, keys = [], []
        for (first, size, is_open), incident_id in zip(groups, incident_ids, strict=True):
            for k in range(first, first + size):
                row = rows[k]
                attachments.append(
                    {
                        "problem_id": ids[k],
                        "incident_id": incident_id,
                        "strategy": "new" if k == first else "root_cause",
                        "score": None if k == first else 0.9,
                        "reason": "seeded",
                        "related_problem_id": None if k == first else ids[first],
                        "attached_at": row["start_time"],
                        "problem_state": row["state"],
                    }
                )
                if is_open:
                    facts = facts_from(_Row(ids[k], row))
                    keys += [
                        {
                            "workspace_id": workspace_id,
                            "key": key,
                            "problem_id": ids[k],
                            "incident_id": incident_id,
                        }
                        for key in sorted(keys_for(facts))
                    ]
        for table, items in ((IncidentProblem, attachments), (IncidentKey, keys)):
            for offset in range(0, len(items), 5000):
                session.execute(sa.insert(table), items[offset : offset + 5000])
        counts: dict[str, int] = {}
        for row in rows:
            counts[row["state"]] = counts.get(row["state"], 0) + 1
        session.execute(
            sa.insert(ProblemCount),
            [
                {
                    "workspace_id": workspace_id,
                    "state": state,
                    "severity": "PERFORMANCE",
                    "impact": "SERVICES",
                    "count": total,
                }
                for state, total in counts.items()
            ],
        )
        store_entities(db_session=session, connection_id=connection_id, documents=estate.documents())
        session.commit()
    with database.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")
        connection.commit()
    return sorted(open_clusters)


class _Row:
    """A stored problem as ``facts_from`` reads it."""

    def __init__(self, problem_id: int, row: dict[str, Any]) -> None:
        self.id = problem_id
        self.pid = row["pid"]
        self.display_id = row["display_id"]
        self.title = row["title"]
        self.root_cause_entity_id = row["root_cause_entity_id"]
        self.impacted_entities = row["impacted_entities"]
        self.tags = row["tags"]
        self.management_zones = row["management_zones"]
        self.start_time = row["start_time"]
        self.first_received_at = row["first_received_at"]


def arrivals(
    count: int,
    open_clusters: list[int],
    estate: Estate,
    now: datetime,
    *,
    first: int,
    pending: deque[dict[str, Any]],
) -> list[tuple[str, bytes]]:
    """A steady stream: ``count`` new problems, half in applications with open incidents (they join),
    half anywhere (most open an incident); each resolves 20 new problems later (``pending`` carries the
    ones still open from one call to the next)."""
    chance = random.Random(first)
    stream: list[tuple[str, bytes]] = []
    for k in range(count):
        n = first + k
        _, impacted, root = estate.trouble(chance.choice(open_clusters) if k % 2 == 0 else None)
        start = now - timedelta(minutes=chance.uniform(0, 5))
        document = rca_scenarios.problem(
            f"-{n}_{_ms(start)}V2",
            f"P-{n}",
            TITLES[n % len(TITLES)],
            start,
            impacted=[(entity_id, entity_id.lower()) for entity_id in impacted],
            root=(root, root.lower()) if root else None,
        )
        document["entityTags"] = [
            {"context": "CONTEXTLESS", "key": "env", "value": "prod", "stringRepresentation": "env:prod"}
        ]
        document["managementZones"] = [{"id": str(n % len(ZONES)), "name": ZONES[n % len(ZONES)]}]
        stream.append(("open", json.dumps(webhook_body(document, "OPEN")).encode()))
        pending.append(document)
        if len(pending) > 20:
            done = pending.popleft()
            end = datetime.fromtimestamp(done["startTime"] / 1000, now.tzinfo) + timedelta(minutes=10)
            stream.append(("resolved", json.dumps(webhook_body(done, "RESOLVED", observed=end)).encode()))
    return stream


def _p95(values: list[float]) -> float:
    return sorted(values)[int(0.95 * (len(values) - 1))]


class CostRun:
    """One database with ``size`` stored problems, fed new problems round by round."""

    def __init__(self, database: Database, kind: str, size: int) -> None:
        self.size = size
        self.workspace_id, connection_id, self.secret = new_workspace(database, "bench")
        self.now = utcnow().replace(microsecond=0)
        began = time.perf_counter()
        self.open_clusters = seed_history(database, self.workspace_id, connection_id, size, self.now)
        self.seeded = time.perf_counter() - began
        if kind == "sqlite":  # start from a checkpointed log, as a server that has been running would
            with database.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.database = database
        self.estate = Estate(random.Random(size))
        self.next_pid = 10**8
        self.pending: deque[dict[str, Any]] = deque()
        self.open_before = self.open_incidents()
        self.alone: list[float] = []
        self.opening: list[float] = []
        self.batched: list[float] = []  # seconds per notification, one value per round
        for _, job in self._jobs(16):
            ingest_bench.as_the_writer(self.database, [job])

    def open_incidents(self) -> int:
        with self.database.session() as session:
            statement = sa.select(sa.func.count()).select_from(Incident).where(Incident.status == "open")
            return int(session.scalar(statement) or 0)

    def _jobs(self, count: int) -> list[tuple[str, delivery.Job]]:
        first, self.next_pid = self.next_pid, self.next_pid + count
        return [
            (
                what,
                delivery.job(
                    workspace_id=self.workspace_id, token=self.secret, body=body, received_at=utcnow()
                ),
            )
            for what, body in arrivals(
                count, self.open_clusters, self.estate, self.now, first=first, pending=self.pending
            )
        ]

    def round(self, *, singles: int, batched: int) -> None:
        """Time ``singles`` new problems one notification per transaction, then ``batched`` in 64s."""
        for what, job in self._jobs(singles):
            started = time.perf_counter()
            ingest_bench.as_the_writer(self.database, [job])
            self.alone.append(time.perf_counter() - started)
            if what == "open":
                self.opening.append(self.alone[-1])
        jobs = [job for _, job in self._jobs(batched)]
        started = time.perf_counter()
        for offset in range(0, len(jobs), 64):
            ingest_bench.as_the_writer(self.database, jobs[offset : offset + 64])
        self.batched.append((time.perf_counter() - started) / len(jobs))

    def report(self) -> None:
        us = 1e6
        print(
            f"  {self.size:>7d} problems, {self.open_before} open incidents ({self.open_incidents()} after),"
            f" seeded in {self.seeded:.0f} s"
        )
        print(
            f"    one per transaction: p50 {statistics.median(self.alone) * us:.0f} us per notification"
            f" (mean {statistics.mean(self.alone) * us:.0f}, p95 {_p95(self.alone) * us:.0f});"
            f" new problems p50 {statistics.median(self.opening) * us:.0f} us;"
            f" in batches of 64: {statistics.median(self.batched) * us:.0f} us per notification"
        )


def ingest_cost(kind: str, sizes: list[int], *, rounds: int, singles: int, batched: int) -> None:
    """Seed one database per size, then measure round by round, alternating sizes, so that a busy
    machine slows every size alike."""
    print(f"Ingest cost with correlation ({kind}), new problems arriving at stored problems:")
    with ExitStack() as stack:
        runs = [CostRun(stack.enter_context(database_of(kind)), kind, size) for size in sizes]
        for _ in range(rounds):
            for run in runs:
                run.round(singles=singles, batched=batched)
        for run in runs:
            run.report()
        if len(runs) > 1:
            small, large = runs[0], runs[-1]
            alone = statistics.median(large.alone) / statistics.median(small.alone)
            grouped = statistics.median(large.batched) / statistics.median(small.batched)
            print(
                f"  ratio {large.size} / {small.size}: {alone:.2f} one per transaction,"
                f" {grouped:.2f} in batches (flat is ~1)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1000,100000", help="stored problems to measure at, comma-separated"
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=4, help="measuring rounds, alternating the sizes")
    parser.add_argument("--singles", type=int, default=40, help="new problems per round, one per transaction")
    parser.add_argument("--batched", type=int, default=128, help="new problems per round, in batches of 64")
    parser.add_argument("--skip-corpus", action="store_true")
    args = parser.parse_args()
    if not args.skip_corpus:
        replay_corpus(args.database)
        print()
    sizes = [int(item) for item in args.sizes.split(",") if item]
    ingest_cost(args.database, sizes, rounds=args.rounds, singles=args.singles, batched=args.batched)


if __name__ == "__main__":
    main()
