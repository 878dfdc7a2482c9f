"""The walk that explains the symptom: which anomalous dependency below the impacted entity started it.

From each impacted component, follow the dependency edges (calls, runs on) to the components whose own
trouble can explain the one above: a slower or failing callee explains a slower or failing caller, a
saturated host the services on it, a callee that stopped taking requests its callers' errors. The
anomalous subgraph is what is reachable that way; its leaves (anomalous, with nothing anomalous below that
explains them) are where the trouble starts. A component without data is walked through, not stopped at,
and the path says so. Pure: no database, no network.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from borealis.rca.anomaly import RULES, Direction, Kind
from borealis.rca.evidence import Evidence, EvidenceKind, NotChecked, entity_type_of
from borealis.rca.plan import KEY_METRICS
from borealis.rca.topology import Components, is_external, reached_from

# A callee explains its caller only when its trouble began no later than the caller's (this much slack
# for the resolution of the series and the lag of propagation), and, for the same kind of trouble, when it
# is at least this share of the caller's (a caller's latency includes its callees', never the reverse).
ONSET_SLACK_MS = 3 * 60_000
# Trouble of another kind (a slower callee, a failing caller) is a weaker link: it must have begun no
# later than one resolution step after the caller's.
CROSS_KIND_SLACK_MS = 60_000
SAME_KIND_SHARE = 0.2
# A fall in traffic explains the callers' errors only when the callee all but stopped taking requests;
# a smaller fall is the consequence of a slower caller, not a cause.
COLLAPSE = -0.7


@dataclass(frozen=True)
class Anomaly:
    evidence_id: str
    metric_id: str
    kind: Kind
    direction: Direction
    magnitude: float
    delta: float
    change: float
    onset: int
    confidence: float

    @property
    def explains_upward(self) -> bool:
        """Trouble that travels to what depends on this component."""
        if self.kind is Kind.TRAFFIC:
            return self.direction is Direction.DOWN and self.change <= COLLAPSE
        return self.direction is Direction.UP


@dataclass
class Node:
    """One component as the metrics see it."""

    key: str
    anomalies: list[Anomaly] = field(default_factory=list)
    judged: bool = False
    # The kinds of series judged for it (a missing series leaves its kind unknown).
    kinds: set[Kind] = field(default_factory=set)
    impacted: bool = False
    external: bool = False
    measurable: bool = False
    unexamined: bool = False

    @property
    def explanatory(self) -> list[Anomaly]:
        return [a for a in self.anomalies if a.explains_upward]

    @property
    def anomalous(self) -> bool:
        return bool(self.anomalies)

    @property
    def suspect(self) -> bool:
        """A separate suspect when unknown: a service or a host, not a process of a service (which counts
        as that service)."""
        return not self.key.startswith(("PROCESS_GROUP_INSTANCE-", "PROCESS_GROUP-"))

    @property
    def unknown(self) -> bool:
        """Nothing is known of its health: no data, or not examined (a cap, a scope, an error)."""
        return self.measurable and (self.unexamined or not self.judged)

    def blind_to(self, above: Node) -> bool:
        """It cannot be told whether this node explains ``above``: it has no series of the kind of
        trouble ``above`` shows (a service whose failure rate is missing, below a failing caller)."""
        if not self.measurable or not self.judged or self.anomalous:
            return False
        wanted = {a.kind for a in above.anomalies if a.kind in (Kind.LATENCY, Kind.ERRORS)}
        return bool(wanted) and self.kinds.isdisjoint(wanted) and Kind.SATURATION not in self.kinds

    @property
    def onset(self) -> int | None:
        chosen = self.explanatory or self.anomalies
        return min((a.onset for a in chosen), default=None)

    @property
    def magnitude(self) -> float:
        chosen = self.explanatory or self.anomalies
        return max((a.magnitude * (0.5 + 0.5 * a.confidence) for a in chosen), default=0.0)

    def strongest(self) -> Anomaly | None:
        chosen = self.explanatory or self.anomalies
        return max(chosen, key=lambda a: (a.magnitude, -a.onset), default=None)


def explains(below: Node, above: Node) -> bool:
    """Whether ``below``'s own trouble can explain ``above``'s (``above`` depends on ``below``).

    Only a slower or failing caller is explained from below: a caller's traffic flows down, never up, and
    a host's saturation is its own. A callee explains a slower or failing caller when its trouble began no
    later and, for the same kind of trouble, is not a mere fraction of the caller's; a saturated host
    explains what runs on it; a callee that stopped taking requests explains its callers' failures."""
    causes = below.explanatory
    if not causes:
        return False
    if not above.anomalies:
        return True
    explainable = [
        a for a in above.anomalies if a.kind in (Kind.LATENCY, Kind.ERRORS) and a.direction is Direction.UP
    ]
    if not explainable:
        return False
    onset = min(a.onset for a in explainable)
    for cause in causes:
        if cause.onset > onset + ONSET_SLACK_MS:
            continue
        same = [a for a in explainable if a.kind is cause.kind]
        if cause.kind in (Kind.LATENCY, Kind.ERRORS) and same:
            if any(cause.delta >= SAME_KIND_SHARE * a.delta for a in same):
                return True
            continue
        if cause.kind in (Kind.LATENCY, Kind.ERRORS) and cause.onset > onset + CROSS_KIND_SLACK_MS:
            continue
        if cause.kind is Kind.TRAFFIC and not any(a.kind is Kind.ERRORS for a in explainable):
            continue
        return True
    return False


@dataclass
class WalkFacts:
    """The anomalous subgraph below the impacted components, its leaves and what it could not see."""

    nodes: dict[str, Node]
    graph: dict[str, set[str]]
    impacted: list[str]
    # Reachable through explaining (or unknown) dependencies, with the way back up towards the symptom.
    parent: dict[str, str] = field(default_factory=dict)
    # Every edge of the subgraph (``above`` depends on ``below`` and is explained by it, or walked past).
    edges: set[tuple[str, str]] = field(default_factory=set)
    depth: dict[str, int] = field(default_factory=dict)
    reached_by: dict[str, set[str]] = field(default_factory=dict)
    leaves: list[str] = field(default_factory=list)
    # Unknown components passed through on the way to a node, and unknown dependencies of a node.
    gaps_on_path: dict[str, list[str]] = field(default_factory=dict)
    unknown_below: dict[str, list[str]] = field(default_factory=dict)
    blind_ends: list[str] = field(default_factory=list)
    # Everything the impacted components depend on, through any entity (anomalous or not).
    downstream: set[str] = field(default_factory=set)

    @property
    def applies(self) -> bool:
        """The walk has something to say only when the impacted components' own metrics were judged."""
        return any(self.nodes[k].judged for k in self.impacted if k in self.nodes)

    @property
    def subgraph(self) -> set[str]:
        return set(self.depth)

    def path_to(self, key: str) -> list[str]:
        """From the symptom down to ``key``."""
        path = [key]
        while path[-1] in self.parent:
            path.append(self.parent[path[-1]])
        return list(reversed(path))

    def is_leaf(self, key: str) -> bool:
        return key in self.leaves

    def below(self, key: str) -> set[str]:
        """What lies below ``key`` in the subgraph: the trouble it may be explained by."""
        found: set[str] = set()
        frontier = [key]
        while frontier:
            current = frontier.pop()
            for above, under in self.edges:
                if above == current and under not in found:
                    found.add(under)
                    frontier.append(under)
        return found


def walk(
    evidence: Sequence[Evidence],
    not_checked: Sequence[NotChecked],
    components: Components,
    graph: dict[str, set[str]],
    impacted: Iterable[str],
) -> WalkFacts:
    """The anomalous subgraph of the incident from its evidence."""
    nodes = _nodes(evidence, not_checked, components, graph, impacted)
    starts = sorted({components.find(e) for e in impacted})
    facts = WalkFacts(nodes=nodes, graph=graph, impacted=starts)
    for start in starts:
        facts.downstream |= reached_from(graph, start) - {start}
    # The node whose trouble a dependency has to explain: the last anomalous one above it.
    reference: dict[str, str] = {}
    queue: deque[str] = deque()
    for start in starts:
        facts.depth[start] = 0
        facts.reached_by[start] = {start}
        reference[start] = start
        queue.append(start)
    while queue:
        above = queue.popleft()
        judge = nodes[reference[above]]
        for below in sorted(graph.get(above, ())):
            node = nodes[below]
            if explains(node, judge):
                via = "explains"
            elif not node.anomalous and not node.measurable:
                via = "structure"  # a process group: walked past, its instances carry the metrics
            elif (node.unknown or node.blind_to(judge)) and not node.anomalous:
                via = "gap"
            else:
                continue
            facts.edges.add((above, below))
            facts.reached_by.setdefault(below, set()).update(facts.reached_by[above])
            if below in facts.depth:
                continue
            facts.depth[below] = facts.depth[above] + 1
            facts.parent[below] = above
            reference[below] = below if via == "explains" else reference[above]
            gaps = list(facts.gaps_on_path.get(above, []))
            if via == "gap":
                gaps.append(below)
            facts.gaps_on_path[below] = gaps
            queue.append(below)
    anomalous_below = _anomalous_below(facts)
    facts.leaves = sorted(key for key in facts.depth if nodes[key].anomalous and not anomalous_below.get(key))
    # Where the walk went blind with nothing anomalous further down: the cause may hide there.
    facts.blind_ends = sorted(
        key
        for key in facts.depth
        if key in facts.gaps_on_path.get(key, []) and nodes[key].suspect and not anomalous_below.get(key)
    )
    for key in facts.depth:
        facts.unknown_below[key] = sorted(
            b for b in graph.get(key, ()) if (nodes[b].unknown and nodes[b].suspect) or b in facts.blind_ends
        )
    return facts


def _anomalous_below(facts: WalkFacts) -> dict[str, bool]:
    """For each node of the subgraph, whether an anomalous node hangs below it in the subgraph."""
    children: dict[str, list[str]] = {}
    for above, below in facts.edges:
        children.setdefault(above, []).append(below)
    result: dict[str, bool] = {}

    def visit(key: str) -> bool:
        if key in result:
            return result[key]
        result[key] = False
        found = False
        for child in children.get(key, []):
            if facts.nodes[child].anomalous or visit(child):
                found = True
        result[key] = found
        return found

    for key in facts.depth:
        visit(key)
    return result


def _nodes(
    evidence: Sequence[Evidence],
    not_checked: Sequence[NotChecked],
    components: Components,
    graph: dict[str, set[str]],
    impacted: Iterable[str],
) -> dict[str, Node]:
    nodes: dict[str, Node] = {}

    def node(entity_id: str) -> Node:
        key = components.find(entity_id)
        found = nodes.get(key)
        if found is None:
            found = nodes[key] = Node(key=key)
        if entity_type_of(entity_id) in KEY_METRICS:
            found.measurable = True
        return found

    for source, targets in graph.items():
        node(source)
        for target in targets:
            node(target)
    for entity_id in impacted:
        node(entity_id).impacted = True
    for item in evidence:
        if item.kind is EvidenceKind.ENTITY and item.entity and is_external(item.data):
            node(item.entity.id).external = True
        if item.kind is not EvidenceKind.METRIC:
            continue
        if item.entity is None:
            metric_ids = [m for m in item.data.get("metricIds") or [] if m in RULES]
            missing = item.data.get("missing") or {}
            for entity_id in item.data.get("healthy") or []:
                node(entity_id).judged = True
                absent = set(missing.get(entity_id) or [])
                node(entity_id).kinds |= {RULES[m].kind for m in metric_ids if m not in absent}
            for entity_id in item.data.get("noData") or []:
                node(entity_id)
            continue
        target = node(item.entity.id)
        if item.data.get("baseline") is not None:
            target.judged = True
            if item.data.get("kind"):
                target.kinds.add(Kind(item.data["kind"]))
        anomaly = _anomaly(item)
        if anomaly is not None:
            target.anomalies.append(anomaly)
    for gap in not_checked:
        for entity_id in gap.entity_ids:
            node(entity_id).unexamined = True
    return nodes


def _anomaly(item: Evidence) -> Anomaly | None:
    data = item.data
    if not data.get("anomalous") or not data.get("kind") or data.get("onset") is None:
        return None
    baseline, level = data.get("baseline"), data.get("level")
    change = data.get("change")
    return Anomaly(
        evidence_id=item.id,
        metric_id=str(data.get("metricId")),
        kind=Kind(data["kind"]),
        direction=Direction(data.get("direction") or "up"),
        magnitude=float(data.get("magnitude") or 0.0),
        delta=float(level - baseline) if baseline is not None and level is not None else 0.0,
        change=float(change) if change is not None else float("inf"),
        onset=int(data["onset"]),
        confidence=min(1.0, int(data.get("baselinePoints") or 0) / 20),
    )
