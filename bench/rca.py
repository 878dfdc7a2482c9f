"""Root-cause analysis quality and cost on generated incidents with a known cause.

Each seed gives one case of the generator in ``borealis.simulation`` (a layered service graph of 20-100
services on shared hosts, three hours of one-minute metrics, events, and the problem Dynatrace opened on
the customer-facing service). The case is loaded into the fake Dynatrace on loopback, and the RCA runs as
the RCA job runs it (``borealis.rca.service.analyse``): the real ``DynatraceClient`` with a token of all
scopes, ``investigate`` with the budget the settings give, then ``analyze``. The enrichment cache is empty
(as for a connection whose entities were never cached) and no model writes a narrative.

Scores, per fault type, per traffic profile, per depth of the fault, with and without Davis naming the
cause, for the largest cases (80 services or more) and in total:

- top-1 / top-3: the true cause is the first / among the first three candidates (the cause itself or, for
  a service, one of its process groups or process instances; for host saturation, the host);
- inconclusive: the verdict is INCONCLUSIVE;
- wrong confident: the verdict is CONFIRMED or LIKELY and the root cause is not the truth;
- symptom blamed: the first candidate is the symptom (the customer-facing service) while the cause lies
  elsewhere (and how often the report's root cause is the symptom then); symptom named: the first
  candidate is the symptom when it is the cause;
- Dynatrace API calls (as the fake recorded them) and wall-clock seconds per RCA.

Reporting only: nothing here passes or fails. Seeds 0-299 are for tuning the analyzer, seeds 1000 and up
for reporting; a figure from seeds used to tune it would flatter it.

    .venv/bin/python bench/rca.py --seeds 1000-1299 [--fault latency] [--traffic low] [--cause-problem]
        [--json out.json]

``--cause-problem``: Dynatrace opened a second problem on the cause itself (when it is not the symptom),
so the incident holds two problems, as it often does when a dependency fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from borealis.config import Settings
from borealis.dynatrace.client import DynatraceClient
from borealis.rca.analyzer import analyze
from borealis.rca.gather import investigate
from borealis.rca.plan import ProblemFacts
from borealis.rca.report import Report
from borealis.rca.service import budget_of
from borealis.simulation import (
    ALL_SCOPES,
    FAULTS,
    TRAFFIC,
    Case,
    FakeDynatrace,
    generate,
    load,
    problem_on_cause,
    running_fake_dynatrace,
)

CONFIDENT = ("CONFIRMED", "LIKELY")
LARGE = 80


@dataclass
class Outcome:
    """One case's truth and what the RCA said of it."""

    seed: int
    fault: str
    traffic: str
    depth: int
    services: int
    davis: bool
    traps: list[str]
    truth: str
    symptom: str
    # The ids that count as the truth: the cause and, for a service, its process groups and instances.
    accepted: list[str]
    verdict: str | None = None
    root_cause: str | None = None
    candidates: list[str] | None = None
    top1: bool = False
    top3: bool = False
    calls: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def cause_is_symptom(self) -> bool:
        return self.truth == self.symptom


def parse_seeds(text: str) -> list[int]:
    """``1000-1299``, ``5``, or a comma-separated mix of both."""
    seeds: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        seeds.extend(range(int(first), int(last) + 1) if dash else [int(first)])
    return seeds


def facts_of(case: Case, environment_url: str) -> ProblemFacts:
    """The problem as the RCA job reads its stored record (``rca.inputs.facts_of``): the webhook's fields
    and its ProblemDetailsJSONv2."""
    problem = json.loads(json.dumps(case.problem))
    return ProblemFacts.from_problem(
        problem, url=f"{environment_url}/#problems/problemdetails;pid={problem['problemId']}"
    )


def run_rca(
    fake: FakeDynatrace, case: Case, settings: Settings, *, cause_problem: bool = False
) -> tuple[Report, int, float]:
    """One RCA as ``rca.service.analyse`` runs it; returns the report, the API calls and the seconds.
    ``cause_problem``: Dynatrace opened a problem on the cause as well (``problem_on_cause``)."""
    token = fake.add_token(list(ALL_SCOPES))
    client = DynatraceClient(
        fake.environment_url, token, allow_private=True, timeout=settings.dynatrace_timeout
    )
    budget = budget_of(settings)
    facts = [facts_of(case, fake.environment_url)]
    second = problem_on_cause(case) if cause_problem else None
    if second is not None:
        facts.append(ProblemFacts.from_problem(second, url=f"{fake.environment_url}/#problems"))
    before = len(fake.requests)
    started = time.perf_counter()
    with client:
        investigation = investigate(client, facts, now=case.now, scopes=list(ALL_SCOPES), budget=budget)
        book = investigation.book
        report = analyze(book.items, book.not_checked, lookback=budget.lookback)
    seconds = time.perf_counter() - started
    return report, len(fake.requests) - before, seconds


def score(case: Case, report: Report, outcome: Outcome) -> None:
    candidates = [candidate.entity.id for candidate in report.candidates]
    cause = report.root_cause.entity
    outcome.verdict = str(getattr(report.verdict, "value", report.verdict))
    outcome.root_cause = cause.id if cause is not None else None
    outcome.candidates = candidates[:5]
    outcome.top1 = bool(candidates) and candidates[0] in case.accepted
    outcome.top3 = any(candidate in case.accepted for candidate in candidates[:3])


def evaluate(
    seeds: list[int], fault: str | None, traffic: str | None, progress: bool, cause_problem: bool = False
) -> list[Outcome]:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    outcomes: list[Outcome] = []
    with running_fake_dynatrace() as fake:
        for number, seed in enumerate(seeds, start=1):
            case = generate(seed, fault=fault, traffic=traffic)
            outcome = Outcome(
                seed=seed,
                fault=case.fault,
                traffic=case.traffic,
                depth=case.depth,
                services=case.services,
                davis=case.davis_names_cause,
                traps=sorted(case.traps),
                truth=case.truth,
                symptom=case.symptom,
                accepted=sorted(case.accepted),
            )
            fake.reset()
            load(case, fake)
            try:
                report, outcome.calls, outcome.seconds = run_rca(
                    fake, case, settings, cause_problem=cause_problem
                )
                score(case, report, outcome)
            except Exception as exc:  # a crash is a result too: counted, shown, and the run goes on
                outcome.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc(limit=3, file=sys.stderr)
            outcomes.append(outcome)
            if progress and number % 25 == 0:
                print(f"  ... {number}/{len(seeds)} cases", file=sys.stderr, flush=True)
    return outcomes


# ---- the tables ----------------------------------------------------------------------------------------


def _share(hits: int, total: int) -> str:
    return f"{100 * hits / total:5.1f}%" if total else "    - "


def summarize(outcomes: list[Outcome]) -> dict[str, Any]:
    """The scores of a group of cases (errors count as misses)."""
    done = [o for o in outcomes if o.error is None]
    elsewhere = [o for o in done if not o.cause_is_symptom]
    at_symptom = [o for o in done if o.cause_is_symptom]
    calls = [o.calls for o in done] or [0]
    seconds = [o.seconds for o in done] or [0.0]
    return {
        "cases": len(outcomes),
        "errors": len(outcomes) - len(done),
        "top1": sum(o.top1 for o in done),
        "top3": sum(o.top3 for o in done),
        "inconclusive": sum(o.verdict == "INCONCLUSIVE" for o in done),
        "wrongConfident": sum(o.verdict in CONFIDENT and o.root_cause not in o.accepted for o in done),
        "causeElsewhere": len(elsewhere),
        "symptomBlamed": sum(bool(o.candidates) and o.candidates[0] == o.symptom for o in elsewhere),
        "rootIsSymptom": sum(o.root_cause == o.symptom for o in elsewhere),
        "causeAtSymptom": len(at_symptom),
        "symptomNamed": sum(bool(o.candidates) and o.candidates[0] == o.symptom for o in at_symptom),
        "callsMean": statistics.mean(calls),
        "callsMax": max(calls),
        "secondsMean": statistics.mean(seconds),
        "secondsMax": max(seconds),
    }


HEADER = (
    f"{'group':24s} {'cases':>5s} {'top-1':>6s} {'top-3':>6s} {'inconc':>6s} {'wrong!':>6s}"
    f" {'blamed':>6s} {'root=S':>6s} {'named':>6s} {'calls':>11s} {'seconds':>13s} {'err':>3s}"
)


def row(label: str, outcomes: list[Outcome]) -> str:
    s = summarize(outcomes)
    done = s["cases"] - s["errors"]
    return (
        f"{label:24s} {s['cases']:5d} {_share(s['top1'], done)} {_share(s['top3'], done)}"
        f" {_share(s['inconclusive'], done)} {_share(s['wrongConfident'], done)}"
        f" {_share(s['symptomBlamed'], s['causeElsewhere'])} {_share(s['rootIsSymptom'], s['causeElsewhere'])}"
        f" {_share(s['symptomNamed'], s['causeAtSymptom'])}"
        f" {s['callsMean']:5.1f}/{s['callsMax']:<5d} {s['secondsMean']:6.2f}/{s['secondsMax']:<6.2f}"
        f" {s['errors']:3d}"
    )


def groups(outcomes: list[Outcome]) -> Iterator[tuple[str, list[tuple[str, list[Outcome]]]]]:
    def by(key: Callable[[Outcome], Any], values: list[Any], label: Callable[[Any], str]) -> list:
        return [(label(value), [o for o in outcomes if key(o) == value]) for value in values]

    depths = sorted({min(o.depth, 4) for o in outcomes})
    yield "by fault", by(lambda o: o.fault, list(FAULTS), str)
    yield "by traffic", by(lambda o: o.traffic, list(TRAFFIC), str)
    yield (
        "by depth of the cause",
        by(lambda o: min(o.depth, 4), depths, lambda d: f"depth {d}{'+' if d == 4 else ''}"),
    )
    yield (
        "by Davis",
        by(lambda o: o.davis, [True, False], lambda d: "Davis names the cause" if d else "Davis names none"),
    )
    yield "by size", [(f">= {LARGE} services", [o for o in outcomes if o.services >= LARGE])]


def print_report(outcomes: list[Outcome]) -> None:
    print(
        "top-1/top-3: truth first / in the first three candidates; inconc: INCONCLUSIVE; wrong!: CONFIRMED or"
        " LIKELY on another entity;\nblamed: first candidate is the symptom while the cause is elsewhere"
        " (root=S: the root cause is the symptom then);\nnamed: first candidate is the symptom when it is the"
        " cause; calls and seconds: mean/max per RCA"
    )
    for title, rows in groups(outcomes):
        print(f"\n{title}")
        print(HEADER)
        for label, members in rows:
            if members:
                print(row(label, members))
    print()
    print(HEADER)
    print(row("total", outcomes))
    errors = [o for o in outcomes if o.error]
    if errors:
        print(f"\n{len(errors)} case(s) raised; first: seed {errors[0].seed}: {errors[0].error}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="1000-1299", help="e.g. 1000-1299 (reporting) or 0-299 (tuning)")
    parser.add_argument("--fault", choices=FAULTS, help="pin the fault of every case")
    parser.add_argument("--traffic", choices=TRAFFIC, help="pin the traffic profile of every case")
    parser.add_argument(
        "--cause-problem",
        action="store_true",
        help="Dynatrace opens a problem on the cause too (an incident of two problems)",
    )
    parser.add_argument("--json", type=Path, help="write every case's outcome and the totals here")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    began = time.perf_counter()
    outcomes = evaluate(
        seeds, args.fault, args.traffic, progress=not args.quiet, cause_problem=args.cause_problem
    )
    print(
        f"RCA on {len(seeds)} generated cases (seeds {args.seeds}) in {time.perf_counter() - began:.0f} s;"
        f" {budget_of(Settings(_env_file=None))}\n"  # type: ignore[call-arg]
    )
    print_report(outcomes)
    if args.json:
        document = {
            "seeds": args.seeds,
            "fault": args.fault,
            "traffic": args.traffic,
            "total": summarize(outcomes),
            "groups": {
                title: {label: summarize(members) for label, members in rows if members}
                for title, rows in groups(outcomes)
            },
            "cases": [asdict(outcome) for outcome in outcomes],
        }
        args.json.write_text(json.dumps(document, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
