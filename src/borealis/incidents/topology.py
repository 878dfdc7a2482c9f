"""The entity topology that correlation may use: an interface, and the walk over it.

Correlation must work without any topology (entities and root causes alone can group), so the default is
``NO_TOPOLOGY``. The enrichment work fills an entity cache from the Dynatrace entities API and provides a
``Topology`` over it (calls, runs on, process of: relations are followed in both directions).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session

from borealis.dynatrace.entities import cached_topology


class Topology(Protocol):
    def neighbors(self, entity_ids: Collection[str]) -> Mapping[str, Collection[str]]:
        """The entities one relation away from each given entity (either direction); unknown ids map to
        nothing. Called once per hop with the whole frontier, so one query per hop suffices."""
        ...


class _NoTopology:
    def neighbors(self, entity_ids: Collection[str]) -> Mapping[str, Collection[str]]:
        return {}


NO_TOPOLOGY: Topology = _NoTopology()


class StaticTopology:
    """A topology from a list of relations, for tests, scenarios and benchmarks."""

    def __init__(self, relations: Iterable[tuple[str, str]] = ()) -> None:
        self._adjacent: dict[str, set[str]] = {}
        for left, right in relations:
            self._adjacent.setdefault(left, set()).add(right)
            self._adjacent.setdefault(right, set()).add(left)

    def neighbors(self, entity_ids: Collection[str]) -> Mapping[str, Collection[str]]:
        return {entity: self._adjacent[entity] for entity in entity_ids if entity in self._adjacent}


@dataclass(frozen=True)
class Reach:
    """How far an entity is from the problem being correlated, and from which of its entities."""

    hops: int
    origin: str


# Stops a walk through a dense neighbourhood (a host with hundreds of processes) from growing unbounded.
MAX_REACHED_ENTITIES = 2000


def reach(
    topology: Topology, origins: Collection[str], *, max_hops: int, limit: int = MAX_REACHED_ENTITIES
) -> dict[str, Reach]:
    """Entities within ``max_hops`` of the origins (the origins themselves excluded), nearest first.

    Deterministic: the frontier is walked in sorted order, so the same graph gives the same origins.
    """
    seen: set[str] = set(origins)
    reached: dict[str, Reach] = {}
    frontier: dict[str, str] = {entity: entity for entity in sorted(origins)}
    for hops in range(1, max_hops + 1):
        if not frontier:
            break
        adjacent = topology.neighbors(list(frontier))
        next_frontier: dict[str, str] = {}
        for entity in sorted(frontier):
            for neighbor in sorted(adjacent.get(entity, ())):
                if neighbor in seen:
                    continue
                seen.add(neighbor)
                reached[neighbor] = Reach(hops=hops, origin=frontier[entity])
                next_frontier[neighbor] = frontier[entity]
                if len(reached) >= limit:
                    return reached
        frontier = next_frontier
    return reached


# Who provides the topology for a workspace's problems: the entity cache, unless a test installs another.
TopologySource = Callable[[Session, str], Topology]
_sources: list[TopologySource] = []


def use_topology_source(source: TopologySource | None) -> None:
    """Install the function that builds a workspace's ``Topology`` from a session (None: the entity cache)."""
    _sources.clear()
    if source is not None:
        _sources.append(source)


def topology_for(db_session: Session, workspace_id: str) -> Topology:
    """The workspace's topology: the installed source's, else the entity cache of the workspace's connection
    (``NO_TOPOLOGY`` without one)."""
    if _sources:
        return _sources[0](db_session, workspace_id)
    return cached_topology(db_session, workspace_id) or NO_TOPOLOGY
