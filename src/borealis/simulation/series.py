"""Three hours of one-minute metrics for a world with a fault: what Dynatrace would have recorded.

Requests flow down the calls (a callee's count is its callers' calls), then response times and failure
rates are built bottom-up (a caller's time includes its callees', weighted by the calls; failures travel up
attenuated), minute by minute. Noise is multiplicative and wider where traffic is low, with spikes; the
data traps (a missing series, one buried in noise) are applied last.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from borealis.simulation.topology import Service, World

TRAFFIC = ("low", "high", "diurnal")
RESPONSE_TIME = "builtin:service.response.time"
FAILURE_RATE = "builtin:service.errors.total.rate"
REQUESTS = "builtin:service.requestCount.total"
HOST_CPU = "builtin:host.cpu.usage"
HOST_MEMORY = "builtin:host.mem.usage"
PROCESS_CPU = "builtin:tech.generic.cpu.usage"
PROCESS_MEMORY = "builtin:tech.generic.mem.workingSetSize"
SERVICE_METRICS = (RESPONSE_TIME, FAILURE_RATE, REQUESTS)
HOST_METRICS = (HOST_CPU, HOST_MEMORY)
PROCESS_METRICS = (PROCESS_CPU, PROCESS_MEMORY)

MINUTES = 180
MINUTE_MS = 60_000


@dataclass
class Fault:
    """What is wrong from ``onset`` on; ``target`` is a service or a host id."""

    kind: str
    target: str
    slowdown: float = 1.0  # latency: multiplier of the target's response time
    errors_pp: float = 0.0  # added failure rate, percentage points
    dropped: float = 0.0  # traffic_collapse: share of requests the target no longer takes
    failing_call_ms: float = 0.0  # traffic_collapse: what a caller waits for a call that fails
    cpu_pct: float = 0.0  # host_saturation: the host's CPU usage
    host_slowdown: float = 1.0  # host_saturation: multiplier of own time for its processes
    ramp: int = 1  # minutes to reach full strength
    deployment: str | None = None  # bad_deployment: the event type


@dataclass
class Anomaly:
    """A trap: a service's own figures change, not its callers' (the slow path is one they do not use)."""

    service: str
    start: int
    slowdown: float = 1.0
    errors_pp: float = 0.0


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth below 30, the normal approximation above)."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _failures(rng: random.Random, requests: int, rate: float) -> int:
    rate = min(1.0, max(0.0, rate))
    if requests <= 60:
        return sum(1 for _ in range(requests) if rng.random() < rate)
    spread = math.sqrt(requests * rate * (1 - rate))
    return min(requests, max(0, round(rng.gauss(requests * rate, spread))))


def _ramp(minute: int, start: int, ramp: int) -> float:
    """0 before ``start``, rising linearly to 1 over ``ramp`` minutes."""
    if minute < start:
        return 0.0
    return min(1.0, (minute - start + 1) / max(1, ramp))


class Simulation:
    """Requests top-down, then response times and failures bottom-up, minute by minute."""

    def __init__(self, world: World, rng: random.Random, traffic: str, onset: int, opened: int) -> None:
        self.world = world
        self.rng = rng
        self.traffic = traffic
        self.onset = onset
        self.opened = opened
        self.frontend_load = self._frontend_load()

    def _frontend_load(self) -> list[float]:
        rng = self.rng
        if self.traffic == "low":
            base = rng.uniform(4, 30)
            return [base * (1 + 0.1 * math.sin(i / 25)) for i in range(MINUTES + 1)]
        if self.traffic == "high":
            base = rng.uniform(1000, 5000)
            return [base * (1 + 0.03 * math.sin(i / 17)) for i in range(MINUTES + 1)]
        base = rng.uniform(200, 3000)
        change = rng.uniform(0.3, 0.6) * rng.choice((-1, 1))
        centre, width = rng.uniform(60, 120), rng.uniform(20, 45)
        return [base * (1 + change / (1 + math.exp(-(i - centre) / width))) for i in range(MINUTES + 1)]

    def requests(self, fault: Fault | None, users_leave: float) -> dict[str, list[float]]:
        """Requests per minute: the frontend's load, then each callee gets its callers' calls (callers come
        first in ``order``, so a service's count is complete before it passes calls on)."""
        world = self.world
        counts: dict[str, list[float]] = {sid: [0.0] * (MINUTES + 1) for sid in world.order}
        front = world.order[0]
        for minute in range(MINUTES + 1):
            counts[front][minute] = self.frontend_load[minute] * (
                1 - users_leave * _ramp(minute, self.opened, 3)
            )
        retries = self.rng.uniform(0.1, 0.5) if self.rng.random() < 0.4 else 0.0
        for sid in world.order:
            series = counts[sid]
            for minute in range(MINUTES + 1):
                series[minute] = self._observed(series[minute] * self._taken(fault, sid, minute, retries))
            for call in world.services[sid].calls:
                target = counts[call.callee]
                for minute in range(MINUTES + 1):
                    target[minute] += series[minute] * call.weight
        return counts

    def _taken(self, fault: Fault | None, sid: str, minute: int, retries: float) -> float:
        """The share of the requests sent that the service takes: fewer after a collapse, more when its
        callers retry its failures."""
        if fault is None or fault.target != sid:
            return 1.0
        strength = _ramp(minute, self.onset, fault.ramp)
        if fault.kind == "traffic_collapse":
            return 1 - fault.dropped * strength
        return 1 + retries * fault.errors_pp / 100 * strength

    def _observed(self, expected: float) -> float:
        if self.traffic == "low" or expected < 50:
            return float(_poisson(self.rng, expected))
        return max(0.0, expected * (1 + self.rng.gauss(0, 0.02)))

    def latency_and_failures(
        self, fault: Fault | None, requests: dict[str, list[float]]
    ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """Expected response time (ms) and failure rate (0-1) per service and minute, callees first. A
        busier minute is a little slower (queueing), so a traffic ramp moves response times too."""
        world = self.world
        rt: dict[str, list[float]] = {}
        failed: dict[str, list[float]] = {}
        for sid in reversed(world.order):
            service = world.services[sid]
            drift = self.rng.uniform(-0.08, 0.08)
            usual = sum(requests[sid]) / len(requests[sid]) or 1.0
            rt[sid], failed[sid] = [], []
            for minute in range(MINUTES + 1):
                busy = min(1.3, max(0.85, 1 + 0.15 * (requests[sid][minute] / usual - 1)))
                own = (
                    service.own_ms
                    * (1 + drift * minute / MINUTES)
                    * busy
                    * self._slowdown(fault, service, minute)
                )
                rate = service.errors_pct / 100 + self._added_errors(fault, sid, minute)
                for call in service.calls:
                    before = max(0, minute - call.lag)
                    seen_ms, seen_failed = rt[call.callee][before], failed[call.callee][before]
                    if fault and fault.kind == "traffic_collapse" and fault.target == call.callee:
                        refused = fault.dropped * _ramp(before, self.onset, fault.ramp)
                        seen_ms = (1 - refused) * seen_ms + refused * fault.failing_call_ms
                        seen_failed = max(seen_failed, refused)
                    own += call.weight * seen_ms
                    rate += min(1.0, call.weight) * call.absorb * seen_failed
                rt[sid].append(own)
                failed[sid].append(min(1.0, rate))
        return rt, failed

    def _slowdown(self, fault: Fault | None, service: Service, minute: int) -> float:
        if fault is None:
            return 1.0
        strength = _ramp(minute, self.onset, fault.ramp)
        if fault.target == service.id and fault.slowdown > 1:
            return 1 + (fault.slowdown - 1) * strength
        if fault.kind == "host_saturation":
            share = sum(
                instance.load_share for instance in service.instances if instance.host == fault.target
            )
            return 1 + (fault.host_slowdown - 1) * share * strength
        return 1.0

    def _added_errors(self, fault: Fault | None, sid: str, minute: int) -> float:
        if fault is None or fault.target != sid or not fault.errors_pp:
            return 0.0
        return fault.errors_pp / 100 * _ramp(minute, self.onset, fault.ramp)


def _noise(rng: random.Random, requests: float, profile: str) -> float:
    """Multiplicative noise of a per-minute average: wider over few requests."""
    sigma = 0.06 + 0.6 / math.sqrt(max(requests, 1.0))
    if profile == "high":
        sigma *= 0.7
    value = math.exp(rng.gauss(0, sigma))
    if rng.random() < 0.01:
        value *= rng.uniform(1.5, 4)  # a GC pause, a cold cache
    return value


def service_metrics(
    rng: random.Random,
    world: World,
    requests: dict[str, list[float]],
    rt: dict[str, list[float]],
    failed: dict[str, list[float]],
    profile: str,
    traps: dict[str, Any],
) -> dict[tuple[str, str], list[float | None]]:
    """What Dynatrace shows per service and minute: response time in microseconds, failure rate in percent,
    request count; no data in a minute without requests."""
    anomaly: Anomaly | None = traps.get("_anomaly")
    metrics: dict[tuple[str, str], list[float | None]] = {}
    for sid in world.order:
        times: list[float | None] = []
        rates: list[float | None] = []
        counts: list[float | None] = []
        for minute in range(MINUTES + 1):
            count = requests[sid][minute]
            counts.append(round(count))
            if round(count) <= 0:
                times.append(None)
                rates.append(None)
                continue
            ms, rate = rt[sid][minute], failed[sid][minute]
            if anomaly is not None and anomaly.service == sid:
                strength = _ramp(minute, anomaly.start, 2)
                ms *= 1 + (anomaly.slowdown - 1) * strength
                rate += anomaly.errors_pp / 100 * strength
            times.append(round(ms * 1000 * _noise(rng, count, profile), 1))
            failures = _failures(rng, round(count), rate) if count < 5000 else count * rate
            rates.append(round(100 * failures / round(count), 3))
        metrics[(RESPONSE_TIME, sid)] = times
        metrics[(FAILURE_RATE, sid)] = rates
        metrics[(REQUESTS, sid)] = counts
    return metrics


def infrastructure_metrics(
    rng: random.Random, world: World, requests: dict[str, list[float]], fault: Fault, onset: int
) -> dict[tuple[str, str], list[float | None]]:
    """Process CPU follows its requests; a host's CPU is its processes' plus its own; memory drifts."""
    metrics: dict[tuple[str, str], list[float | None]] = {}
    host_cpu = {host_id: [host.idle_cpu] * (MINUTES + 1) for host_id, host in world.hosts.items()}
    for sid in world.order:
        service = world.services[sid]
        if not service.instances:
            continue
        average = sum(requests[sid]) / len(requests[sid]) or 1.0
        busy = rng.uniform(2, 15) / len(service.instances)
        for instance in service.instances:
            cpu: list[float | None] = []
            for minute in range(MINUTES + 1):
                value = 0.5 + busy * requests[sid][minute] / average
                value *= math.exp(rng.gauss(0, 0.08))
                cpu.append(round(min(100.0, value), 2))
                host_cpu[instance.host][minute] += cpu[-1] or 0.0
            metrics[(PROCESS_CPU, instance.pgi)] = cpu
            metrics[(PROCESS_MEMORY, instance.pgi)] = _working_set(rng, service.memory_bytes)
    for host_id, host in world.hosts.items():
        usage = host_cpu[host_id]
        peak = max(usage)
        scale = 75 / peak if peak > 75 else 1.0
        cpu_series: list[float | None] = []
        for minute, value in enumerate(usage):
            value = value * scale + rng.gauss(0, 1.0)
            if fault.kind == "host_saturation" and fault.target == host_id:
                strength = _ramp(minute, onset, fault.ramp)
                value += (fault.cpu_pct + rng.gauss(0, 1.5) - value) * strength
            cpu_series.append(round(min(100.0, max(0.5, value)), 2))
        metrics[(HOST_CPU, host_id)] = cpu_series
        drift = rng.uniform(-3, 3)
        metrics[(HOST_MEMORY, host_id)] = [
            round(host.memory_pct + drift * minute / MINUTES + rng.gauss(0, 0.4), 2)
            for minute in range(MINUTES + 1)
        ]
    return metrics


def _working_set(rng: random.Random, base: float) -> list[float | None]:
    """A garbage-collected heap: a slow sawtooth with noise."""
    period = rng.randint(15, 60)
    phase = rng.randint(0, period)
    return [
        round(base * (1 + 0.12 * ((minute + phase) % period) / period) * math.exp(rng.gauss(0, 0.01)))
        for minute in range(MINUTES + 1)
    ]


def spoil(
    rng: random.Random,
    world: World,
    metrics: dict[tuple[str, str], list[float | None]],
    traps: dict[str, Any],
) -> None:
    """The data traps: a series that returns nothing, a series buried in noise and spikes."""
    missing = traps.get("missing_series")
    if missing is not None:
        keys = (HOST_CPU,) if missing in world.hosts else (RESPONSE_TIME, FAILURE_RATE)
        metric = rng.choice(keys)
        del metrics[(metric, missing)]
        traps["missing_series"] = f"{missing} {metric}"
    noisy = traps.get("noisy_metric")
    if noisy is not None:
        keys = HOST_METRICS if noisy in world.hosts else (RESPONSE_TIME, FAILURE_RATE)
        metric = rng.choice(keys)
        series = metrics.get((metric, noisy))
        if series is None:
            del traps["noisy_metric"]
            return
        for index, value in enumerate(series):
            if value is None:
                continue
            value *= math.exp(rng.gauss(0, 0.6))
            if rng.random() < 0.08:
                value *= rng.uniform(3, 10)
            if metric in (FAILURE_RATE, HOST_CPU, HOST_MEMORY):
                value = min(100.0, value)
            series[index] = round(value, 3)
        traps["noisy_metric"] = f"{noisy} {metric}"


def mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def visible(metrics: dict[tuple[str, str], list[float | None]], front: str, onset: int, opened: int) -> bool:
    """Whether the frontend shows the trouble: 60% slower, or failing at least 2 points more,
    from the problem's opening on, against the hour before the onset."""
    before = slice(max(0, onset - 90), onset - 30)
    after = slice(opened, MINUTES + 1)
    rt = metrics[(RESPONSE_TIME, front)]
    errors = metrics[(FAILURE_RATE, front)]
    rt_before, rt_after = mean(rt[before]), mean(rt[after])
    errors_before, errors_after = mean(errors[before]), mean(errors[after])
    slower = rt_before is not None and rt_after is not None and rt_after >= 1.6 * rt_before
    failing = errors_before is not None and errors_after is not None and errors_after - errors_before >= 2.0
    return slower or failing
