"""One tenant's placement against its intake: does one worker place a tenant's new problems into incidents
as fast as one replica's writer stores them?

Placing problems into incidents is serialized per user (the correlation lock; see docs/operations.md), so
a single very large tenant's storm is placed by one worker at a time, whatever the number of workers. For
one user on each database this measures:

- intake, the baseline: new problems stored through the webhook's own transaction (``delivery.process``,
  secret checked, in batches of 16 as the writer commits them), per second;
- placement: the same problems' follow-ups carried out by one runner (``follow_ups.follow_up_all``, as the
  follow-up job runs it), per second;

and the ratio placement / intake. Above 1, one worker keeps up with one replica's writer for one tenant;
below, a storm of new problems from one tenant leaves placement behind until the storm ends. The problems
come in groups of ten related ones (the scale-out storm's), and the run checks that every group became
exactly one incident.

    .venv/bin/python bench/placement.py [--problems 2000] [--only sqlite] [--only postgresql]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from borealis import assembly, jsontext
from borealis.db import Database, utcnow
from borealis.ingest import delivery
from borealis.jobs import follow_ups
from scaleout import GROUP, postgres_database, prepare, problem_body

BATCH = 16
DYNATRACE = "https://abc12345.live.dynatrace.com"
TOKEN = "dt0c01.ABCDEFGHIJKLMNOPQRSTUVWX." + "A" * 64


def measure(url: str, problems: int, seed: int) -> dict[str, float]:
    [tenant] = prepare(url, 1, DYNATRACE, TOKEN)
    bodies = [
        jsontext.dumps(problem_body(0, number, state="OPEN", observed=0)).encode()
        for number in range(problems)
    ]
    random.Random(seed).shuffle(bodies)
    database = Database(url)
    try:
        started = time.perf_counter()
        for start in range(0, problems, BATCH):
            jobs = [
                delivery.job(
                    workspace_id=tenant.workspace_id, token=tenant.secret, body=body, received_at=utcnow()
                )
                for body in bodies[start : start + BATCH]
            ]
            with database.session(write=True) as session:
                answers = delivery.process(session, jobs)
                session.commit()
            if any(answer.status != 200 for answer in answers):
                raise SystemExit(f"a delivery was refused: {answers}")
        intake = time.perf_counter() - started

        started = time.perf_counter()
        placed = follow_ups.follow_up_all(database=database, workspace_ids=[tenant.workspace_id])
        placement = time.perf_counter() - started

        with database.session() as session:
            incidents = session.scalar(sa.text("SELECT count(*) FROM incidents"))
            placed_once = session.scalar(
                sa.text("SELECT count(DISTINCT problem_id) = count(*) FROM incident_problems")
            )
    finally:
        database.dispose()
    expected = -(-problems // GROUP)
    if placed != problems or incidents != expected or not placed_once:
        raise SystemExit(f"placed {placed} of {problems}, {incidents} incidents (expected {expected})")
    return {"intake": problems / intake, "placement": problems / placement}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--problems", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("sqlite", "postgresql"), action="append")
    args = parser.parse_args()
    assembly.install()
    print(f"one tenant's placement: {args.problems} new problems in groups of {GROUP}, one runner")
    for name in args.only or ("sqlite", "postgresql"):
        if name == "sqlite":
            with tempfile.TemporaryDirectory(prefix="borealis-placement-") as tmp:
                result = measure(f"sqlite:///{tmp}/borealis.db", args.problems, args.seed)
        else:
            with postgres_database() as url:
                result = measure(url, args.problems, args.seed)
        print(
            f"{name:<11} intake {result['intake']:7.0f} problems/s   placement {result['placement']:7.0f}"
            f" problems/s   ratio placement/intake {result['placement'] / result['intake']:.2f}"
        )


if __name__ == "__main__":
    main()
