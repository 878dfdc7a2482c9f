"""The estate of a generated case: a layered service graph on shared hosts, with its usual figures.

Under one customer-facing service sit 2-5 layers of application services, then shared databases, caches,
queues and external services; every service has a caller. Each call carries the share of the caller's
requests that make it, how many calls such a request makes, how much of the callee's failures the caller
passes on, and a lag. ``World`` draws all of it from the case's random stream, so the order of the draws
is part of what a seed means: change it and every seed gives another case.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

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
