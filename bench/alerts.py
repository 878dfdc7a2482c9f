"""GET /dynatrace/alerts over a million problems, and the cost of one ingest at 1k and at 1M problems.

Seeds problems straight into an embedded SQLite database (the default of ``make run``): 1,000,000 for
the measured user and 50,000 for others. Then, against the server started as ``make run`` does, prints
p50/p95 of the list with no filter, each filter alone, two filters together, ``q`` searches (a common
word, one problem, two words, and a word every problem has: the one case whose exact total costs a count
of a million index entries), deep offsets (900,000 and the middle of the list, the worst case) and the
keyset ``cursor``. Target: p95 < 20 ms except deep offsets. Finally measures ingest cost per
notification (the writer's transaction, in process) with 1k and with 1M stored problems: it should stay
flat. The seeded problems get their search terms (``problem_terms``) as the lifecycle would write them.

    .venv/bin/python bench/alerts.py [--problems 1000000] [--requests 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from borealis.audit.models import Actor
from borealis.auth import service as auth_service
from borealis.db import Database, utcnow
from borealis.problems import search
from borealis.workspaces import service as workspaces_service

sys.path.insert(0, str(Path(__file__).parent))
import ingest as ingest_bench

BENCH_ACTOR = Actor(user_id=None, email="bench", via="bench")

STATES = ("OPEN", "RESOLVED", "MERGED")
SEVERITIES = ("AVAILABILITY", "ERROR", "PERFORMANCE", "RESOURCE_CONTENTION", "CUSTOM_ALERT")
IMPACTS = ("APPLICATION", "SERVICE", "INFRASTRUCTURE", "ENVIRONMENT")


# The terms of a seeded problem's search_text (search.terms), one row per kind of word in it.
SEEDED_TERMS = (
    "'response'",
    "'time'",
    "'degradation'",
    "'on'",
    "'service'",
    "CAST(p.n % 997 AS TEXT)",
    "'p-' || p.n",
    "CAST(p.n AS TEXT)",
    "'svc-' || (p.n % 997)",
    "'service-' || lower(printf('%016X', p.n % 997))",
    "lower(printf('%016X', p.n % 997))",
)


def seed(url: str, workspace_id: str, connection_id: str, count: int, start: int = 0) -> None:
    """Insert ``count`` problems in SQL (a recursive series), newest activity one second apart."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        seeded_after = connection.exec_driver_sql("SELECT coalesce(max(id), 0) FROM problems").scalar()
        connection.exec_driver_sql(
            f"""
            WITH RECURSIVE series(n) AS (SELECT {start} UNION ALL SELECT n + 1 FROM series WHERE n < {start + count - 1})
            INSERT INTO problems (
                connection_id, workspace_id, pid_key, pid, display_id, title, state, severity, impact, priority,
                problem_url, impacted_entity, impacted_entities, tags, management_zones, search_text,
                first_received_at, last_received_at, notification_count, duplicate_count, lifecycle,
                created_at, updated_at, start_time
            )
            SELECT
                ?, ?, '-' || n, '-' || n, 'P-' || n,
                'Response time degradation on service ' || (n % 997),
                CASE WHEN n % 10 = 0 THEN 'OPEN' WHEN n % 10 = 1 THEN 'MERGED' ELSE 'RESOLVED' END,
                CASE n % 5 WHEN 0 THEN 'AVAILABILITY' WHEN 1 THEN 'ERROR' WHEN 2 THEN 'PERFORMANCE'
                    WHEN 3 THEN 'RESOURCE_CONTENTION' ELSE 'CUSTOM_ALERT' END,
                CASE n % 4 WHEN 0 THEN 'APPLICATION' WHEN 1 THEN 'SERVICE' WHEN 2 THEN 'INFRASTRUCTURE'
                    ELSE 'ENVIRONMENT' END,
                'medium',
                'https://abc12345.live.dynatrace.com/#problems/problemdetails;pid=-' || n,
                'Response time degradation on Web service svc-' || (n % 997),
                '[{{"entityId": "SERVICE-' || printf('%016X', n % 997) || '", "name": "svc-' || (n % 997)
                    || '", "type": "SERVICE"}}]',
                '[{{"context": "CONTEXTLESS", "key": "env", "value": "prod"}}]',
                '[]',
                'response time degradation on service ' || (n % 997) || char(10) || 'p-' || n || char(10)
                    || 'svc-' || (n % 997) || char(10) || 'service-' || lower(printf('%016X', n % 997)),
                datetime('2024-01-01', '+' || n || ' seconds'),
                datetime('2024-01-01', '+' || n || ' seconds'),
                1, 0, '{{}}',
                datetime('2024-01-01', '+' || n || ' seconds'),
                datetime('2024-01-01', '+' || n || ' seconds'),
                datetime('2024-01-01', '+' || n || ' seconds')
            FROM series
            """,
            (connection_id, workspace_id),
        )
        kinds = " UNION ALL ".join(f"SELECT {k} AS k" for k in range(len(SEEDED_TERMS)))
        term = " ".join(f"WHEN {k} THEN {sql}" for k, sql in enumerate(SEEDED_TERMS))
        connection.exec_driver_sql(
            "INSERT INTO search_workspaces (workspace_id) VALUES (?) ON CONFLICT DO NOTHING", (workspace_id,)
        )
        number = connection.exec_driver_sql(
            "SELECT number FROM search_workspaces WHERE workspace_id = ?", (workspace_id,)
        ).scalar()
        connection.exec_driver_sql(
            f"""
            INSERT INTO problem_terms (problem_id, term, workspace_number)
            SELECT p.id, CASE kinds.k {term} END, ?
            FROM ({kinds}) AS kinds
            CROSS JOIN (
                SELECT id, CAST(substr(pid_key, 2) AS INTEGER) AS n FROM problems WHERE id > ?
            ) AS p
            WHERE 1 ON CONFLICT DO NOTHING
            """,
            (number, seeded_after),
        )
        for problem_id, text in connection.exec_driver_sql(
            "SELECT id, search_text FROM problems WHERE id > ? ORDER BY random() LIMIT 5", (seeded_after,)
        ).all():
            stored = connection.exec_driver_sql(
                "SELECT term FROM problem_terms WHERE problem_id = ?", (problem_id,)
            )
            if {row[0] for row in stored} != set(search.terms(text)):
                raise SystemExit(
                    f"seeded terms of problem {problem_id} differ from search.terms: fix SEEDED_TERMS"
                )
        connection.exec_driver_sql(
            """
            INSERT INTO problem_counts (workspace_id, state, severity, impact, count)
            SELECT workspace_id, state, coalesce(severity, ''), coalesce(impact, ''), count(*) FROM problems
            WHERE workspace_id = ? GROUP BY workspace_id, state, severity, impact
            ON CONFLICT (workspace_id, state, severity, impact) DO UPDATE SET count = excluded.count
            """,
            (workspace_id,),
        )
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()


def connection_of(url: str, workspace_id: str) -> str:
    database = Database(url)
    with database.session() as session:
        value = session.scalar(
            sa.text("SELECT id FROM connections WHERE workspace_id = :u"), {"u": workspace_id}
        )
    database.dispose()
    return value


def other_workspace(url: str, index: int) -> tuple[str, str]:
    database = Database(url)
    with database.session(write=True) as session:
        _, workspace = workspaces_service.create_user(db_session=session, email=f"other{index}@example.com")
        session.commit()
        workspace_id = workspace.id
    with database.session(write=True) as session:
        session.execute(
            sa.text(
                "INSERT INTO connections (id, workspace_id, environment_url, token_scopes, webhook_secret_ciphertext, "
                "webhook_secret_hash, created_at, updated_at) VALUES (:id, :u, 'https://x.live.dynatrace.com', "
                "'[]', 'x', :h, :t, :t)"
            ),
            {
                "id": f"conn-{index}",
                "u": workspace_id,
                "h": f"{index:064d}",
                "t": utcnow().replace(tzinfo=None),
            },
        )
        session.commit()
    database.dispose()
    return workspace_id, f"conn-{index}"


def api_key(url: str, workspace_id: str) -> str:
    """A key of the workspace's owner, acting there."""
    database = Database(url)
    with database.session(write=True) as session:
        [(_, user)] = workspaces_service.members(db_session=session, workspace_id=workspace_id)
        _, key = auth_service.create_api_key(
            db_session=session, user=user, workspace_id=workspace_id, actor=BENCH_ACTOR
        )
        session.commit()
    database.dispose()
    return key


def ingest_cost(url: str, workspace_id: str, secret: str, start: int, count: int = 2048) -> float:
    """Microseconds per notification: the webhook writer's transaction (batches of 64, distinct PIDs),
    then the follow-ups (correlation) it queued, as the writer carries them out."""
    from borealis.ingest import delivery

    database = Database(url)
    bodies = [ingest_bench.body(start + i, 10**9) for i in range(count)]
    jobs = [
        delivery.job(workspace_id=workspace_id, token=secret, body=b, received_at=utcnow()) for b in bodies
    ]

    def ingest(batch: list[delivery.Job]) -> None:
        ingest_bench.as_the_writer(database, batch)

    ingest(jobs[:64])
    began = time.perf_counter()
    for offset in range(64, count, 64):
        ingest(jobs[offset : offset + 64])
    elapsed = time.perf_counter() - began
    database.dispose()
    return elapsed / (count - 64) * 1e6


def measure(http: httpx.Client, path: str, requests: int) -> tuple[float, float, int]:
    http.get(path)
    timings = []
    status = 0
    for _ in range(requests):
        began = time.perf_counter()
        response = http.get(path)
        timings.append(time.perf_counter() - began)
        status = response.status_code
    timings.sort()
    return statistics.median(timings) * 1000, timings[int(0.95 * (len(timings) - 1))] * 1000, status


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=1_000_000)
    parser.add_argument("--others", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="borealis-bench-") as tmp:
        data_dir = Path(tmp)
        url, workspace_id, secret = ingest_bench.prepare(data_dir)
        connection_id = connection_of(url, workspace_id)

        small = ingest_cost(url, workspace_id, secret, start=10**8)
        began = time.perf_counter()
        seed(url, workspace_id, connection_id, args.problems)
        for index in range(2):
            other_id, other_connection = other_workspace(url, index)
            seed(url, other_id, other_connection, args.others // 2, start=args.problems + index * args.others)
        print(
            f"seeded {args.problems} problems (+{args.others} for others) in {time.perf_counter() - began:.0f} s"
        )
        large = ingest_cost(url, workspace_id, secret, start=2 * 10**8)

        key = api_key(url, workspace_id)
        port = ingest_bench.free_port()
        server = ingest_bench.start_server(data_dir, port, [])
        deep, middle = args.problems * 9 // 10, args.problems // 2
        queries = [
            ("no filter", ""),
            ("state=OPEN", "state=OPEN"),
            ("state=RESOLVED", "state=RESOLVED"),
            ("severity=ERROR", "severity=ERROR"),
            ("impact=SERVICE", "impact=SERVICE"),
            ("since (last hour)", "since=2024-01-12T13:00:00Z"),
            ("until", "until=2024-01-02T00:00:00Z"),
            ("state+severity", "state=RESOLVED&severity=ERROR"),
            ("q (common)", "q=svc-42"),
            ("q (one problem)", f"q=p-{args.problems - 7}%0A"),
            ("q (two words)", "q=svc-42+response"),
            ("q (every problem)", "q=response"),
            (f"offset={deep}", f"offset={deep}"),
            (f"offset={middle} (middle)", f"offset={middle}"),
        ]
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}, timeout=120
            ) as http:
                print(f"GET /dynatrace/alerts over {args.problems} problems, {args.requests} requests each")
                for name, query in queries:
                    p50, p95, status = measure(http, f"/dynatrace/alerts?{query}", args.requests)
                    flag = "" if p95 < 20 or "offset" in name else "  (over 20 ms)"
                    print(f"  {name:26s} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   [{status}]{flag}")
                page = http.get("/dynatrace/alerts?limit=50").json()
                cursor = page["nextCursor"]
                for _ in range(5):
                    cursor = http.get(f"/dynatrace/alerts?cursor={cursor}").json()["nextCursor"]
                p50, p95, status = measure(http, f"/dynatrace/alerts?cursor={cursor}", args.requests)
                print(f"  {'cursor (next page)':26s} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   [{status}]")
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(
            f"ingest cost per notification: {small:.0f} us at 1k problems, {large:.0f} us at {args.problems}"
        )
        print(f"ratio {large / small:.2f} (flat is ~1)")


if __name__ == "__main__":
    main()
