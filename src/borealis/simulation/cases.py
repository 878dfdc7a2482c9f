"""Generated Dynatrace environments with a known root cause, to measure root-cause analysis at scale.

``generate(seed)`` builds one case from ``random.Random(seed)`` alone (same seed, same case): a layered
service graph (20-100 services under one customer-facing service, with shared databases, caches, queues
and external services at the bottom, on 3-10 hosts), three hours of one-minute metrics, events, and the
problem Dynatrace opened on the customer-facing service. One fault is injected at a random depth; its
effect travels up the calls as it does in a real system:

- a caller's response time includes its callees' times, weighted by how many of its requests call them;
- failures travel up attenuated (retries, fallbacks and caches absorb a share of them);
- requests flow down: a callee's request count is the sum of its callers' calls;
- noise is multiplicative, larger where traffic is low (few requests make a jumpy average), with spikes.

The model knows nothing of any analyzer: it only guarantees that the symptom is visible at the top, since
Dynatrace opened a problem there. Traps (an unrelated anomaly or deployment, a missing or noisy series)
make the case as messy as a real incident. ``load(case, fake)`` puts it into a ``FakeDynatrace``;
``shifted(case, now)`` moves it in time (the demo's problems happen now).

Knobs: ``fault`` (FAULTS), ``traffic`` (TRAFFIC), ``traps`` (a subset of TRAPS; None draws them), and
``services`` (the size of the graph; None draws 20-100).
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from borealis.simulation import documents
from borealis.simulation.faults import FAULTS, FRONTEND_IS_CAUSE, Plan, place_traps, plan_fault
from borealis.simulation.series import (
    MINUTE_MS,
    MINUTES,
    TRAFFIC,
    Simulation,
    infrastructure_metrics,
    service_metrics,
    spoil,
    visible,
)
from borealis.simulation.topology import World

TRAPS = ("unrelated_anomaly", "unrelated_deployment", "missing_series", "noisy_metric")
TRAP_CHANCE = {
    "unrelated_anomaly": 0.35,
    "unrelated_deployment": 0.3,
    "missing_series": 0.2,
    "noisy_metric": 0.3,
}

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class Case:
    """One generated incident: what Dynatrace holds, and the truth to score an analysis against."""

    seed: int
    fault: str
    traffic: str
    now: datetime
    onset: datetime
    truth: str
    symptom: str
    depth: int
    traps: dict[str, str]
    entities: list[dict[str, Any]]
    timestamps: list[int]
    # (metric key, entity id) -> one value per timestamp (None: no data that minute).
    metrics: dict[tuple[str, str], list[float | None]]
    events: list[dict[str, Any]]
    problem: dict[str, Any]
    # The entity ids an analysis may name for the truth: the cause and, for a service, its processes.
    accepted: frozenset[str] = frozenset()
    services: int = 0

    @property
    def davis_names_cause(self) -> bool:
        return self.problem.get("rootCauseEntity") is not None

    def entity(self, entity_id: str) -> dict[str, Any]:
        return next(item for item in self.entities if item["entityId"] == entity_id)


def load(case: Case, fake: Any) -> None:
    """Put the case into a ``FakeDynatrace``: entities, metric series, events and the problem."""
    for entity in case.entities:
        fields = {key: copy.deepcopy(value) for key, value in entity.items() if key != "displayName"}
        fields.pop("entityId")
        fake.add_entity(entity["entityId"], entity["displayName"], **fields)
    for (metric, entity_id), values in case.metrics.items():
        fake.add_metric_series(metric, entity_id, case.timestamps, values)
    for event in case.events:
        fake.add_event(copy.deepcopy(event))
    fake.add_problem(**copy.deepcopy(case.problem))


def generate(
    seed: int,
    *,
    fault: str | None = None,
    traffic: str | None = None,
    traps: Iterable[str] | None = None,
    services: int | None = None,
) -> Case:
    """The case of ``seed``; ``fault``, ``traffic``, ``traps`` and ``services`` pin what is otherwise drawn."""
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
    if traffic is not None and traffic not in TRAFFIC:
        raise ValueError(f"unknown traffic {traffic!r}; one of {TRAFFIC}")
    rng = random.Random(seed)
    # Everything is drawn even when pinned, so a pinned knob leaves the rest of the case as it was.
    kind = rng.choice(FAULTS)
    profile = rng.choice(TRAFFIC)
    wanted = _draw_traps(rng, traps)
    size = rng.randint(20, 100)
    kind, profile = fault or kind, traffic or profile
    world = World(rng, services or size)
    now = EPOCH + timedelta(
        days=rng.randint(0, 330), minutes=rng.randint(0, 1439), seconds=rng.randint(0, 59)
    )
    opened_ago = rng.randint(10, 40)
    opened = MINUTES - opened_ago
    at_front = kind not in ("traffic_collapse", "host_saturation") and rng.random() < FRONTEND_IS_CAUSE
    for _ in range(40):
        onset = opened - rng.randint(2, 8)
        plan = plan_fault(rng, world, kind, profile, at_front, onset)
        if plan is None:
            continue
        built = _build_case(rng, world, seed, plan, profile, now, onset, opened, wanted)
        if built is not None:
            return built
    raise RuntimeError(f"seed {seed}: no visible {kind} fault could be placed")


def _draw_traps(rng: random.Random, traps: Iterable[str] | None) -> list[str]:
    drawn = [name for name in TRAPS if rng.random() < TRAP_CHANCE[name]]
    if traps is None:
        return drawn
    chosen = list(traps)
    unknown = set(chosen) - set(TRAPS)
    if unknown:
        raise ValueError(f"unknown traps {sorted(unknown)}; from {TRAPS}")
    return chosen


def _build_case(
    rng: random.Random,
    world: World,
    seed: int,
    plan: Plan,
    profile: str,
    now: datetime,
    onset: int,
    opened: int,
    wanted: list[str],
) -> Case | None:
    simulation = Simulation(world, rng, profile, onset, opened)
    requests = simulation.requests(plan.fault, plan.users_leave)
    rt, failed = simulation.latency_and_failures(plan.fault, requests)
    # Each point is stamped at the end of its minute; the minute still running at ``now`` has none yet.
    last = int(now.timestamp()) // 60 * MINUTE_MS
    timestamps = [last - MINUTE_MS * (MINUTES - minute) for minute in range(MINUTES + 1)]
    traps = place_traps(rng, world, plan, wanted, onset)
    metrics = service_metrics(rng, world, requests, rt, failed, profile, traps)
    metrics.update(infrastructure_metrics(rng, world, requests, plan.fault, onset))
    spoil(rng, world, metrics, traps)
    front = world.order[0]
    if not visible(metrics, front, onset, opened):
        return None
    stamp = timestamps[opened] - MINUTE_MS  # the problem opens as minute ``opened`` starts
    truth_service = world.services.get(plan.truth)
    accepted = {plan.truth}
    if truth_service is not None:
        accepted |= {instance.pgi for instance in truth_service.instances}
        accepted |= {truth_service.group} if truth_service.group else set()
    events = documents.events(rng, world, plan, traps, timestamps, onset)
    problem, opening = documents.problem(rng, world, plan, metrics, stamp, onset, opened, timestamps, events)
    events.append(opening)
    return Case(
        seed=seed,
        fault=plan.fault.kind,
        traffic=profile,
        now=now,
        onset=datetime.fromtimestamp(timestamps[onset] / 1000 - 60, UTC),
        truth=plan.truth,
        symptom=front,
        depth=plan.depth,
        traps={name: target for name, target in traps.items() if not name.startswith("_")},
        entities=documents.entities(rng, world, now),
        timestamps=timestamps,
        metrics=metrics,
        events=events,
        problem=problem,
        accepted=frozenset(accepted),
        services=len(world.services),
    )


# Dynatrace's ids that end in a start time: a problem's ``-123_1700000000000V2``, an event's ``456_1700...``.
_STAMPED_ID = re.compile(r"^(.*_)(\d{12,})(V2)?$")
_TIME_FIELDS = ("startTime", "endTime", "firstSeenTms", "lastSeenTms")


def problem_on_cause(case: Case) -> dict[str, Any] | None:
    """A second problem, opened on the cause itself, as Dynatrace often opens one on a failing dependency
    beside the one on the service above it (None when the cause is the symptom: it already has one)."""
    if case.truth == case.symptom:
        return None
    cause = next(entity for entity in case.entities if entity["entityId"] == case.truth)
    problem = copy.deepcopy(case.problem)
    problem["problemId"] = f"{problem['problemId']}-cause"
    problem["displayId"] = f"{problem['displayId']}-2"
    problem["impactedEntities"] = problem["affectedEntities"] = [
        documents.stub(case.truth, cause["displayName"])
    ]
    return problem


def shifted(case: Case, now: datetime) -> Case:
    """The case moved in time so its last data point is the last whole minute before ``now``: metrics,
    entities, events, the problem and the ids that carry a time all move by the same whole minutes, so
    the case is unchanged but for when it happens."""
    delta = int(now.timestamp()) // 60 * MINUTE_MS - case.timestamps[-1]
    moved = copy.deepcopy(case)
    moved.now = case.now + timedelta(milliseconds=delta)
    moved.onset = case.onset + timedelta(milliseconds=delta)
    moved.timestamps = [stamp + delta for stamp in case.timestamps]
    moved.entities = [_moved(entity, delta) for entity in moved.entities]
    moved.events = [_moved(event, delta) for event in moved.events]
    moved.problem = _moved(moved.problem, delta)
    return moved


def _moved(document: Any, delta: int) -> Any:
    """A copy of a document with every time field and time-stamped id moved by ``delta`` ms (-1, "not
    ended", stays)."""
    if isinstance(document, list):
        return [_moved(item, delta) for item in document]
    if not isinstance(document, dict):
        return document
    moved: dict[str, Any] = {}
    for key, value in document.items():
        if key in _TIME_FIELDS and isinstance(value, int) and value != -1:
            moved[key] = value + delta
        elif key in ("problemId", "eventId") and (found := _STAMPED_ID.match(str(value))):
            head, stamp, tail = found.groups()
            moved[key] = f"{head}{int(stamp) + delta}{tail or ''}"
        else:
            moved[key] = _moved(value, delta)
    return moved
