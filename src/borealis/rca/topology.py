"""Entity topology from the evidence: who depends on whom, and which entities count as one suspect.

Dynatrace relationships read from an entity's ``fromRelationships`` (X -rel-> Y) and ``toRelationships``
(Y -rel-> X). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

from borealis.rca.evidence import Evidence, EvidenceKind, entity_ref, entity_type_of

# Relationship names as they appear in an entity's ``fromRelationships`` (X -rel-> Y):
# X depends on Y (a failure of Y reaches X).
DEPENDS_FORWARD = frozenset(
    {
        "calls",
        "runsOn",
        "runsOnHost",
        "runsOnProcessGroupInstance",
        "isProcessOf",
        "isCgiOfHost",
        "isPgiOfCgi",
    }
)
# Y depends on X: a disk or network interface is part of its host.
DEPENDS_REVERSE = frozenset({"isDiskOf", "isNetworkInterfaceOf", "isHostOfContainer"})
# X and Y are one component (a process and its group, a service instance and its service).
SAME_COMPONENT = frozenset({"isInstanceOf"})

MAX_DEPTH = 6


class Components:
    """Union-find over entity ids: a process group and its instances count as one suspect."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self._parent.setdefault(item, item)
        root = item
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[item] != root:
            self._parent[item], item = root, self._parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Deterministic: the smaller id becomes the root.
            low, high = sorted((ra, rb))
            self._parent[high] = low

    def members(self) -> dict[str, set[str]]:
        groups: dict[str, set[str]] = {}
        for item in list(self._parent):
            groups.setdefault(self.find(item), set()).add(item)
        return groups


def _related_ids(raw: object) -> list[str]:
    ids = []
    for target in raw if isinstance(raw, list) else []:
        ref = entity_ref(target)
        if ref:
            ids.append(ref.id)
    return ids


def dependencies(evidence: Sequence[Evidence], components: Components) -> dict[str, set[str]]:
    """Dependency edges (X depends on Y) between raw entity ids, from the entity evidence."""
    depends: dict[str, set[str]] = {}
    for item in evidence:
        if item.kind is not EvidenceKind.ENTITY or item.entity is None:
            continue
        me = item.entity.id
        for name, targets in (item.data.get("fromRelationships") or {}).items():
            for other in _related_ids(targets):
                if name in DEPENDS_FORWARD:
                    depends.setdefault(me, set()).add(other)
                elif name in DEPENDS_REVERSE:
                    depends.setdefault(other, set()).add(me)
                elif name in SAME_COMPONENT and _instance_of(me, other):
                    components.union(me, other)
        for name, sources in (item.data.get("toRelationships") or {}).items():
            for other in _related_ids(sources):
                if name in DEPENDS_FORWARD:
                    depends.setdefault(other, set()).add(me)
                elif name in DEPENDS_REVERSE:
                    depends.setdefault(me, set()).add(other)
                elif name in SAME_COMPONENT and _instance_of(other, me):
                    components.union(me, other)
    return depends


def depends_on(entity: dict) -> list[tuple[str, str]]:
    """What one entity document (with its relationships) depends on, with the relationship's name: the
    next step of the walk. ``isInstanceOf`` is not followed (a process group adds no metrics)."""
    found: dict[str, str] = {}
    for name, targets in (entity.get("fromRelationships") or {}).items():
        if name in DEPENDS_FORWARD:
            for target in _related_ids(targets):
                found.setdefault(target, name)
    for name, sources in (entity.get("toRelationships") or {}).items():
        if name in DEPENDS_REVERSE:
            for source in _related_ids(sources):
                found.setdefault(source, name)
    return list(found.items())


def is_external(entity: dict) -> bool:
    """A service the team cannot fix, often only the caller's view of a failing call: Dynatrace marks it
    ``isExternalService`` or gives it the serviceType External or Opaque."""
    properties = entity.get("properties") or {}
    if not isinstance(properties, dict):
        return False
    flag = properties.get("isExternalService")
    kind = str(properties.get("serviceType") or "").upper()
    return flag is True or str(flag).lower() == "true" or kind in ("EXTERNAL", "OPAQUE", "EXTERNAL_SERVICE")


def _instance_of(instance: str, group: str) -> bool:
    """A process of its process group, a service instance of its service; not a host of a host group
    (hosts of one group are separate suspects)."""
    return entity_type_of(instance) == f"{entity_type_of(group)}_INSTANCE"


def reaches(graph: dict[str, set[str]], start: str, goal: str, *, max_depth: int = MAX_DEPTH) -> bool:
    """Whether ``goal`` lies within ``max_depth`` dependency steps of ``start``."""
    frontier, seen = {start}, {start}
    for _ in range(max_depth):
        frontier = {n for f in frontier for n in graph.get(f, ())} - seen
        if goal in frontier:
            return True
        if not frontier:
            return False
        seen |= frontier
    return False


def reached_from(graph: dict[str, set[str]], origin: str, *, max_depth: int = MAX_DEPTH) -> set[str]:
    """``origin`` and everything it depends on within ``max_depth`` steps."""
    frontier, seen = {origin}, {origin}
    for _ in range(max_depth):
        frontier = {n for f in frontier for n in graph.get(f, ())} - seen
        if not frontier:
            break
        seen |= frontier
    return seen
