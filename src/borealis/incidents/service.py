"""Incident operations: correlation at ingest, the incident lifecycle, and manual actions.

Callers own the transaction: these functions flush, never commit. Everything that changes a user's
incidents first takes that user's correlation lock (``lock_user``), so concurrent deliveries are
correlated one at a time and a storm ends like the same problems arriving one by one. A new problem
joins the best related open incident and folds in any other open incident it relates to, which makes
the grouping the connected components of the "related" graph whatever the arrival order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, load_only

from borealis.auth.models import User
from borealis.db import utcnow
from borealis.errors import Conflict, InvalidInput, NotFound
from borealis.incidents.correlation import (
    Candidate,
    CorrelationSettings,
    IncidentMatch,
    ProblemFacts,
    related_incidents,
    title_key,
    weak_signals_can_group,
)
from borealis.incidents.models import (
    OPEN,
    RESOLVED,
    CorrelationSettingsRow,
    Incident,
    IncidentEvent,
    IncidentKey,
    IncidentProblem,
)
from borealis.incidents.topology import MAX_REACHED_ENTITIES, Reach, Topology, reach, topology_for
from borealis.problems.models import ENDED_STATES, PRIORITIES, Problem

# Bounded work per ingest: key rows read, problems scored per incident and in all.
MAX_KEY_ROWS = 5000
MAX_CANDIDATES_PER_INCIDENT = 12
MAX_CANDIDATES = 300
MAX_AFFECTED_ENTITIES = 100
MAX_SEARCH_TEXT = 8000

ENTITY_KEY, TAG_KEY, ZONE_KEY, TITLE_KEY = "e:", "t:", "z:", "n:"
_PRIORITY_RANK = {name: rank for rank, name in enumerate(PRIORITIES)}

# The columns correlation reads: never the details document.
_FACT_COLUMNS = (
    Problem.id,
    Problem.display_id,
    Problem.pid,
    Problem.title,
    Problem.root_cause_entity_id,
    Problem.impacted_entities,
    Problem.tags,
    Problem.management_zones,
    Problem.start_time,
    Problem.first_received_at,
)

# What an incident's picture is made of (``_absorb``).
_PICTURE_COLUMNS = (
    *_FACT_COLUMNS,
    Problem.state,
    Problem.priority,
    Problem.root_cause_entity_name,
    Problem.root_cause_entity_type,
)


_keys: sa.Table = IncidentKey.__table__  # type: ignore[assignment]


# -- locking and settings ---------------------------------------------------------------------------


def lock_user(*, db_session: Session, user_id: str) -> None:
    """Serialize correlation and incident changes per user until the transaction ends.

    PostgreSQL: a ``FOR NO KEY UPDATE`` lock on the user's row (it does not block inserts that merely
    reference the user). SQLite: writers already hold the database write lock from BEGIN IMMEDIATE.
    """
    if db_session.get_bind().dialect.name == "postgresql":
        db_session.execute(sa.select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def get_settings(*, db_session: Session, user_id: str) -> CorrelationSettings:
    """The user's correlation settings, or the defaults when they never changed them."""
    row = db_session.get(CorrelationSettingsRow, user_id)
    return row.to_settings() if row is not None else CorrelationSettings()


def put_settings(*, db_session: Session, user_id: str, settings: CorrelationSettings) -> CorrelationSettings:
    """Store the user's correlation settings; returns them as stored."""
    row = db_session.get(CorrelationSettingsRow, user_id)
    if row is None:
        row = CorrelationSettingsRow(user_id=user_id)
        db_session.add(row)
    for name in CorrelationSettings.__dataclass_fields__:
        setattr(row, name, getattr(settings, name))
    db_session.flush()
    return row.to_settings()


# -- facts and keys ---------------------------------------------------------------------------------


def _tag_text(tag: dict[str, Any]) -> str | None:
    key = (tag.get("key") or "").strip()
    if not key:
        return None
    text = f"{key}:{tag['value']}" if tag.get("value") not in (None, "") else key
    context = tag.get("context")
    return f"[{context}]{text}" if context and context != "CONTEXTLESS" else text


def facts_from(row: Any) -> ProblemFacts:
    """Correlation facts of a problem (an ORM row or a row of ``_FACT_COLUMNS``)."""
    entities = frozenset(
        item["entityId"]
        for item in row.impacted_entities or []
        if isinstance(item, dict) and item.get("entityId")
    )
    tags = frozenset(filter(None, (_tag_text(tag) for tag in row.tags or [] if isinstance(tag, dict))))
    zones = frozenset(
        zone.get("name") or zone.get("id")
        for zone in row.management_zones or []
        if isinstance(zone, dict) and (zone.get("name") or zone.get("id"))
    )
    return ProblemFacts(
        problem_id=str(row.id),
        display_id=row.display_id or f"PID {row.pid}",
        title=row.title or "",
        root_cause_entity=row.root_cause_entity_id or None,
        impacted_entities=entities,
        tags=tags,
        management_zones=zones,
        # Dynatrace's start; the first receipt only when Dynatrace gave no time at all.
        start_time=row.start_time or row.first_received_at,
    )


def keys_for(facts: ProblemFacts) -> set[str]:
    """The candidate-index keys of a problem: its entity ids, tags, zones and title words."""
    keys = {ENTITY_KEY + entity for entity in facts.entities}
    keys |= {TAG_KEY + tag for tag in facts.tags}
    keys |= {ZONE_KEY + zone for zone in facts.management_zones}
    title = title_key(facts.title)
    if title:
        keys.add(TITLE_KEY + title)
    return {key[:300] for key in keys}


def _lookup_keys(
    facts: ProblemFacts, settings: CorrelationSettings, reached: dict[str, Reach]
) -> tuple[set[str], set[str]]:
    """Keys to look up: strong ones (entities, also those the topology reaches) and weak ones."""
    strong: set[str] = set()
    if settings.root_cause or settings.entities or settings.topology:
        strong = {ENTITY_KEY + entity for entity in facts.entities}
    if settings.topology:
        strong |= {ENTITY_KEY + entity for entity in reached}
    weak: set[str] = set()
    if not weak_signals_can_group(settings):
        return {key[:300] for key in strong}, weak
    if settings.tags:
        weak |= {TAG_KEY + tag for tag in facts.tags}
    if settings.management_zones:
        weak |= {ZONE_KEY + zone for zone in facts.management_zones}
    title = title_key(facts.title)
    if settings.title and title:
        weak.add(TITLE_KEY + title)
    return {key[:300] for key in strong}, {key[:300] for key in weak} - strong


# -- candidates and correlation ---------------------------------------------------------------------


def find_candidates(
    *,
    db_session: Session,
    user_id: str,
    facts: ProblemFacts,
    settings: CorrelationSettings,
    reached: dict[str, Reach],
    known: dict[int, ProblemFacts] | None = None,
) -> list[Candidate]:
    """Problems of open incidents that share an index key with ``facts``: through the index only, and
    at most ``MAX_CANDIDATES`` of them, those sharing the most strong keys first. Facts already in
    ``known`` are not read again (and those read are added to it)."""
    incident_of = _choose(_key_hits(db_session, user_id, facts, settings, reached))
    if not incident_of:
        return []
    known = {} if known is None else known
    _load_facts(db_session, list(incident_of), known)
    return [
        Candidate(incident_id=incident_id, incident_rank=(incident_id,), facts=known[problem_id])
        for problem_id, incident_id in sorted(incident_of.items())
        if problem_id in known
    ]


def _key_hits(
    db_session: Session,
    user_id: str,
    facts: ProblemFacts,
    settings: CorrelationSettings,
    reached: dict[str, Reach],
) -> dict[int, list[int]]:
    """Problem id -> [incident id, strong key hits, weak key hits] of the problems (other than this
    one) that share an index key with ``facts``; from the batch's copy of the index when it has them."""
    strong, weak = _lookup_keys(facts, settings, reached)
    index = db_session.info.get(_KEY_INDEX, {}).get(user_id)
    if index is not None and not (strong <= index.keys() and weak <= index.keys()):
        index = None
    hits: dict[int, list[int]] = {}
    for keys, slot in ((strong, 1), (weak, 2)):
        for chunk in _chunks(sorted(keys), 500):
            if index is None:
                rows = db_session.execute(
                    _KEY_HITS, {"user_id": user_id, "keys": chunk, "limit": MAX_KEY_ROWS}
                ).all()
            else:
                # As the query would answer: ordered by incident, then problem, and as many.
                rows = sorted((row for key in chunk for row in index[key]), key=lambda row: (row[1], row[0]))[
                    :MAX_KEY_ROWS
                ]
            for problem_id, incident_id in rows:
                hit = hits.setdefault(problem_id, [incident_id, 0, 0])
                hit[slot] += 1
    hits.pop(int(facts.problem_id), None)
    return hits


def _choose(hits: dict[int, list[int]]) -> dict[int, int]:
    """Of the problems hit, at most ``MAX_CANDIDATES_PER_INCIDENT`` per incident and
    ``MAX_CANDIDATES`` in all, those sharing the most strong keys first: problem id -> incident id."""
    by_incident: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for problem_id, (incident_id, strong_hits, weak_hits) in hits.items():
        by_incident[incident_id].append((-strong_hits, -weak_hits, problem_id))
    chosen: list[tuple[tuple[int, int, int], int]] = []
    for incident_id, members in by_incident.items():
        chosen.extend((member, incident_id) for member in sorted(members)[:MAX_CANDIDATES_PER_INCIDENT])
    chosen.sort()
    return {member[2]: incident_id for member, incident_id in chosen[:MAX_CANDIDATES]}


# A batch's copy of the candidate index (session.info: user id -> key -> [(problem id, incident id)]),
# for the keys its new problems look up. Kept in step with the problems the batch indexes; any other
# change to the index (resolving, merging, re-indexing) drops it, and lookups go to the database.
_KEY_INDEX = "borealis.incidents.key_index"
# Larger neighbourhoods are looked up problem by problem.
_PREFETCH_ROWS = 20_000
_PREFETCH_FACTS = 2_000


def _drop_key_index(db_session: Session) -> None:
    db_session.info.pop(_KEY_INDEX, None)


_KEY_ROWS_FOR = (
    sa.select(_keys.c.key, _keys.c.problem_id, _keys.c.incident_id)
    .where(_keys.c.user_id == sa.bindparam("user_id"), _keys.c.key.in_(sa.bindparam("keys", expanding=True)))
    .limit(sa.bindparam("limit"))
)
_KEY_HITS = (
    sa.select(_keys.c.problem_id, _keys.c.incident_id)
    .where(_keys.c.user_id == sa.bindparam("user_id"), _keys.c.key.in_(sa.bindparam("keys", expanding=True)))
    .order_by(_keys.c.incident_id, _keys.c.problem_id)
    .limit(sa.bindparam("limit"))
)
_problems: sa.Table = Problem.__table__  # type: ignore[assignment]
# Ids per IN list when reading many problems.
_CHUNK = 500
_FACTS_OF = sa.select(
    *(_problems.c[column.key] for column in _FACT_COLUMNS),
    _problems.c.notification_count,
    _problems.c.updated_at,
).where(_problems.c.id.in_(sa.bindparam("ids", expanding=True)))
_VERSIONS_OF = sa.select(_problems.c.id, _problems.c.notification_count, _problems.c.updated_at).where(
    _problems.c.id.in_(sa.bindparam("ids", expanding=True))
)

# Facts of stored problems by id, with the version they were read at (the problem's notification count
# and last write): new problems score against the same few candidates batch after batch, and decoding
# their entities and tags again each time costs more than checking they are unchanged. Any write to a
# problem moves its version, so every process reads what another process changed.
_FACTS_CACHE: dict[int, tuple[tuple[int, datetime], ProblemFacts]] = {}
_FACTS_CACHE_SIZE = 50_000


def _load_facts(db_session: Session, problem_ids: list[int], known: dict[int, ProblemFacts]) -> None:
    """Put the facts of these problems into ``known`` (those not there yet; unknown ids are left out)."""
    missing = [problem_id for problem_id in problem_ids if problem_id not in known]
    stale: list[int] = []
    for start in range(0, len(missing), 500):
        for row in db_session.execute(_VERSIONS_OF, {"ids": missing[start : start + 500]}):
            cached = _FACTS_CACHE.get(row.id)
            if cached is not None and cached[0] == (row.notification_count, row.updated_at):
                known[row.id] = cached[1]
            else:
                stale.append(row.id)
    if len(_FACTS_CACHE) + len(stale) > _FACTS_CACHE_SIZE:
        _FACTS_CACHE.clear()
    for start in range(0, len(stale), 500):
        for row in db_session.execute(_FACTS_OF, {"ids": stale[start : start + 500]}):
            facts = known[row.id] = facts_from(row)
            _FACTS_CACHE[row.id] = ((row.notification_count, row.updated_at), facts)


def _related(work: _Work, user_id: str, facts: ProblemFacts) -> list[tuple[IncidentMatch, Incident]]:
    """The open incidents ``facts`` relates to, best first, each with its best match."""
    db_session = work.db_session
    settings = work.settings_of(user_id)
    reached = work.reached(user_id, facts)
    candidates = find_candidates(
        db_session=db_session,
        user_id=user_id,
        facts=facts,
        settings=settings,
        reached=reached,
        known=work.facts,
    )
    found = related_incidents(facts, candidates, settings=settings, reached=reached)
    # The index holds open incidents only; checking again costs nothing and loads them in one query.
    loaded = _incidents(db_session, [item.incident_id for item in found], known=work.incidents)
    return [(item, loaded[item.incident_id]) for item in found if _is_open(loaded.get(item.incident_id))]


def _incidents(
    db_session: Session, incident_ids: Sequence[int], *, known: dict[int, Incident] | None = None
) -> dict[int, Incident]:
    """The incidents with these ids (those in ``known`` are not read again; new ones are added)."""
    known = {} if known is None else known
    missing = [incident_id for incident_id in incident_ids if incident_id not in known]
    if missing:
        for incident in db_session.scalars(_INCIDENTS, {"ids": missing}):
            known[incident.id] = incident
    return {incident_id: known[incident_id] for incident_id in incident_ids if incident_id in known}


_INCIDENTS = sa.select(Incident).where(Incident.id.in_(sa.bindparam("ids", expanding=True)))


def _is_open(incident: Incident | None) -> bool:
    return incident is not None and incident.status == OPEN and incident.merged_into_id is None


# -- the ingest hook --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a problem stands after re-correlation: its incident, whether the problem was just placed
    in it (joined, or folded in with its incident), and whether the incident was just opened for it.
    The enrichment job uses this to ask for a new analysis of an incident that gained problems."""

    incident: Incident
    attached: bool = False
    opened: bool = False


@dataclass(slots=True)
class ProblemPicture:
    """The columns of a problem that correlation and an incident's picture read, as just written by the
    lifecycle step (never the details document)."""

    id: int
    user_id: str
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
class _Work:
    """What one correlation call (a problem, or a whole ingest batch) reads once and reuses: the users'
    settings and topology, and which users' locks it holds. It lives for one call in one transaction."""

    db_session: Session
    topology: Topology | None = None
    settings: dict[str, CorrelationSettings] = field(default_factory=dict)
    topologies: dict[str, Topology] = field(default_factory=dict)
    locked: set[str] = field(default_factory=set)
    attachments: dict[int, IncidentProblem | None] = field(default_factory=dict)
    # Held for the whole call (the session's identity map keeps clean objects only weakly).
    incidents: dict[int, Incident] = field(default_factory=dict)
    facts: dict[int, ProblemFacts] = field(default_factory=dict)

    def lock(self, user_id: str) -> None:
        if user_id not in self.locked:
            lock_user(db_session=self.db_session, user_id=user_id)
            self.locked.add(user_id)

    def settings_of(self, user_id: str) -> CorrelationSettings:
        settings = self.settings.get(user_id)
        if settings is None:
            settings = self.settings[user_id] = get_settings(db_session=self.db_session, user_id=user_id)
        return settings

    def topology_of(self, user_id: str) -> Topology:
        if self.topology is not None:
            return self.topology
        topology = self.topologies.get(user_id)
        if topology is None:
            topology = _MemoTopology(topology_for(self.db_session, user_id))
            self.topologies[user_id] = topology
        return topology

    def prefetch_topology(self, problems: Sequence[ProblemPicture]) -> None:
        """Ask the topology about the entities of all these problems together (a query per hop for a
        whole batch instead of per problem); the walk of each problem then reads the memo."""
        by_user: dict[str, set[str]] = defaultdict(set)
        for problem in problems:
            by_user[problem.user_id] |= self.facts_of(problem).entities
        for user_id, entities in by_user.items():
            settings = self.settings_of(user_id)
            if not entities or not settings.topology or settings.max_hops <= 0:
                continue
            topology = self.topology_of(user_id)
            frontier: set[str] = entities
            for _hop in range(settings.max_hops):
                if not frontier or len(frontier) > MAX_REACHED_ENTITIES:
                    break
                adjacent = topology.neighbors(sorted(frontier))
                frontier = {entity for near in adjacent.values() for entity in near} - entities
                entities = entities | frontier

    def prefetch_candidates(self, problems: Sequence[ProblemPicture]) -> None:
        """Read the candidate index once for the keys of all these new problems, and the facts and
        incidents it leads to, so that correlating each one needs no query of its own."""
        keys_of: dict[str, set[str]] = defaultdict(set)
        facts_of: dict[str, list[tuple[ProblemFacts, dict[str, Reach]]]] = defaultdict(list)
        for problem in problems:
            facts = self.facts_of(problem)
            reached = self.reached(problem.user_id, facts)
            strong, weak = _lookup_keys(facts, self.settings_of(problem.user_id), reached)
            keys_of[problem.user_id] |= strong | weak
            facts_of[problem.user_id].append((facts, reached))
        index: dict[str, dict[str, list[tuple[int, int]]]] = {}
        for user_id, keys in keys_of.items():
            rows: dict[str, list[tuple[int, int]]] = {key: [] for key in keys}
            count = 0
            for chunk in _chunks(sorted(keys), 500):
                found = self.db_session.execute(
                    _KEY_ROWS_FOR, {"user_id": user_id, "keys": chunk, "limit": _PREFETCH_ROWS + 1}
                ).all()
                count += len(found)
                for key, problem_id, incident_id in found:
                    rows[key].append((problem_id, incident_id))
            if count <= _PREFETCH_ROWS:
                index[user_id] = rows
        if not index:
            return
        self.db_session.info[_KEY_INDEX] = index
        # What the new problems will score against, as the index stands now (later additions are
        # this batch's own problems, whose facts come with them).
        wanted: dict[int, int] = {}
        for user_id, items in facts_of.items():
            if user_id not in index:
                continue
            for facts, reached in items:
                hits = _key_hits(self.db_session, user_id, facts, self.settings_of(user_id), reached)
                wanted.update(_choose(hits))
        if len(wanted) <= _PREFETCH_FACTS:
            _load_facts(self.db_session, list(wanted), self.facts)
            _incidents(self.db_session, sorted(set(wanted.values())), known=self.incidents)

    def facts_of(self, problem: ProblemPicture) -> ProblemFacts:
        """The problem's facts (the same as its stored row's: the lifecycle step already wrote it)."""
        facts = self.facts.get(problem.id)
        if facts is None:
            facts = self.facts[problem.id] = facts_from(problem)
        return facts

    def reached(self, user_id: str, facts: ProblemFacts) -> dict[str, Reach]:
        """What the topology reaches from the problem's entities, within the user's hops."""
        settings = self.settings_of(user_id)
        if not (settings.topology and settings.max_hops > 0 and facts.entities):
            return {}
        return reach(self.topology_of(user_id), facts.entities, max_hops=settings.max_hops)

    def attachment(self, problem_id: int) -> IncidentProblem | None:
        if problem_id in self.attachments:
            return self.attachments[problem_id]
        return self.db_session.get(IncidentProblem, problem_id)


def load_problem(*, db_session: Session, problem_id: int) -> ProblemPicture:
    """The problem as just written by the lifecycle step (the columns correlation reads, the details
    document left out); raises NotFound for an unknown id."""
    row = db_session.execute(_PICTURE_SELECT.where(Problem.id == problem_id)).mappings().first()
    if row is None:
        raise NotFound(f"alert {problem_id} does not exist")
    return ProblemPicture.of(row)


def pictures(*, db_session: Session, problem_ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
    """The columns correlation reads of each of these problems that exists, by id."""
    found: dict[int, Mapping[str, Any]] = {}
    for start in range(0, len(problem_ids), _CHUNK):
        chunk = problem_ids[start : start + _CHUNK]
        for row in db_session.execute(_PICTURE_SELECT.where(Problem.id.in_(chunk))).mappings():
            found[row["id"]] = row
    return found


def on_problem_changed(*, db_session: Session, problem_id: int, topology: Topology | None = None) -> Incident:
    """Keep the problem's incident up to date after the lifecycle step; returns that incident.

    A problem seen for the first time joins a related open incident (with the reason) or opens a new
    one; a state change goes on the timeline and resolves or reopens the incident. Idempotent: the
    incident remembers the state it last saw, so calling twice records nothing twice. No network
    call: the topology comes from the enrichment cache when there is one.
    """
    problem = load_problem(db_session=db_session, problem_id=problem_id)
    return _on_changed(_Work(db_session, topology), problem)


def on_problems_changed(
    *, db_session: Session, changes: Sequence[ProblemChange], topology: Topology | None = None
) -> dict[int, Incident]:
    """``on_problem_changed`` for the problems one ingest batch wrote, in order, reading each user's
    settings and topology once; returns the incident of each problem it had to look at.

    A problem whose columns that correlation reads did not change is left alone (its incident already
    reflects them), unless it has no incident yet. The columns come from the changes, not the database.
    """
    work = _Work(db_session, topology)
    wanted = [change for change in changes if change.matters()]
    unchanged = [change.problem_id for change in changes if not change.matters()]
    if unchanged:
        attached = set(
            db_session.scalars(
                sa.select(IncidentProblem.problem_id).where(IncidentProblem.problem_id.in_(unchanged))
            )
        )
        orphans = {problem_id for problem_id in unchanged if problem_id not in attached}
        if orphans:
            wanted = [change for change in changes if change.matters() or change.problem_id in orphans]
    if not wanted:
        return {}
    ids = [change.problem_id for change in wanted]
    work.attachments = dict.fromkeys(ids)
    for attachment in db_session.scalars(_ATTACHMENTS, {"ids": ids}):
        work.attachments[attachment.problem_id] = attachment
    pictures = [ProblemPicture.of(change.row) for change in wanted]
    # Only problems without an incident look for related ones (a fold later asks for itself).
    new = [picture for picture in pictures if work.attachments[picture.id] is None]
    # New attachments, events and incident changes are written together at the end; the steps that
    # read them back (merges, recounts, resolving) flush first.
    with db_session.no_autoflush, _events_in_bulk(db_session):
        try:
            if new:
                work.prefetch_topology(new)
                work.prefetch_candidates(new)
            incidents = {}
            for _at, _order, picture, state, previous_keys in _replay(work, pictures, wanted):
                incidents[picture.id] = _on_changed(work, replace(picture, state=state), previous_keys)
        finally:
            _drop_key_index(db_session)
    db_session.flush()
    return incidents


def _replay(
    work: _Work, pictures: Sequence[ProblemPicture], changes: Sequence[ProblemChange]
) -> list[tuple[int, tuple[int, int], ProblemPicture, str, frozenset[str] | None]]:
    """The steps that correlate these changes as if each delivery had come alone, in the order they
    arrived: each problem first in the state its incident saw (a new one in the state it came in), then
    every state it took since. A problem that opened and ended within one burst still gathers the
    related ones that came while it was open, and none that came after."""
    steps = []
    for position, (picture, change) in enumerate(zip(pictures, changes, strict=True)):
        states = list(change.states) or [(picture.state, 0)]
        if change.final and states[-1][0] != picture.state:
            states.append((picture.state, states[-1][1]))
        first_keys = None if change.created else change.previous_keys
        keys = frozenset(keys_for(work.facts_of(picture)))
        for step, (state, at) in enumerate(states):
            steps.append((at, (position, step), picture, state, first_keys if step == 0 else keys))
    steps.sort(key=lambda item: (item[0], item[1]))
    return steps


_ATTACHMENTS = sa.select(IncidentProblem).where(
    IncidentProblem.problem_id.in_(sa.bindparam("ids", expanding=True))
)


def _on_changed(
    work: _Work, problem: ProblemPicture, previous_keys: Collection[str] | None = None
) -> Incident:
    """The ingest hook for one problem. With ``previous_keys`` (the problem's index keys before this
    change), the candidate index is rewritten only when the keys changed: every other step that moves,
    resolves or reopens an incident keeps the index of its problems right itself."""
    db_session = work.db_session
    work.lock(problem.user_id)
    attachment = work.attachment(problem.id)
    if attachment is None:
        return _attach_new(work, problem).incident
    incident = attachment.incident
    if incident is None:
        # Attached earlier in this unit of work, not flushed yet.
        incident = _incidents(db_session, [attachment.incident_id], known=work.incidents)[
            attachment.incident_id
        ]
    facts = work.facts_of(problem)
    keys = keys_for(facts)
    moved = False
    if (facts.entities and _opened_without_facts(incident, attachment)) or (
        previous_keys is not None and not set(keys) <= set(previous_keys) and _folds_itself(incident)
    ):
        # It carries something to correlate by that it did not before (its first entities, or an
        # update that widened it): related open incidents may now be the same one.
        placement = _fold_into_related(work, problem=problem, attachment=attachment, incident=incident)
        incident, moved = placement.incident, placement.attached
    previous_state = attachment.problem_state
    if previous_state != problem.state:
        attachment.problem_state = problem.state
        record_event(
            db_session=db_session,
            incident=incident,
            kind="problem_state_changed",
            problem_id=problem.id,
            message=f"{facts.display_id} is {problem.state} (was {previous_state})",
            details={"state": problem.state, "previousState": previous_state},
        )
        incident.open_problem_count += _is_open_state(problem.state) - _is_open_state(previous_state)
        if problem.state in ENDED_STATES:
            _maybe_resolve(db_session, incident, why=f"all its problems have ended ({facts.display_id} last)")
        elif previous_state in ENDED_STATES:
            _maybe_reopen(db_session, incident, why=f"{facts.display_id} reopened")
    _absorb(incident, problem, facts)
    if incident.status == OPEN and (previous_keys is None or moved or keys != previous_keys):
        _index_problem(db_session, problem.user_id, problem.id, incident.id, keys)
    if previous_keys is None:
        db_session.flush()
    return incident


def _is_open_state(state: str | None) -> int:
    return 0 if state in ENDED_STATES else 1


def recorrelate(*, db_session: Session, problem_id: int, topology: Topology | None = None) -> Placement:
    """Correlate a problem again once enrichment knows more (the entity topology); returns where it
    stands (``attached`` when its incident was folded into another).

    The problem's open incident and the open incidents it now relates to are folded into the best
    related one, as if the topology had been known at ingest; incidents a person arranged are left as
    they are. Without an attachment yet, this is the ingest hook.
    """
    problem = load_problem(db_session=db_session, problem_id=problem_id)
    work = _Work(db_session, topology)
    work.lock(problem.user_id)
    attachment = db_session.get(IncidentProblem, problem.id)
    if attachment is None:
        return _attach_new(work, problem)
    incident = attachment.incident
    if not _folds_itself(incident):
        return Placement(incident)
    return _fold_into_related(work, problem=problem, attachment=attachment, incident=incident)


def _folds_itself(incident: Incident) -> bool:
    """Whether correlation may still fold this incident into another: open, and not arranged by a
    person (nor merged away already)."""
    return incident.status == OPEN and not incident.manual and incident.merged_into_id is None


def _opened_without_facts(incident: Incident, attachment: IncidentProblem) -> bool:
    """Whether the problem sits alone in the incident it opened while its deliveries carried nothing to
    correlate by (a MERGED that overtook its OPEN, a template without entities): it is correlated
    once they do, even if that incident has resolved in the meantime."""
    return (
        attachment.strategy == "new"
        and incident.problem_count == 1
        and not incident.affected_entities
        and not incident.manual
        and incident.merged_into_id is None
    )


def _fold_into_related(
    work: _Work,
    *,
    problem: ProblemPicture,
    attachment: IncidentProblem,
    incident: Incident,
) -> Placement:
    """Fold the problem's incident and the open incidents it relates to into the best related one."""
    db_session = work.db_session
    facts = work.facts_of(problem)
    found = _related(work, problem.user_id, facts)
    related = [(item, other) for item, other in found if other.id != incident.id and not other.manual]
    if not related:
        return Placement(incident)
    (best, target), rest = related[0], related[1:]
    if attachment.strategy == "new":
        attachment.strategy = best.match.strategy
        attachment.score = best.match.score
        attachment.reason = best.match.reason
        attachment.related_problem_id = int(best.match.other.problem_id)
        db_session.flush()
    _merge(
        db_session,
        target=target,
        source=incident,
        actor="system",
        why=f"{facts.display_id} {best.match.reason}",
    )
    for item, other in rest:
        _merge(
            db_session,
            target=target,
            source=other,
            actor="system",
            why=f"{facts.display_id} {item.match.reason}",
        )
    db_session.flush()
    return Placement(target, attached=True)


def _attach_new(work: _Work, problem: ProblemPicture) -> Placement:
    db_session = work.db_session
    settings = work.settings_of(problem.user_id)
    facts = work.facts_of(problem)
    found = _related(work, problem.user_id, facts)
    still_open = _is_open_state(problem.state)
    if not found:
        # The incident is inserted with its whole picture: one statement, no update after it.
        incident = Incident(
            user_id=problem.user_id,
            title=problem.title or facts.display_id,
            status=OPEN,
            priority=problem.priority,
            started_at=facts.start_time or utcnow(),
            affected_entities=[],
            search_text="",
            problem_count=1,
            open_problem_count=still_open,
            manual=False,
        )
        _absorb(incident, problem, facts)
        db_session.add(incident)
        db_session.flush()
        reason = f"no related open incident within {settings.window_minutes} min"
        work.attachments[problem.id] = _attach(
            db_session,
            problem.id,
            incident.id,
            strategy="new",
            score=None,
            reason=reason,
            related=None,
            state=problem.state,
        )
        record_event(
            db_session=db_session,
            incident=incident,
            kind="opened",
            problem_id=problem.id,
            message=f"opened by {facts.display_id}: {reason}",
        )
        target = incident
    else:
        best, target = found[0]
        work.attachments[problem.id] = _attach(
            db_session,
            problem.id,
            target.id,
            strategy=best.match.strategy,
            score=best.match.score,
            reason=best.match.reason,
            related=int(best.match.other.problem_id),
            state=problem.state,
        )
        record_event(
            db_session=db_session,
            incident=target,
            kind="problem_joined",
            problem_id=problem.id,
            message=f"{facts.display_id} joined: {best.match.reason}",
            details={"strategy": best.match.strategy, "score": best.match.score},
        )
        merged = False
        for other, source in found[1:]:
            if source.manual or target.manual or source.merged_into_id is not None:
                continue
            _merge(
                db_session,
                target=target,
                source=source,
                actor="system",
                why=f"{facts.display_id} {other.match.reason}",
            )
            merged = True
        if not merged:
            # (A merge recounts the target, this problem included.)
            target.problem_count += 1
            target.open_problem_count += still_open
        _absorb(target, problem, facts)
    if problem.state in ENDED_STATES:
        _maybe_resolve(db_session, target, why=f"all its problems have ended ({facts.display_id} last)")
    if target.status == OPEN:
        _index_problem(db_session, problem.user_id, problem.id, target.id, keys_for(facts), fresh=True)
    return Placement(target, attached=True, opened=not found)


# -- the incident's picture -------------------------------------------------------------------------


def _attach(
    db_session: Session,
    problem_id: int,
    incident_id: int,
    *,
    strategy: str,
    score: float | None,
    reason: str,
    related: int | None,
    state: str,
) -> IncidentProblem:
    attachment = IncidentProblem(
        problem_id=problem_id,
        problem_state=state,
        incident_id=incident_id,
        strategy=strategy,
        score=score,
        reason=reason,
        related_problem_id=related,
        attached_at=utcnow(),
    )
    db_session.add(attachment)
    return attachment


def _rank(priority: str | None) -> int:
    return _PRIORITY_RANK.get(priority or "", len(PRIORITIES))


def _absorb(incident: Incident, problem: Problem, facts: ProblemFacts) -> None:
    """Fold one problem into the incident's title, priority, start, entities and search text."""
    if _rank(problem.priority) < _rank(incident.priority):
        incident.priority = problem.priority
        if problem.title:
            incident.title = problem.title
    elif not incident.title and problem.title:
        incident.title = problem.title
    if facts.start_time is not None and (
        incident.started_at is None or facts.start_time < incident.started_at
    ):
        incident.started_at = facts.start_time
    entities = list(incident.affected_entities or [])
    known = {item.get("entityId") for item in entities}
    additions = [
        {"entityId": item.get("entityId"), "name": item.get("name"), "type": item.get("type")}
        for item in problem.impacted_entities or []
        if isinstance(item, dict) and item.get("entityId")
    ]
    if problem.root_cause_entity_id:
        additions.append(
            {
                "entityId": problem.root_cause_entity_id,
                "name": problem.root_cause_entity_name,
                "type": problem.root_cause_entity_type,
            }
        )
    for item in additions:
        if item["entityId"] not in known and len(entities) < MAX_AFFECTED_ENTITIES:
            known.add(item["entityId"])
            entities.append(item)
    if entities != incident.affected_entities:
        incident.affected_entities = entities
    words = [problem.title, problem.display_id] + [item.get("name") for item in additions]
    text = incident.search_text or ""
    for word in filter(None, words):
        lowered = word.lower()
        if lowered not in text and len(text) + len(lowered) < MAX_SEARCH_TEXT:
            text = f"{text}\n{lowered}" if text else lowered
    incident.search_text = text


def _count(db_session: Session, incident: Incident) -> None:
    """Problem counts from the attachments, by the state the incident last saw of each (the same as
    the problems' own once their changes are correlated; kept by increments on the ingest path)."""
    db_session.flush()
    total, still_open = db_session.execute(_COUNT, {"incident_id": incident.id}).one()
    incident.problem_count = int(total)
    incident.open_problem_count = int(still_open)


_COUNT = sa.select(
    sa.func.count(),
    sa.func.coalesce(
        sa.func.sum(sa.case((IncidentProblem.problem_state.in_(sorted(ENDED_STATES)), 0), else_=1)), 0
    ),
).where(IncidentProblem.incident_id == sa.bindparam("incident_id"))


def refresh(*, db_session: Session, incident: Incident) -> Incident:
    """Recompute the incident's picture from all its problems (after moves and merges); returns it."""
    db_session.flush()
    members = db_session.scalars(
        sa.select(Problem)
        .options(load_only(*_PICTURE_COLUMNS))
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id)
        .order_by(Problem.start_time, Problem.id)
    ).all()
    incident.affected_entities = []
    incident.search_text = ""
    if members:
        first = members[0]
        incident.priority = first.priority
        incident.title = first.title or first.display_id or incident.title
        incident.started_at = facts_from(first).start_time or incident.started_at
    for problem in members:
        _absorb(incident, problem, facts_from(problem))
    _count(db_session, incident)
    return incident


def _maybe_resolve(db_session: Session, incident: Incident, *, why: str, actor: str = "system") -> None:
    if incident.status != OPEN or incident.merged_into_id is not None:
        return
    if incident.problem_count and incident.open_problem_count:
        return
    _set_resolved(db_session, incident, why=why, actor=actor)


def _set_resolved(db_session: Session, incident: Incident, *, why: str, actor: str) -> None:
    db_session.flush()
    ends = db_session.scalar(
        sa.select(sa.func.max(Problem.end_time))
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id)
    )
    incident.status = RESOLVED
    incident.resolved_at = ends if ends is not None and actor == "system" else utcnow()
    _drop_key_index(db_session)
    db_session.execute(sa.delete(IncidentKey).where(IncidentKey.incident_id == incident.id))
    record_event(
        db_session=db_session, incident=incident, kind="resolved", actor=actor, message=f"resolved: {why}"
    )


def _maybe_reopen(db_session: Session, incident: Incident, *, why: str, actor: str = "system") -> None:
    if incident.status != RESOLVED or incident.merged_into_id is not None or not incident.open_problem_count:
        return
    _set_open(db_session, incident, why=why, actor=actor)


def _set_open(db_session: Session, incident: Incident, *, why: str, actor: str) -> None:
    incident.status = OPEN
    incident.resolved_at = None
    _index_incident(db_session, incident)
    record_event(
        db_session=db_session, incident=incident, kind="reopened", actor=actor, message=f"reopened: {why}"
    )


# -- the candidate index ----------------------------------------------------------------------------


def _index_problem(
    db_session: Session,
    user_id: str,
    problem_id: int,
    incident_id: int,
    keys: set[str],
    *,
    fresh: bool = False,
) -> None:
    """Make the problem's index rows exactly ``keys`` under ``incident_id`` (``fresh``: it has none yet)."""
    existing: dict[str, int] = {}
    if not fresh:
        existing = dict(db_session.execute(_KEYS_OF_PROBLEM, {"problem_id": problem_id}).all())
    if set(existing) == keys and all(value == incident_id for value in existing.values()):
        return
    if not fresh:
        _drop_key_index(db_session)
    elif (index := db_session.info.get(_KEY_INDEX, {}).get(user_id)) is not None:
        for key in keys & index.keys():
            index[key].append((problem_id, incident_id))
    if existing:
        db_session.execute(_UNINDEX_PROBLEM, {"problem_id": problem_id})
    if keys:
        db_session.execute(
            _keys.insert(),
            [
                {"user_id": user_id, "key": key, "problem_id": problem_id, "incident_id": incident_id}
                for key in sorted(keys)
            ],
        )


_KEYS_OF_PROBLEM = sa.select(_keys.c.key, _keys.c.incident_id).where(
    _keys.c.problem_id == sa.bindparam("problem_id")
)
_UNINDEX_PROBLEM = _keys.delete().where(_keys.c.problem_id == sa.bindparam("problem_id"))


def _index_incident(db_session: Session, incident: Incident) -> None:
    """Index every problem of an incident that is (again) open."""
    db_session.flush()
    rows = db_session.execute(
        sa.select(*_FACT_COLUMNS)
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id)
    )
    for row in rows.all():
        _index_problem(db_session, incident.user_id, row.id, incident.id, keys_for(facts_from(row)))


# -- timeline ---------------------------------------------------------------------------------------


def record_event(
    *,
    db_session: Session,
    incident: Incident,
    kind: str,
    message: str,
    actor: str = "system",
    problem_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """A new line on the incident's timeline (RCA adds its own kinds: ``rca_queued``, ...)."""
    row = {
        "incident_id": incident.id,
        "at": utcnow(),
        "kind": kind,
        "actor": actor,
        "problem_id": problem_id,
        "message": message,
        "details": details or {},
    }
    pending = db_session.info.get(_PENDING_EVENTS)
    if pending is not None:
        pending.append(row)
    else:
        db_session.add(IncidentEvent(**row))


# Events recorded while correlating a batch, written with one statement at its end (the ORM would
# write them one by one on SQLite, to learn each new id).
_PENDING_EVENTS = "borealis.incidents.pending_events"
_events: sa.Table = IncidentEvent.__table__  # type: ignore[assignment]


@contextmanager
def _events_in_bulk(db_session: Session) -> Iterator[None]:
    if _PENDING_EVENTS in db_session.info:
        yield
        return
    pending: list[dict[str, Any]] = []
    db_session.info[_PENDING_EVENTS] = pending
    try:
        yield
    finally:
        del db_session.info[_PENDING_EVENTS]
    if pending:
        db_session.flush()
        db_session.execute(_events.insert(), pending)


# -- manual actions and merging ---------------------------------------------------------------------


def _merge(db_session: Session, *, target: Incident, source: Incident, actor: str, why: str) -> None:
    """Move every problem of ``source`` into ``target`` and leave ``source`` pointing at it."""
    db_session.flush()
    attachments = db_session.scalars(
        sa.select(IncidentProblem).where(IncidentProblem.incident_id == source.id)
    ).all()
    for attachment in attachments:
        attachment.incident_id = target.id
        if attachment.strategy == "new":
            attachment.strategy = "merge"
            attachment.reason = f"merged in from incident #{source.id}: {why}"
    db_session.flush()
    _drop_key_index(db_session)
    if target.status == OPEN:
        db_session.execute(
            sa.update(IncidentKey).where(IncidentKey.incident_id == source.id).values(incident_id=target.id)
        )
    else:
        db_session.execute(sa.delete(IncidentKey).where(IncidentKey.incident_id == source.id))
    db_session.execute(
        sa.update(Incident).where(Incident.merged_into_id == source.id).values(merged_into_id=target.id)
    )
    for attachment in attachments:
        db_session.expire(attachment)
    record_event(
        db_session=db_session,
        incident=target,
        kind="merged",
        actor=actor,
        message=f"incident #{source.id} ({source.title}) merged in: {why}",
        details={"sourceIncidentId": source.id, "problemCount": len(attachments)},
    )
    record_event(
        db_session=db_session,
        incident=source,
        kind="merged_into",
        actor=actor,
        message=f"merged into incident #{target.id}: {why}",
        details={"targetIncidentId": target.id},
    )
    source.merged_into_id = target.id
    source.status = RESOLVED
    source.resolved_at = source.resolved_at or utcnow()
    source.problem_count = 0
    source.open_problem_count = 0
    refresh(db_session=db_session, incident=target)


def _require_active(incident: Incident) -> None:
    if incident.merged_into_id is not None:
        raise Conflict(
            f"incident {incident.id} was merged into incident {incident.merged_into_id}; act on that one"
        )


def resolve(*, db_session: Session, incident: Incident) -> Incident:
    """Resolve the incident by hand (open problems stay as Dynatrace reports them); returns it."""
    lock_user(db_session=db_session, user_id=incident.user_id)
    db_session.refresh(incident)
    _require_active(incident)
    if incident.status != RESOLVED:
        incident.manual = True
        _set_resolved(db_session, incident, why="resolved by hand", actor="user")
    db_session.flush()
    return incident


def reopen(*, db_session: Session, incident: Incident) -> Incident:
    """Reopen the incident by hand, so related new problems join it again; returns it."""
    lock_user(db_session=db_session, user_id=incident.user_id)
    db_session.refresh(incident)
    _require_active(incident)
    if incident.status != OPEN:
        incident.manual = True
        _set_open(db_session, incident, why="reopened by hand", actor="user")
    db_session.flush()
    return incident


def merge(*, db_session: Session, target: Incident, source_incident_id: int) -> Incident:
    """Fold another incident of the same user into ``target``; returns ``target``."""
    lock_user(db_session=db_session, user_id=target.user_id)
    db_session.refresh(target)
    _require_active(target)
    if source_incident_id == target.id:
        raise InvalidInput("sourceIncidentId is this incident; give the id of the incident to merge into it")
    source = get(db_session=db_session, user_id=target.user_id, incident_id=source_incident_id)
    if source is None:
        raise NotFound(f"incident {source_incident_id} does not exist; list incidents with GET /incidents")
    _require_active(source)
    target.manual = True
    _merge(db_session, target=target, source=source, actor="user", why="merged by hand")
    _settle_after_manual(db_session, target, why=f"incident #{source.id} merged in")
    db_session.flush()
    return target


def move_problem(
    *, db_session: Session, incident: Incident, problem_id: int, target_incident_id: int | None
) -> Incident:
    """Move one problem out of ``incident`` into another incident, or a new one when the target is
    None; returns the incident it now belongs to."""
    lock_user(db_session=db_session, user_id=incident.user_id)
    db_session.refresh(incident)
    _require_active(incident)
    attachment = db_session.get(IncidentProblem, problem_id)
    if attachment is None or attachment.incident_id != incident.id:
        raise NotFound(
            f"alert {problem_id} is not in incident {incident.id}; see GET /incidents/{incident.id}"
        )
    problem = db_session.get(Problem, problem_id)
    display = problem.display_id or f"PID {problem.pid}"
    if target_incident_id is None:
        target = Incident(
            user_id=incident.user_id,
            title=problem.title or display,
            status=OPEN,
            priority=problem.priority,
            started_at=facts_from(problem).start_time or utcnow(),
            affected_entities=[],
            manual=True,
        )
        db_session.add(target)
        db_session.flush()
        record_event(
            db_session=db_session,
            incident=target,
            kind="opened",
            actor="user",
            problem_id=problem_id,
            message=f"opened by hand for {display}, moved out of incident #{incident.id}",
        )
    else:
        if target_incident_id == incident.id:
            raise InvalidInput(f"alert {problem_id} is already in incident {incident.id}")
        target = get(db_session=db_session, user_id=incident.user_id, incident_id=target_incident_id)
        if target is None:
            raise NotFound(
                f"incident {target_incident_id} does not exist; list incidents with GET /incidents"
            )
        _require_active(target)
        target.manual = True
    incident.manual = True
    attachment.incident_id = target.id
    attachment.strategy = "manual"
    attachment.score = None
    attachment.reason = f"moved by hand from incident #{incident.id}"
    attachment.related_problem_id = None
    db_session.flush()
    record_event(
        db_session=db_session,
        incident=incident,
        kind="problem_moved_out",
        actor="user",
        problem_id=problem_id,
        message=f"{display} moved by hand to incident #{target.id}",
        details={"targetIncidentId": target.id},
    )
    record_event(
        db_session=db_session,
        incident=target,
        kind="problem_moved_in",
        actor="user",
        problem_id=problem_id,
        message=f"{display} moved by hand from incident #{incident.id}",
        details={"sourceIncidentId": incident.id},
    )
    refresh(db_session=db_session, incident=incident)
    refresh(db_session=db_session, incident=target)
    if target.status == OPEN:
        _index_problem(db_session, incident.user_id, problem_id, target.id, keys_for(facts_from(problem)))
    else:
        _drop_key_index(db_session)
        db_session.execute(sa.delete(IncidentKey).where(IncidentKey.problem_id == problem_id))
    if incident.status == OPEN and not incident.open_problem_count:
        why = "no problems left" if not incident.problem_count else "all its remaining problems have ended"
        _set_resolved(db_session, incident, why=why, actor="user")
    _settle_after_manual(db_session, target, why=f"{display} moved in")
    db_session.flush()
    return target


def _settle_after_manual(db_session: Session, incident: Incident, *, why: str) -> None:
    """An incident that gained an open problem by hand is open again."""
    if incident.status == RESOLVED and incident.open_problem_count:
        _set_open(db_session, incident, why=why, actor="user")


# -- reading ----------------------------------------------------------------------------------------


def get(*, db_session: Session, user_id: str, incident_id: int) -> Incident | None:
    """The user's incident with this id, or None (another user's incident is None too)."""
    return db_session.scalar(
        sa.select(Incident).where(Incident.id == incident_id, Incident.user_id == user_id)
    )


@dataclass(frozen=True)
class IncidentFilter:
    status: str | None = None
    priority: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None


def list_incidents(
    *, db_session: Session, user_id: str, filters: IncidentFilter, limit: int, offset: int
) -> tuple[list[Incident], int]:
    """The user's incidents (merged-away ones left out), newest start first, and how many match."""
    conditions = [Incident.user_id == user_id, Incident.merged_into_id.is_(None)]
    if filters.status:
        conditions.append(Incident.status == filters.status)
    if filters.priority:
        conditions.append(Incident.priority == filters.priority)
    if filters.since:
        conditions.append(Incident.started_at >= filters.since)
    if filters.until:
        conditions.append(Incident.started_at <= filters.until)
    if filters.q:
        pattern = "%" + filters.q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(Incident.search_text.like(pattern, escape="\\"))
    total = db_session.scalar(sa.select(sa.func.count()).select_from(Incident).where(*conditions)) or 0
    items = db_session.scalars(
        sa.select(Incident)
        .where(*conditions)
        .order_by(Incident.started_at.desc(), Incident.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(items), int(total)


def members(*, db_session: Session, incident: Incident) -> list[tuple[IncidentProblem, Problem]]:
    """The incident's problems with their attachments, earliest Dynatrace start first."""
    rows = db_session.execute(
        sa.select(IncidentProblem, Problem)
        .options(
            load_only(
                Problem.id,
                Problem.display_id,
                Problem.pid,
                Problem.title,
                Problem.state,
                Problem.severity,
                Problem.priority,
                Problem.problem_url,
                Problem.root_cause_entity_id,
                Problem.start_time,
                Problem.end_time,
            )
        )
        .join(Problem, Problem.id == IncidentProblem.problem_id)
        .where(IncidentProblem.incident_id == incident.id)
        .order_by(Problem.start_time, Problem.id)
    )
    return [(attachment, problem) for attachment, problem in rows]


def timeline(*, db_session: Session, incident: Incident) -> list[IncidentEvent]:
    """The incident's events, oldest first."""
    return list(
        db_session.scalars(
            sa.select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    )


def incident_ids_for(*, db_session: Session, problem_ids: Iterable[int]) -> dict[int, int]:
    """Problem id -> incident id, for the alerts list."""
    ids = list(problem_ids)
    if not ids:
        return {}
    rows = db_session.execute(
        sa.select(IncidentProblem.problem_id, IncidentProblem.incident_id).where(
            IncidentProblem.problem_id.in_(ids)
        )
    )
    return dict(rows.all())


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
