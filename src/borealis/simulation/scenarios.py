"""The demo's incidents: generated cases moved to now, and the webhook notifications Dynatrace sends.

Three scenarios, each a generated case whose analysis names the injected cause (``tests/test_demo.py``
holds them to it):

- a cascade: a service two calls below the customer-facing one slows down, and only the customer-facing
  service has a problem;
- a deployment gone wrong: a new version of a service three calls down slows everything above it;
- a storm: a shared database fails, and Dynatrace opens a problem on every service above it that shows
  it, each then updated as its impact spreads (20-50 notifications within seconds). The database itself
  gets no problem of its own: with one, the analysis stays inconclusive (it takes an impacted entity for
  a symptom), which is for the analyzer to learn, not for the demo to show.
"""

from __future__ import annotations

import copy
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from borealis.simulation import documents
from borealis.simulation.cases import Case, generate, shifted
from borealis.simulation.series import FAILURE_RATE, RESPONSE_TIME, mean

# Seeds and knobs checked against the analyzer (``tests/test_demo.py``); a small estate reads well on
# a screen. Davis names no cause in any of them: the analysis has to find it.
CASCADE = {"seed": 13, "fault": "latency", "traffic": "high", "traps": (), "services": 30}
DEPLOYMENT = {"seed": 5, "fault": "bad_deployment", "traffic": "diurnal", "traps": (), "services": 25}
STORM = {"seed": 2, "fault": "errors", "traffic": "high", "traps": (), "services": 60}
STORM_MAX_PROBLEMS = 20


@dataclass
class Scenario:
    """One incident of the demo: the case Dynatrace holds and the problems it opens for it."""

    name: str
    summary: str
    case: Case
    problems: list[dict[str, Any]] = field(default_factory=list)
    # The problems as Dynatrace updates them after the openings (their impact spread further).
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def notifications(self) -> int:
        return len(self.problems) + len(self.updates)


def scenarios(now: datetime) -> list[Scenario]:
    """The demo's three scenarios, happening at ``now``."""
    return [cascade(now), deployment(now), storm(now)]


def cascade(now: datetime) -> Scenario:
    case = shifted(generate(**CASCADE), now)  # type: ignore[arg-type]
    return Scenario(
        "cascade",
        f"{_name(case, case.truth)} slows down {case.depth} calls below {_name(case, case.symptom)}",
        case,
        [case.problem],
    )


def deployment(now: datetime) -> Scenario:
    case = shifted(generate(**DEPLOYMENT), now)  # type: ignore[arg-type]
    return Scenario(
        "deployment",
        f"a new version of {_name(case, case.truth)} breaks {_name(case, case.symptom)}",
        case,
        [case.problem],
    )


def storm(now: datetime) -> Scenario:
    """A problem on each service between the failing one and the customer-facing one that shows the
    failure (at most ``STORM_MAX_PROBLEMS``), each impacting its service and the caller on the way up;
    then an update of each as the impact reaches one more caller."""
    case = shifted(generate(**STORM), now)  # type: ignore[arg-type]
    chain = _callers_up(case, case.truth)
    showing = [sid for sid in chain if sid not in (case.symptom, case.truth) and _shows(case, sid)]
    problems = [case.problem]
    for number, sid in enumerate(showing[: STORM_MAX_PROBLEMS - 1], start=1):
        up = chain[sid] or case.symptom
        problems.append(_problem_on(case, sid, [sid, up], number))
    updates = []
    for problem in problems[1:]:
        updated = copy.deepcopy(problem)
        last = updated["impactedEntities"][-1]["entityId"]["id"]
        above = chain.get(last) or case.symptom
        if all(item["entityId"]["id"] != above for item in updated["impactedEntities"]):
            updated["impactedEntities"].append(_stub(case, above))
            updated["affectedEntities"] = copy.deepcopy(updated["impactedEntities"])
        updates.append(updated)
    return Scenario(
        "storm",
        f"{_name(case, case.truth)} fails and {len(problems)} problems open above it",
        case,
        problems,
        updates,
    )


def notification(problem: dict[str, Any], environment_url: str, state: str = "OPEN") -> dict[str, Any]:
    """The body Dynatrace sends for ``problem`` with Borealis's suggested payload template."""
    impacted = problem["impactedEntities"]
    return {
        "ProblemID": problem["displayId"],
        "PID": problem["problemId"].split("_")[0],
        "State": state,
        "ProblemTitle": problem["title"],
        "ProblemSeverity": problem["severityLevel"],
        "ProblemImpact": problem["impactLevel"],
        "ProblemURL": f"{environment_url}/#problems/problemdetails;pid={problem['problemId']}",
        "ImpactedEntity": ", ".join(f"{item['name']}" for item in impacted),
        "ImpactedEntityNames": ", ".join(item["name"] for item in impacted),
        "ImpactedEntities": [
            {"type": item["entityId"]["type"], "name": item["name"], "entity": item["entityId"]["id"]}
            for item in impacted
        ],
        "Tags": "",
        "ProblemDetailsJSONv2": json.loads(json.dumps(problem)),
    }


# ---- the storm's problems ------------------------------------------------------------------------------


def _callers_up(case: Case, start: str) -> dict[str, str | None]:
    """``start`` and every service whose calls reach it, nearest first, each with one of its callers
    (None for the customer-facing service, which has none)."""
    documents = {entity["entityId"]: entity for entity in case.entities}
    found: dict[str, str | None] = {}
    queue, seen = deque([start]), {start}
    while queue:
        sid = queue.popleft()
        callers = [ref["id"] for ref in documents[sid]["toRelationships"].get("calls", [])]
        found[sid] = callers[0] if callers else None
        for caller in callers:
            if caller not in seen:
                seen.add(caller)
                queue.append(caller)
    return found


def _shows(case: Case, sid: str) -> bool:
    """Whether the service's own figures show the fault: 30% slower or 1 point more failures after the
    onset than in the hour before it."""
    onset = next(i for i, stamp in enumerate(case.timestamps) if stamp > case.onset.timestamp() * 1000)
    before, after = slice(max(0, onset - 70), onset - 10), slice(onset + 2, None)
    rt = case.metrics.get((RESPONSE_TIME, sid))
    failed = case.metrics.get((FAILURE_RATE, sid))
    if rt is None or failed is None:
        return False
    rt_before, rt_after = mean(rt[before]), mean(rt[after])
    failed_before, failed_after = mean(failed[before]), mean(failed[after])
    slower = bool(rt_before and rt_after and rt_after >= 1.3 * rt_before)
    failing = failed_before is not None and failed_after is not None and failed_after - failed_before >= 1.0
    return slower or failing


def _name(case: Case, entity_id: str) -> str:
    return str(case.entity(entity_id)["displayName"])


def _stub(case: Case, entity_id: str) -> dict[str, Any]:
    return documents.stub(entity_id, _name(case, entity_id))


def _problem_on(case: Case, sid: str, impacted: list[str], number: int) -> dict[str, Any]:
    """A problem like the case's own, opened on ``sid`` a few seconds after it."""
    problem = copy.deepcopy(case.problem)
    start = problem["startTime"] + number * 7_000
    head = problem["problemId"].split("_")[0]
    stubs = [_stub(case, entity_id) for entity_id in dict.fromkeys(impacted)]
    problem.update(
        problemId=f"{head[:-3]}{number:03d}_{start}V2",
        displayId=f"P-{int(problem['displayId'][2:]) + number}",
        title="Failure rate increase",
        severityLevel="ERROR",
        startTime=start,
        affectedEntities=stubs,
        impactedEntities=copy.deepcopy(stubs),
        rootCauseEntity=None,
        evidenceDetails={"totalCount": 0, "details": []},
        impactAnalysis={"impacts": []},
    )
    return problem
