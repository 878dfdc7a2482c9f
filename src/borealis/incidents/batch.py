"""What one correlation call works with: the problems as the lifecycle step left them, and what the call
reads once and reuses for all of them (settings, topology, locks, attachments, incidents, facts, and its
``Changes``: the candidate index as it sees it and the timeline rows it holds back).

A ``CorrelationBatch`` lives for one call (one problem, or a whole ingest batch) in one transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.errors import NotFound
from borealis.incidents.changes import Changes
from borealis.incidents.correlation import CorrelationSettings, ProblemFacts
from borealis.incidents.index import choose, facts_from, keys_for, load_facts, lookup_keys
from borealis.incidents.models import Incident, IncidentProblem
from borealis.incidents.service import get_settings, lock_workspace
from borealis.incidents.topology import MAX_REACHED_ENTITIES, Reach, Topology, reach, topology_for
from borealis.problems.models import Problem

# A batch reads ahead the facts and incidents of its candidates only when they are this few.
_PREFETCH_FACTS = 2_000
# Ids per IN list when reading many problems.
_CHUNK = 500


@dataclass(slots=True)
class ProblemPicture:
    """The columns of a problem that correlation and an incident's picture read, as just written by the
    lifecycle step (never the details document)."""

    id: int
    workspace_id: str
    pid: str
    display_id: str | None
    title: str | None
    state: str
    priority: str
    root_cause_entity_id: str | None
    root_cause_entity_name: str | None
    root_cause_entity_type: str | None
    impacted_entities: list[dict[str, Any]]
    tags: list[dict[str, Any]]
    management_zones: list[dict[str, Any]]
    start_time: datetime | None
    first_received_at: datetime
    end_time: datetime | None

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> ProblemPicture:
        """From a row (a mapping of problem columns)."""
        return cls(**{name: row[name] for name in _PICTURE_FIELDS})


_PICTURE_FIELDS = tuple(ProblemPicture.__dataclass_fields__)
_PICTURE_SELECT = sa.select(*(Problem.__table__.c[name] for name in _PICTURE_FIELDS))
_VERSIONED_SELECT = _PICTURE_SELECT.add_columns(Problem.__table__.c.notification_count)


@dataclass(frozen=True, slots=True)
class ProblemChange:
    """A problem as the lifecycle step left it (``row``) and what changed: ``created`` (the problem is
    new), ``correlate`` (something correlation or the incident's picture reads changed),
    ``previous_keys``, its candidate-index keys before the change (None when created), and ``states``,
    the states it took meanwhile in order with when each came (microseconds since the epoch), from the
    one its incident saw (at 0) or, for a new problem, the one it came in."""

    row: Mapping[str, Any]
    created: bool = False
    correlate: bool = True
    previous_keys: frozenset[str] | None = None
    states: tuple[tuple[str, int], ...] = ()
    # False when later states are left for another time: the row's state is then not reached yet.
    final: bool = True

    @property
    def problem_id(self) -> int:
        return self.row["id"]

    def matters(self) -> bool:
        return self.created or self.correlate


def picture_changed(previous: Mapping[str, Any], row: Mapping[str, Any]) -> bool:
    """Whether anything correlation or an incident's picture reads differs between two problem rows."""
    return any(previous[name] != row[name] for name in _PICTURE_FIELDS)


def index_keys(row: Mapping[str, Any]) -> list[str]:
    """The candidate-index keys of a problem row, sorted."""
    return sorted(keys_for(facts_from(ProblemPicture.of(row))))


def load_problem(*, db_session: Session, problem_id: int) -> ProblemPicture:
    """The problem as just written by the lifecycle step (the columns correlation reads, the details
    document left out); raises NotFound for an unknown id."""
    row = db_session.execute(_PICTURE_SELECT.where(Problem.id == problem_id)).mappings().first()
    if row is None:
        raise NotFound(f"alert {problem_id} does not exist")
    return ProblemPicture.of(row)


def pictures(*, db_session: Session, problem_ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
    """The columns correlation reads of each of these problems that exists, by id, with the problem's
    ``notification_count`` (which changes it has seen)."""
    found: dict[int, Mapping[str, Any]] = {}
    for start in range(0, len(problem_ids), _CHUNK):
        chunk = problem_ids[start : start + _CHUNK]
        for row in db_session.execute(_VERSIONED_SELECT.where(Problem.id.in_(chunk))).mappings():
            found[row["id"]] = row
    return found


class _MemoTopology:
    """The topology as one unit of work sees it: each entity's neighbours are asked for once."""

    def __init__(self, topology: Topology) -> None:
        self._topology = topology
        self._known: dict[str, Collection[str]] = {}

    def neighbors(self, entity_ids: Collection[str]) -> Mapping[str, Collection[str]]:
        missing = [entity for entity in entity_ids if entity not in self._known]
        if missing:
            found = self._topology.neighbors(missing)
            for entity in missing:
                self._known[entity] = found.get(entity, ())
        return {entity: self._known[entity] for entity in entity_ids if self._known[entity]}


@dataclass
class CorrelationBatch:
    """What one correlation call (a problem, or a whole ingest batch) reads once and reuses: the workspaces'
    settings and topology, which workspaces' locks it holds, and where its changes go. It lives for one call
    in one transaction."""

    changes: Changes
    topology: Topology | None = None
    settings: dict[str, CorrelationSettings] = field(default_factory=dict)
    topologies: dict[str, Topology] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    attachments: dict[int, IncidentProblem | None] = field(default_factory=dict)
    # Held for the whole call (the session's identity map keeps clean objects only weakly).
    incidents: dict[int, Incident] = field(default_factory=dict)
    facts: dict[int, ProblemFacts] = field(default_factory=dict)

    @property
    def db_session(self) -> Session:
        return self.changes.db_session

    def lock(self, workspace_id: str) -> None:
        if workspace_id not in self.locked:
            lock_workspace(db_session=self.db_session, workspace_id=workspace_id)
            self.locked.add(workspace_id)

    def settings_of(self, workspace_id: str) -> CorrelationSettings:
        settings = self.settings.get(workspace_id)
        if settings is None:
            settings = self.settings[workspace_id] = get_settings(
                db_session=self.db_session, workspace_id=workspace_id
            )
        return settings

    def topology_of(self, workspace_id: str) -> Topology:
        if self.topology is not None:
            return self.topology
        topology = self.topologies.get(workspace_id)
        if topology is None:
            topology = _MemoTopology(topology_for(self.db_session, workspace_id))
            self.topologies[workspace_id] = topology
        return topology

    def prefetch_topology(self, problems: Sequence[ProblemPicture]) -> None:
        """Ask the topology about the entities of all these problems together (a query per hop for a
        whole batch instead of per problem); the walk of each problem then reads the memo."""
        by_user: dict[str, set[str]] = defaultdict(set)
        for problem in problems:
            by_user[problem.workspace_id] |= self.facts_of(problem).entities
        for workspace_id, entities in by_user.items():
            settings = self.settings_of(workspace_id)
            if not entities or not settings.topology or settings.max_hops <= 0:
                continue
            topology = self.topology_of(workspace_id)
            frontier: set[str] = entities
            for _hop in range(settings.max_hops):
                if not frontier or len(frontier) > MAX_REACHED_ENTITIES:
                    break
                adjacent = topology.neighbors(sorted(frontier))
                frontier = {entity for near in adjacent.values() for entity in near} - entities
                entities = entities | frontier

    def prefetch_candidates(self, problems: Sequence[ProblemPicture]) -> None:
        """Copy the candidate index once for the keys of all these new problems, and read the facts and
        incidents it leads to, so that correlating each one needs no query of its own."""
        keys_of: dict[str, set[str]] = defaultdict(set)
        facts_of: dict[str, list[tuple[ProblemFacts, dict[str, Reach]]]] = defaultdict(list)
        for problem in problems:
            facts = self.facts_of(problem)
            reached = self.reached(problem.workspace_id, facts)
            strong, weak = lookup_keys(facts, self.settings_of(problem.workspace_id), reached)
            keys_of[problem.workspace_id] |= strong | weak
            facts_of[problem.workspace_id].append((facts, reached))
        index = self.changes.index
        if not index.prefetch(keys_of):
            return
        # What the new problems will score against, as the index stands now (later additions are
        # this batch's own problems, whose facts come with them).
        wanted: dict[int, int] = {}
        for workspace_id, items in facts_of.items():
            if not index.copies(workspace_id):
                continue
            settings = self.settings_of(workspace_id)
            for facts, reached in items:
                wanted.update(
                    choose(
                        index.hits(workspace_id=workspace_id, facts=facts, settings=settings, reached=reached)
                    )
                )
        if len(wanted) <= _PREFETCH_FACTS:
            load_facts(self.db_session, list(wanted), self.facts)
            self.load_incidents(sorted(set(wanted.values())))

    def load_incidents(self, incident_ids: Sequence[int]) -> dict[int, Incident]:
        """The incidents with these ids (read once per call)."""
        missing = [incident_id for incident_id in incident_ids if incident_id not in self.incidents]
        if missing:
            for incident in self.db_session.scalars(_INCIDENTS, {"ids": missing}):
                self.incidents[incident.id] = incident
        return {
            incident_id: self.incidents[incident_id]
            for incident_id in incident_ids
            if incident_id in self.incidents
        }

    def facts_of(self, problem: ProblemPicture) -> ProblemFacts:
        """The problem's facts (the same as its stored row's: the lifecycle step already wrote it)."""
        facts = self.facts.get(problem.id)
        if facts is None:
            facts = self.facts[problem.id] = facts_from(problem)
        return facts

    def reached(self, workspace_id: str, facts: ProblemFacts) -> dict[str, Reach]:
        """What the topology reaches from the problem's entities, within the workspace's hops."""
        settings = self.settings_of(workspace_id)
        if not (settings.topology and settings.max_hops > 0 and facts.entities):
            return {}
        return reach(self.topology_of(workspace_id), facts.entities, max_hops=settings.max_hops)

    def attachment(self, problem_id: int) -> IncidentProblem | None:
        if problem_id in self.attachments:
            return self.attachments[problem_id]
        return self.db_session.get(IncidentProblem, problem_id)


_INCIDENTS = sa.select(Incident).where(Incident.id.in_(sa.bindparam("ids", expanding=True)))
