"""Where a generated case's fault strikes and how hard, and where its traps land.

A fault is sized so the customer-facing service shows it (Dynatrace opened a problem there) within the
ranges real faults have; traps (an unrelated anomaly or deployment, a missing or noisy series) land away
from the fault's path, so they mislead without changing the truth.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from borealis.simulation.series import MINUTES, Anomaly, Fault
from borealis.simulation.topology import World

FAULTS = ("latency", "errors", "host_saturation", "traffic_collapse", "bad_deployment")
# Share of cases (among faults that can strike it) where the customer-facing service is itself the cause.
FRONTEND_IS_CAUSE = 0.2
# The least slowdown of the frontend (share of its usual time) a fault is sized for: a clear problem.
VISIBLE_SLOWDOWN = 0.7


@dataclass
class Plan:
    """Where the fault strikes, how hard, and how deep below the symptom its cause lies."""

    fault: Fault
    truth: str
    depth: int
    users_leave: float


def plan_fault(
    rng: random.Random, world: World, kind: str, profile: str, at_front: bool, onset: int
) -> Plan | None:
    """Where the fault strikes and how hard: strong enough that the frontend shows it (Dynatrace opened a
    problem there), within the ranges real faults have; None when no spot can be seen."""
    depths = world.depths()
    baseline = world.baseline_ms()
    front = world.order[0]
    ramp = rng.choices((1, 2, 3), weights=(60, 30, 10))[0]
    if kind == "host_saturation":
        return _plan_host(rng, world, depths, baseline, ramp)
    reach = Reach(world, baseline, profile)
    target = front if at_front else _pick_target(rng, world, kind, depths, reach)
    if target is None:
        return None
    effects = [effect for effect in ("latency", "errors") if reach.can_show(effect, target)]
    if kind == "bad_deployment":
        effect = rng.choices(("latency", "errors", "both"), weights=(40, 30, 30))[0]
        effect = effect if (effect == "both" and len(effects) == 2) or effect in effects else effects[0]
    else:
        effect = kind
    fault = Fault(kind=kind, target=target, ramp=ramp)
    if kind == "bad_deployment":
        fault.deployment = rng.choice(("CUSTOM_DEPLOYMENT", "PROCESS_VERSION_CHANGE"))
        if not world.services[target].instances:
            fault.deployment = "CUSTOM_DEPLOYMENT"
    if effect in ("latency", "both"):
        reach.size_latency(rng, fault)
    if effect in ("errors", "both"):
        reach.size_errors(rng, fault)
    if kind == "traffic_collapse":
        fault.dropped = rng.uniform(0.8, 1.0)
        fault.failing_call_ms = rng.choice((rng.uniform(1, 5), rng.uniform(1000, 5000)))
    strong = fault.slowdown > 3 or fault.errors_pp > 10 or kind == "traffic_collapse"
    users_leave = rng.uniform(0, 0.08) if strong and rng.random() < 0.5 else 0.0
    return Plan(fault, target, depths[target], users_leave)


def _pick_target(
    rng: random.Random, world: World, kind: str, depths: dict[str, int], reach: Reach
) -> str | None:
    """A service below the frontend where the fault can show at the top: first a depth, then a service at
    it, so deep and shallow faults come alike (deep layers hold more services)."""
    by_depth: dict[int, list[str]] = {}
    for sid in world.order[1:]:
        service = world.services[sid]
        if kind in ("traffic_collapse", "bad_deployment") and service.kind in ("external", "queue"):
            continue
        if reach.can_show(kind, sid):
            by_depth.setdefault(depths[sid], []).append(sid)
    if not by_depth:
        return None
    depth = rng.choice(sorted(by_depth))
    return rng.choice(by_depth[depth])


class Reach:
    """How strongly a change at a service can show at the frontend, and the fault sizes that make it show:
    response time x2-x20, failures +3-60 points, 80-100% of requests refused."""

    MAX_SLOWDOWN = 20.0
    MAX_ERRORS_PP = 60.0

    def __init__(self, world: World, baseline: dict[str, float], profile: str) -> None:
        self.world = world
        self.baseline = baseline
        self.front = world.order[0]
        self.latency = world.reach("latency")
        self.errors = world.reach("errors")
        # What a failure rate increase must reach at the frontend to stand out of its noise.
        self.error_floor = 5.0 if profile == "low" else 3.0

    def can_show(self, kind: str, sid: str) -> bool:
        if kind == "latency":
            return self._max_slowdown_seen(sid) >= VISIBLE_SLOWDOWN
        if kind == "errors":
            return self.MAX_ERRORS_PP * self.errors[sid] >= self.error_floor
        if kind == "traffic_collapse":
            return 0.8 * self._refusal_seen(sid) >= self.error_floor
        return self.can_show("latency", sid) or self.can_show("errors", sid)

    def _max_slowdown_seen(self, sid: str) -> float:
        """The frontend's relative slowdown when ``sid`` is 20 times slower."""
        added = (self.MAX_SLOWDOWN - 1) * self.latency[sid] * self.baseline[sid]
        return added / self.baseline[self.front]

    def _refusal_seen(self, sid: str) -> float:
        """Failure points at the frontend when ``sid`` refuses every request."""
        seen = 0.0
        for caller in self.world.services[sid].callers:
            call = next(c for c in self.world.services[caller].calls if c.callee == sid)
            seen += self.errors[caller] * min(1.0, call.weight) * call.absorb * 100
        return seen

    def size_latency(self, rng: random.Random, fault: Fault) -> None:
        """A slowdown of the target's whole response time (its own share grows) that slows the frontend by
        70% to four times its usual time."""
        sid = fault.target
        most = self._max_slowdown_seen(sid)
        wanted = rng.uniform(VISIBLE_SLOWDOWN, max(VISIBLE_SLOWDOWN, min(3.0, most)))
        whole = 1 + wanted * self.baseline[self.front] / (self.latency[sid] * self.baseline[sid])
        whole = min(self.MAX_SLOWDOWN, max(whole, rng.uniform(2, 3)))
        own = self.world.services[sid].own_ms
        fault.slowdown = 1 + (whole - 1) * self.baseline[sid] / own

    def size_errors(self, rng: random.Random, fault: Fault) -> None:
        sid = fault.target
        most = self.MAX_ERRORS_PP * self.errors[sid]
        wanted = rng.uniform(self.error_floor, max(self.error_floor, min(15.0, most)))
        fault.errors_pp = min(self.MAX_ERRORS_PP, max(rng.uniform(3, 8), wanted / self.errors[sid]))


def _plan_host(
    rng: random.Random, world: World, depths: dict[str, int], baseline: dict[str, float], ramp: int
) -> Plan | None:
    """A host whose CPU goes to 90-100%: every process on it slows, enough for the frontend to show."""
    reach = world.reach("latency")
    front = world.order[0]
    host = rng.choice(list(world.hosts))
    on_host = world.services_on(host)
    if not on_host:
        return None
    slowdown = rng.uniform(2, 6)
    added = sum(reach[s.id] * share * (slowdown - 1) * s.own_ms for s, share in on_host)
    if added < VISIBLE_SLOWDOWN * baseline[front]:
        wanted = rng.uniform(VISIBLE_SLOWDOWN, 1.0) * baseline[front]
        slowdown = 1 + wanted / max(1e-9, added / (slowdown - 1))
        if slowdown > 12:
            return None
    fault = Fault(
        kind="host_saturation", target=host, host_slowdown=slowdown, cpu_pct=rng.uniform(90, 99), ramp=ramp
    )
    depth = 1 + min(depths[s.id] for s, _ in on_host)
    return Plan(fault, host, depth, 0.0)


def place_traps(
    rng: random.Random, world: World, plan: Plan, wanted: list[str], onset: int
) -> dict[str, Any]:
    """Where each trap lands: away from the fault's path, except a missing series (any candidate)."""
    front = world.order[0]
    path = world.ancestors(plan.truth) if plan.truth in world.services else set()
    if plan.fault.kind == "host_saturation":
        for service, _ in world.services_on(plan.truth):
            path |= {service.id, *world.ancestors(service.id)}
    path |= {plan.truth, front}
    unrelated = [sid for sid in world.order if sid not in path and world.services[sid].kind != "external"]
    placed: dict[str, Any] = {}
    for name in wanted:
        if name == "unrelated_anomaly" and unrelated:
            target = rng.choice(unrelated)
            start = min(MINUTES - 3, max(10, onset + rng.randint(-15, 5)))
            anomaly = Anomaly(target, start)
            if rng.random() < 0.5:
                anomaly.slowdown = rng.uniform(2, 6)
            else:
                anomaly.errors_pp = rng.uniform(3, 20)
            placed[name], placed["_anomaly"] = target, anomaly
        elif name == "unrelated_deployment":
            others = [
                sid for sid in world.order if sid != plan.truth and world.services[sid].kind != "external"
            ]
            placed[name] = rng.choice(others)
        elif name == "missing_series":
            candidates = [sid for sid in path if sid != front and sid in world.services]
            if plan.fault.kind == "host_saturation":
                candidates.append(plan.truth)
            if candidates:
                placed[name] = rng.choice(sorted(candidates))
        elif name == "noisy_metric":
            placed[name] = rng.choice([sid for sid in world.order if sid != front] + list(world.hosts))
    return placed
