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
make the case as messy as a real incident. ``load(case, fake)`` puts it into a ``FakeDynatrace``.

Knobs: ``fault`` (FAULTS), ``traffic`` (TRAFFIC), ``traps`` (a subset of TRAPS; None draws them), and
``services`` (the size of the graph; None draws 20-100).
"""

from __future__ import annotations

import copy
import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

FAULTS = ("latency", "errors", "host_saturation", "traffic_collapse", "bad_deployment")
TRAFFIC = ("low", "high", "diurnal")
TRAPS = ("unrelated_anomaly", "unrelated_deployment", "missing_series", "noisy_metric")
TRAP_CHANCE = {
    "unrelated_anomaly": 0.35,
    "unrelated_deployment": 0.3,
    "missing_series": 0.2,
    "noisy_metric": 0.3,
}
DAVIS_NAMES_CAUSE = 0.15
# Share of cases (among faults that can strike it) where the customer-facing service is itself the cause.
FRONTEND_IS_CAUSE = 0.2
# The least slowdown of the frontend (share of its usual time) a fault is sized for: a clear problem.
VISIBLE_SLOWDOWN = 0.7

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
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

FRONTENDS = ("frontend", "api-gateway", "storefront", "web-bff", "edge-gateway", "mobile-bff", "shop-web")
DOMAINS = (
    "checkout", "payment", "orders", "cart", "catalog", "inventory", "shipping", "pricing", "user", "auth",
    "search", "recommendation", "review", "notification", "email", "loyalty", "promotion", "tax", "fraud",
    "ledger", "billing", "invoice", "account", "profile", "session", "media", "content", "geo", "rating",
    "wishlist", "coupon", "refund", "warehouse", "fulfillment", "tracking", "quote", "currency", "audit",
    "report", "feature-flag", "config", "identity", "subscription", "returns", "delivery", "booking",
)  # fmt: skip
SUFFIXES = ("-api", "-svc", "-service", "")
DATABASE_VENDORS = ("POSTGRESQL", "MYSQL", "MONGODB", "ORACLE", "SQLSERVER")
EXTERNALS = (
    "payments-gateway.example.com", "api.stripe-sandbox.example.net", "maps.example.org",
    "sms-provider.example.io", "tax-rates.example.com", "auth.idp.example.com", "shipping-rates.example.net",
)  # fmt: skip
TECHNOLOGIES = ("JAVA", "GO", "NODE_JS", "DOTNET", "PYTHON")
HOST_PREFIXES = ("prod-app-", "k8s-worker-", "ip-10-0-", "vm-shop-")
DEPLOY_SOURCES = ("Jenkins", "GitLab CI", "Argo CD", "GitHub Actions", "Spinnaker")


# ---- the case ----------------------------------------------------------------------------------------


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


# ---- the model -----------------------------------------------------------------------------------------


@dataclass
class Call:
    """One caller-to-callee edge: the share of the caller's requests that make it, and how."""

    callee: str
    share: float  # of the caller's requests that call the callee
    per_request: int  # calls made by such a request
    absorb: float  # share of the callee's failures that fail the caller's request too
    lag: int  # minutes before the caller's figures show a change of the callee's

    @property
    def weight(self) -> float:
        return self.share * self.per_request


@dataclass
class Instance:
    pgi: str
    host: str
    load_share: float


@dataclass
class Service:
    id: str
    name: str
    kind: str  # frontend, app, database, cache, queue, external
    layer: int
    properties: dict[str, Any]
    own_ms: float
    errors_pct: float
    calls: list[Call] = field(default_factory=list)
    callers: list[str] = field(default_factory=list)
    group: str | None = None
    instances: list[Instance] = field(default_factory=list)
    cpu_per_request: float = 0.0
    memory_bytes: float = 0.0


@dataclass
class Host:
    id: str
    name: str
    idle_cpu: float
    memory_pct: float
    cores: int


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


class World:
    """The topology and its baselines, drawn from the seed's random stream."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng = rng
        self.services: dict[str, Service] = {}
        self.hosts: dict[str, Host] = {}
        self.order: list[str] = []  # callers before callees
        self._names: set[str] = set()
        self._build(size)

    # -- ids and names --

    def new_id(self, kind: str) -> str:
        return f"{kind}-{self.rng.getrandbits(64):016X}"

    def _unique(self, candidates: list[str]) -> str:
        for name in candidates:
            if name not in self._names:
                self._names.add(name)
                return name
        base = candidates[0]
        number = 2
        while f"{base}-{number}" in self._names:
            number += 1
        self._names.add(f"{base}-{number}")
        return f"{base}-{number}"

    def _app_name(self) -> str:
        rng = self.rng
        domain = rng.choice(DOMAINS)
        return self._unique([domain + rng.choice(SUFFIXES), *(domain + suffix for suffix in SUFFIXES)])

    # -- the graph --

    def _build(self, size: int) -> None:
        rng = self.rng
        databases = max(2, min(8, round(size / 10)))
        caches, queues, externals = rng.randint(1, 3), rng.randint(0, 2), rng.randint(1, 3)
        apps = size - 1 - databases - caches - queues - externals
        layers = self._layers(apps)
        front = self._service("frontend", 0, self._unique(list(rng.sample(FRONTENDS, len(FRONTENDS)))))
        placed = [[front.id]]
        for depth, width in enumerate(layers, start=1):
            placed.append([self._service("app", depth, self._app_name()).id for _ in range(width)])
        bottom = len(layers) + 1
        shared = {
            "database": [self._database(bottom).id for _ in range(databases)],
            "cache": [self._cache(bottom).id for _ in range(caches)],
            "queue": [self._queue(bottom).id for _ in range(queues)],
            "external": [self._external(bottom).id for _ in range(externals)],
        }
        self._wire(placed, shared)
        self.order = [sid for layer in placed for sid in layer] + [
            sid for ids in shared.values() for sid in ids
        ]
        self._bound_response_times()
        self._place_processes()

    def _layers(self, apps: int) -> list[int]:
        """Widths of the application layers under the frontend: 2-5 at the top, wider below."""
        rng = self.rng
        count = max(2, min(5, round(math.log2(max(apps, 4))) - 1 + rng.randint(0, 1)))
        first = min(rng.randint(2, 5), apps - (count - 1))
        rest = apps - first
        weights = [rng.uniform(0.8, 1.6) for _ in range(count - 1)]
        widths = [max(1, int(rest * weight / sum(weights))) for weight in weights]
        widths[-1] += rest - sum(widths)
        while widths[-1] < 1:
            biggest = widths.index(max(widths))
            widths[biggest] -= 1
            widths[-1] += 1
        return [first, *widths]

    def _service(self, kind: str, layer: int, name: str, **properties: Any) -> Service:
        rng = self.rng
        own = {"frontend": rng.uniform(5, 60), "app": rng.uniform(2, 80)}.get(kind, rng.uniform(2, 30))
        errors = rng.choices(
            (0.0, rng.uniform(0, 0.05), rng.uniform(0.05, 0.5), rng.uniform(0.5, 2.0)), weights=(2, 4, 3, 1)
        )[0]
        if kind in ("frontend", "app"):
            technology = rng.choice(TECHNOLOGIES)
            properties = {
                "serviceType": "WEB_REQUEST_SERVICE",
                "agentTechnologyType": technology,
                **properties,
            }
        service = Service(self.new_id("SERVICE"), name, kind, layer, properties, own, errors)
        self.services[service.id] = service
        return service

    def _database(self, layer: int) -> Service:
        vendor = self.rng.choice(DATABASE_VENDORS)
        name = self._unique([f"{self.rng.choice(DOMAINS)}-db" for _ in range(6)])
        service = self._service(
            "database",
            layer,
            name,
            serviceType="DATABASE_SERVICE",
            databaseVendor=vendor,
            databaseName=name.removesuffix("-db"),
        )
        service.own_ms = self.rng.uniform(1, 40)
        return service

    def _cache(self, layer: int) -> Service:
        name = self._unique([f"redis-{self.rng.choice(DOMAINS)}", "session-cache", "redis-cache"])
        service = self._service("cache", layer, name, serviceType="DATABASE_SERVICE", databaseVendor="REDIS")
        service.own_ms = self.rng.uniform(2, 5)
        service.errors_pct = self.rng.uniform(0, 0.05)
        return service

    def _queue(self, layer: int) -> Service:
        name = self._unique([f"kafka {self.rng.choice(DOMAINS)}-events", "rabbitmq jobs"])
        service = self._service(
            "queue", layer, name, serviceType="MESSAGING_SERVICE", messagingVendor="KAFKA"
        )
        service.own_ms = self.rng.uniform(2, 8)
        return service

    def _external(self, layer: int) -> Service:
        rng = self.rng
        name = self._unique(list(rng.sample(EXTERNALS, len(EXTERNALS))))
        style = rng.random()
        if style < 0.5:
            properties: dict[str, Any] = {"isExternalService": True, "serviceType": "WEB_REQUEST_SERVICE"}
        else:
            properties = {"serviceType": "EXTERNAL" if style < 0.75 else "OPAQUE"}
        service = self._service("external", layer, name, **properties)
        service.own_ms = rng.uniform(40, 300)
        return service

    def _call(self, caller: Service, callee: Service) -> None:
        rng = self.rng
        if any(call.callee == callee.id for call in caller.calls):
            return
        share = rng.uniform(0.6, 1.0) if rng.random() < 0.4 else rng.uniform(0.05, 0.6)
        per_request = 1
        absorb = rng.uniform(0.4, 1.0)
        if callee.kind == "database":
            per_request = rng.randint(1, 3)
        elif callee.kind == "app" and rng.random() < 0.2:
            per_request = 2
        if callee.kind == "cache":
            absorb = rng.uniform(0.0, 0.3)  # a failing cache read falls back to the database
        elif callee.kind == "queue":
            absorb = rng.uniform(0.2, 0.6)
        lag = rng.choices((0, 1, 2), weights=(75, 20, 5))[0]
        caller.calls.append(Call(callee.id, share, per_request, absorb, lag))
        callee.callers.append(caller.id)

    def _wire(self, placed: list[list[str]], shared: dict[str, list[str]]) -> None:
        """Fan-out and fan-in between the layers; every service has at least one caller."""
        rng = self.rng
        services = self.services
        front = services[placed[0][0]]
        for sid in placed[1]:
            self._call(front, services[sid])
        apps = [sid for layer in placed[1:] for sid in layer]
        for depth in range(1, len(placed) - 1):
            below = placed[depth + 1]
            deeper = [sid for layer in placed[depth + 2 :] for sid in layer]
            for sid in placed[depth]:
                for _ in range(rng.randint(1, 4)):
                    pool = deeper if deeper and rng.random() < 0.3 else below
                    self._call(services[sid], services[rng.choice(pool)])
            for sid in below:
                if not services[sid].callers:
                    self._call(services[rng.choice(placed[depth])], services[sid])
        last = set(placed[-1])
        for sid in apps:
            caller = services[sid]
            chances = {
                "database": 0.8 if sid in last else 0.5,
                "cache": 0.35,
                "queue": 0.15,
                "external": 0.12,
            }
            for kind, chance in chances.items():
                if shared[kind] and rng.random() < chance:
                    self._call(caller, services[rng.choice(shared[kind])])
        for ids in shared.values():
            for sid in ids:
                if not services[sid].callers:
                    self._call(services[rng.choice(apps)], services[sid])

    def baseline_ms(self) -> dict[str, float]:
        """Each service's usual response time: its own time plus its callees', weighted by the calls."""
        total: dict[str, float] = {}
        for sid in reversed(self.order):
            service = self.services[sid]
            total[sid] = service.own_ms + sum(call.weight * total[call.callee] for call in service.calls)
        return total

    def _bound_response_times(self) -> None:
        """Keep totals plausible (tens to hundreds of ms) by thinning the calls of a service whose callees
        would add up to seconds."""
        total: dict[str, float] = {}
        for sid in reversed(self.order):
            service = self.services[sid]
            cap = self.rng.uniform(250, 900) if service.kind == "frontend" else self.rng.uniform(60, 350)
            callees = sum(call.weight * total[call.callee] for call in service.calls)
            if service.own_ms + callees > cap and callees > 0:
                factor = max(0.05, (cap - service.own_ms) / callees)
                for call in service.calls:
                    call.share = max(0.02, call.share * factor)
                callees = sum(call.weight * total[call.callee] for call in service.calls)
            total[sid] = service.own_ms + callees

    def _place_processes(self) -> None:
        """Hosts, process groups and their instances; several services share a host."""
        rng = self.rng
        count = max(3, min(10, round(len(self.services) / 10) + rng.randint(1, 3)))
        prefix = rng.choice(HOST_PREFIXES)
        for number in range(count):
            host = Host(
                self.new_id("HOST"),
                f"{prefix}{number + 1:02d}"
                if not prefix.startswith("ip-")
                else f"{prefix}{number}-{rng.randint(2, 250)}",
                idle_cpu=rng.uniform(3, 15),
                memory_pct=rng.uniform(30, 70),
                cores=rng.choice((4, 8, 16, 32)),
            )
            self.hosts[host.id] = host
        hosts = list(self.hosts)
        for sid in self.order:
            service = self.services[sid]
            monitored = service.kind in ("frontend", "app") or (
                service.kind in ("database", "cache", "queue") and rng.random() < 0.6
            )
            if not monitored:
                continue
            service.group = self.new_id("PROCESS_GROUP")
            spread = 2 if rng.random() < 0.15 else 1
            for host_id in rng.sample(hosts, spread):
                service.instances.append(Instance(self.new_id("PROCESS_GROUP_INSTANCE"), host_id, 1 / spread))
            service.memory_bytes = rng.uniform(150e6, 4e9)

    # -- paths --

    def depths(self) -> dict[str, int]:
        """Call distance from the customer-facing service."""
        start = self.order[0]
        found = {start: 0}
        queue = deque([start])
        while queue:
            sid = queue.popleft()
            for call in self.services[sid].calls:
                if call.callee not in found:
                    found[call.callee] = found[sid] + 1
                    queue.append(call.callee)
        return found

    def ancestors(self, sid: str) -> set[str]:
        """Every service whose calls reach ``sid`` (its callers, their callers...)."""
        seen: set[str] = set()
        queue = deque(self.services[sid].callers)
        while queue:
            caller = queue.popleft()
            if caller not in seen:
                seen.add(caller)
                queue.extend(self.services[caller].callers)
        return seen

    def reach(self, weight: str) -> dict[str, float]:
        """How much of a change at each service shows at the frontend: the sum over call paths of the
        product of call weights (``latency``), or of weights and absorbed shares (``errors``)."""
        reach = dict.fromkeys(self.order, 0.0)
        reach[self.order[0]] = 1.0
        for sid in self.order:
            for call in self.services[sid].calls:
                factor = call.weight if weight == "latency" else min(1.0, call.weight) * call.absorb
                reach[call.callee] += reach[sid] * factor
        return reach

    def services_on(self, host_id: str) -> list[tuple[Service, float]]:
        return [
            (service, instance.load_share)
            for service in self.services.values()
            for instance in service.instances
            if instance.host == host_id
        ]


# ---- time series ---------------------------------------------------------------------------------------


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


# ---- generating a case -------------------------------------------------------------------------------


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
        plan = _plan_fault(rng, world, kind, profile, at_front, onset)
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


@dataclass
class Plan:
    fault: Fault
    truth: str
    depth: int
    users_leave: float


def _plan_fault(
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
    traps = _place_traps(rng, world, plan, wanted, onset)
    metrics = _service_metrics(rng, world, requests, rt, failed, profile, traps)
    metrics.update(_infrastructure_metrics(rng, world, requests, plan.fault, onset))
    _spoil(rng, world, metrics, traps)
    front = world.order[0]
    if not _visible(metrics, front, onset, opened):
        return None
    stamp = timestamps[opened] - MINUTE_MS  # the problem opens as minute ``opened`` starts
    truth_service = world.services.get(plan.truth)
    accepted = {plan.truth}
    if truth_service is not None:
        accepted |= {instance.pgi for instance in truth_service.instances}
        accepted |= {truth_service.group} if truth_service.group else set()
    events = _events(rng, world, plan, traps, timestamps, onset)
    problem, opening = _problem(rng, world, plan, metrics, stamp, onset, opened, timestamps, events)
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
        entities=_entities(rng, world, now),
        timestamps=timestamps,
        metrics=metrics,
        events=events,
        problem=problem,
        accepted=frozenset(accepted),
        services=len(world.services),
    )


def _place_traps(
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


def _noise(rng: random.Random, requests: float, profile: str) -> float:
    """Multiplicative noise of a per-minute average: wider over few requests."""
    sigma = 0.06 + 0.6 / math.sqrt(max(requests, 1.0))
    if profile == "high":
        sigma *= 0.7
    value = math.exp(rng.gauss(0, sigma))
    if rng.random() < 0.01:
        value *= rng.uniform(1.5, 4)  # a GC pause, a cold cache
    return value


def _service_metrics(
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


def _infrastructure_metrics(
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


def _spoil(
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


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


def _visible(metrics: dict[tuple[str, str], list[float | None]], front: str, onset: int, opened: int) -> bool:
    """Whether the frontend shows the trouble: 60% slower, or failing at least 2 points more,
    from the problem's opening on, against the hour before the onset."""
    before = slice(max(0, onset - 90), onset - 30)
    after = slice(opened, MINUTES + 1)
    rt = metrics[(RESPONSE_TIME, front)]
    errors = metrics[(FAILURE_RATE, front)]
    rt_before, rt_after = _mean(rt[before]), _mean(rt[after])
    errors_before, errors_after = _mean(errors[before]), _mean(errors[after])
    slower = rt_before is not None and rt_after is not None and rt_after >= 1.6 * rt_before
    failing = errors_before is not None and errors_after is not None and errors_after - errors_before >= 2.0
    return slower or failing


# ---- documents: entities, events, the problem ----------------------------------------------------------


def _ref(entity_id: str) -> dict[str, str]:
    return {"id": entity_id, "type": entity_id.rsplit("-", 1)[0]}


def _stub(entity_id: str, name: str) -> dict[str, Any]:
    return {"entityId": _ref(entity_id), "name": name}


def _relate(documents: dict[str, dict[str, Any]], source: str, relation: str, target: str) -> None:
    """``source -relation-> target``, written on both ends as Dynatrace shows it."""
    outgoing = documents[source]["fromRelationships"].setdefault(relation, [])
    if _ref(target) not in outgoing:
        outgoing.append(_ref(target))
    incoming = documents[target]["toRelationships"].setdefault(relation, [])
    if _ref(source) not in incoming:
        incoming.append(_ref(source))


def _document(
    entity_id: str, name: str, properties: dict[str, Any], first_seen: int, now_ms: int
) -> dict[str, Any]:
    return {
        "entityId": entity_id,
        "type": entity_id.rsplit("-", 1)[0],
        "displayName": name,
        "firstSeenTms": first_seen,
        "lastSeenTms": now_ms,
        "properties": properties,
        "tags": [],
        "managementZones": [],
        "fromRelationships": {},
        "toRelationships": {},
    }


def _entities(rng: random.Random, world: World, now: datetime) -> list[dict[str, Any]]:
    now_ms = int(now.timestamp() * 1000)

    def first_seen() -> int:
        return now_ms - rng.randint(3, 400) * 86_400_000

    documents: dict[str, dict[str, Any]] = {}
    for host in world.hosts.values():
        documents[host.id] = _document(
            host.id,
            host.name,
            {"osType": "LINUX", "cpuCores": host.cores, "monitoringMode": "FULL_STACK", "state": "RUNNING"},
            first_seen(),
            now_ms,
        )
    for sid in world.order:
        service = world.services[sid]
        documents[sid] = _document(sid, service.name, dict(service.properties), first_seen(), now_ms)
        technology = service.properties.get("agentTechnologyType") or service.properties.get("databaseVendor")
        if service.group:
            documents[service.group] = _document(
                service.group,
                f"{service.name}-*",
                {"softwareTechnologies": [technology]},
                first_seen(),
                now_ms,
            )
        for instance in service.instances:
            host_name = world.hosts[instance.host].name
            documents[instance.pgi] = _document(
                instance.pgi,
                f"{service.name}-* ({host_name})",
                {"processType": technology},
                first_seen(),
                now_ms,
            )
    for sid in world.order:
        service = world.services[sid]
        for call in service.calls:
            _relate(documents, sid, "calls", call.callee)
        for instance in service.instances:
            _relate(documents, sid, "runsOnProcessGroupInstance", instance.pgi)
            _relate(documents, sid, "runsOnHost", instance.host)
            _relate(documents, instance.pgi, "isProcessOf", instance.host)
            if service.group:
                _relate(documents, instance.pgi, "isInstanceOf", service.group)
                _relate(documents, service.group, "runsOn", instance.host)
        if service.group:
            _relate(documents, sid, "runsOn", service.group)
    return list(documents.values())


def _event_id(rng: random.Random, start: int) -> str:
    return f"{rng.randint(10**17, 10**19 - 1)}_{start}"


def _event(
    rng: random.Random,
    event_type: str,
    title: str,
    entity_id: str,
    name: str,
    start: int,
    *,
    end: int | None = None,
    properties: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An event in the v2 shape (``GET /api/v2/events``)."""
    return {
        "eventId": _event_id(rng, start),
        "startTime": start,
        "endTime": end if end is not None else -1,
        "eventType": event_type,
        "title": title,
        "entityId": _stub(entity_id, name),
        "properties": [{"key": key, "value": value} for key, value in (properties or {}).items()],
        "status": "CLOSED" if end is not None else "OPEN",
        "entityTags": [],
        "managementZones": [],
        "underMaintenance": False,
        "suppressAlert": False,
        "suppressProblem": False,
        "frequentEvent": False,
    }


def _deployment(rng: random.Random, world: World, sid: str, start: int, event_type: str) -> dict[str, Any]:
    """A deployment: pushed by a pipeline onto the service, or seen by OneAgent on its process."""
    service = world.services[sid]
    version = f"{rng.randint(1, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20)}"
    if event_type == "PROCESS_VERSION_CHANGE":
        instance = rng.choice(service.instances)
        name = f"{service.name}-* ({world.hosts[instance.host].name})"
        return _event(
            rng,
            "PROCESS_VERSION_CHANGE",
            "Process version change",
            instance.pgi,
            name,
            start,
            end=start,
            properties={"dt.event.group_label": "Process version change", "dt.event.version": version},
        )
    return _event(
        rng,
        "CUSTOM_DEPLOYMENT",
        f"Deploy {service.name} {version}",
        sid,
        service.name,
        start,
        end=start,
        properties={
            "dt.event.group_label": "Deployment",
            "dt.event.deployment.name": f"{service.name} {version}",
            "dt.event.deployment.version": version,
            "dt.event.source": rng.choice(DEPLOY_SOURCES),
        },
    )


def _events(
    rng: random.Random, world: World, plan: Plan, traps: dict[str, Any], timestamps: list[int], onset: int
) -> list[dict[str, Any]]:
    """The deployments (the faulty one, an unrelated one) and what Dynatrace raised on the way."""
    onset_ms = timestamps[onset] - MINUTE_MS
    events = []
    fault = plan.fault
    if fault.kind == "bad_deployment" and fault.deployment:
        start = onset_ms - rng.randint(1, 10) * MINUTE_MS - rng.randint(0, 59_000)
        events.append(_deployment(rng, world, fault.target, start, fault.deployment))
    unrelated = traps.get("unrelated_deployment")
    if unrelated is not None:
        start = onset_ms - rng.randint(0, 15) * MINUTE_MS - rng.randint(0, 59_000)
        kinds = ["CUSTOM_DEPLOYMENT"] + (
            ["PROCESS_VERSION_CHANGE"] if world.services[unrelated].instances else []
        )
        events.append(_deployment(rng, world, unrelated, start, rng.choice(kinds)))
    if fault.kind == "host_saturation" and rng.random() < 0.5:
        host = world.hosts[fault.target]
        start = onset_ms + rng.randint(3, 6) * MINUTE_MS
        properties = {"dt.event.group_label": "CPU saturation", "dt.event.is_rootcause_relevant": "true"}
        events.append(
            _event(rng, "CPU_SATURATED", "CPU saturation", host.id, host.name, start, properties=properties)
        )
    return events


def _symptom_kind(
    metrics: dict[tuple[str, str], list[float | None]], front: str, onset: int, opened: int
) -> str:
    """What the frontend shows most: a slowdown or more failures (Davis titles the problem by it)."""
    before = slice(max(0, onset - 90), onset - 30)
    after = slice(opened, MINUTES + 1)
    rt_before = _mean(metrics[(RESPONSE_TIME, front)][before]) or 1.0
    rt_after = _mean(metrics[(RESPONSE_TIME, front)][after]) or rt_before
    errors_before = _mean(metrics[(FAILURE_RATE, front)][before]) or 0.0
    errors_after = _mean(metrics[(FAILURE_RATE, front)][after]) or errors_before
    slower = rt_after / rt_before - 1
    failing = (errors_after - errors_before) / 3
    return "slowdown" if slower >= failing else "failures"


SYMPTOM_EVENTS = {
    "slowdown": ("SERVICE_SLOWDOWN", "Response time degradation", "PERFORMANCE"),
    "failures": ("SERVICE_ERROR_RATE_INCREASED", "Failure rate increase", "ERROR"),
}
CAUSE_EVENTS = {
    "latency": ("SERVICE_SLOWDOWN", "Response time degradation"),
    "errors": ("SERVICE_ERROR_RATE_INCREASED", "Failure rate increase"),
    "traffic_collapse": ("SERVICE_UNEXPECTED_LOW_LOAD", "Unexpected low load"),
    "host_saturation": ("CPU_SATURATED", "CPU saturation"),
}


def _finding(event: dict[str, Any], relevant: bool) -> dict[str, Any]:
    """An ``evidenceDetails`` entry of type EVENT, as the problem details show it."""
    return {
        "evidenceType": "EVENT",
        "displayName": event["title"],
        "entity": copy.deepcopy(event["entityId"]),
        "groupingEntity": None,
        "rootCauseRelevant": relevant,
        "eventId": event["eventId"],
        "eventType": event["eventType"],
        "data": copy.deepcopy(event),
        "startTime": event["startTime"],
        "endTime": event["endTime"],
    }


def _problem(
    rng: random.Random,
    world: World,
    plan: Plan,
    metrics: dict[tuple[str, str], list[float | None]],
    stamp: int,
    onset: int,
    opened: int,
    timestamps: list[int],
    events: list[dict[str, Any]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The problem Dynatrace opened on the frontend, and its opening event; in some cases Davis names the
    true cause (rootCauseEntity and a root-cause-relevant finding), in most it names none."""
    front = world.services[world.order[0]]
    event_type, title, severity = SYMPTOM_EVENTS[_symptom_kind(metrics, front.id, onset, opened)]
    davis = rng.random() < DAVIS_NAMES_CAUSE
    opening = _event(
        rng,
        event_type,
        title,
        front.id,
        front.name,
        stamp,
        properties={
            "dt.event.group_label": title,
            "dt.event.is_rootcause_relevant": "true" if davis and plan.truth == front.id else "false",
        },
    )
    findings = [_finding(opening, davis and plan.truth == front.id)]
    root = None
    if davis:
        cause_name = (
            world.services[plan.truth].name if plan.truth in world.services else world.hosts[plan.truth].name
        )
        root = _stub(plan.truth, cause_name)
        if plan.truth != front.id:
            findings.append(_finding(_cause_event(rng, plan, cause_name, timestamps, onset, events), True))
    problem = {
        "problemId": f"-{rng.randint(10**18, 9 * 10**18)}_{stamp}V2",
        "displayId": f"P-{rng.randint(2_400_000, 2_499_999)}",
        "title": title,
        "impactLevel": "SERVICES",
        "severityLevel": severity,
        "status": "OPEN",
        "affectedEntities": [_stub(front.id, front.name)],
        "impactedEntities": [_stub(front.id, front.name)],
        "rootCauseEntity": root,
        "managementZones": [],
        "entityTags": [],
        "problemFilters": [],
        "startTime": stamp,
        "endTime": -1,
        "evidenceDetails": {"totalCount": len(findings), "details": findings},
        "impactAnalysis": {
            "impacts": [
                {
                    "impactType": "SERVICE",
                    "impactedEntity": _stub(front.id, front.name),
                    "estimatedAffectedUsers": rng.randint(5, 5000),
                }
            ]
        },
        "recentComments": {"totalCount": 0, "comments": []},
    }
    return problem, opening


def _cause_event(
    rng: random.Random, plan: Plan, name: str, timestamps: list[int], onset: int, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """The event Davis holds against the cause: the deployment itself, or the cause's own anomaly (kept in
    the events list too, as Dynatrace would list it)."""
    fault = plan.fault
    if fault.kind == "bad_deployment":
        return next(event for event in events if event["eventType"] == fault.deployment)
    kind = fault.kind
    start = timestamps[min(onset + 2, MINUTES)] - MINUTE_MS
    existing = next((event for event in events if event["eventType"] == "CPU_SATURATED"), None)
    if kind == "host_saturation" and existing is not None:
        return existing
    event_type, title = CAUSE_EVENTS[kind]
    properties = {"dt.event.group_label": title, "dt.event.is_rootcause_relevant": "true"}
    event = _event(rng, event_type, title, plan.truth, name, start, properties=properties)
    events.append(event)
    return event
