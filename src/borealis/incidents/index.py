"""The candidate index: which problems of open incidents share a key with a new problem.

Correlation never scans incidents: a problem is scored against the problems that share an index key
with it (an entity, also one the topology reaches, a tag, a management zone, the title's words). The
rows (``incident_keys``) exist for the problems of open incidents only. A ``CandidateIndex`` is how one
unit of work reads and writes them; an ingest batch gives it a copy of the rows its new problems look up
(``prefetch``), so that correlating each problem needs no query of its own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.incidents.correlation import (
    Candidate,
    CorrelationSettings,
    ProblemFacts,
    title_key,
    weak_signals_can_group,
)
from borealis.incidents.models import OPEN, Incident, IncidentKey, IncidentProblem
from borealis.incidents.topology import Reach
from borealis.problems.models import Problem

# Bounded work per ingest: key rows read, problems scored per incident and in all.
MAX_KEY_ROWS = 5000
MAX_CANDIDATES_PER_INCIDENT = 12
MAX_CANDIDATES = 300

ENTITY_KEY, TAG_KEY, ZONE_KEY, TITLE_KEY = "e:", "t:", "z:", "n:"

# The columns correlation reads: never the details document.
FACT_COLUMNS = (
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

# A batch copies the index for its new problems' keys only when the neighbourhood is this small;
# larger ones are looked up problem by problem.
_PREFETCH_ROWS = 20_000
_PREFETCH_FACTS = 2_000
# Ids or keys per IN list.
_CHUNK = 500


# -- facts and keys ---------------------------------------------------------------------------------


def _tag_text(tag: dict[str, Any]) -> str | None:
    key = (tag.get("key") or "").strip()
    if not key:
        return None
    text = f"{key}:{tag['value']}" if tag.get("value") not in (None, "") else key
    context = tag.get("context")
    return f"[{context}]{text}" if context and context != "CONTEXTLESS" else text


def facts_from(row: Any) -> ProblemFacts:
    """Correlation facts of a problem (an ORM row or a row of ``FACT_COLUMNS``)."""
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


def lookup_keys(
    facts: ProblemFacts, settings: CorrelationSettings, reached: Mapping[str, Reach]
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


# -- facts of stored problems -----------------------------------------------------------------------

_problems: sa.Table = Problem.__table__  # type: ignore[assignment]
_FACTS_OF = sa.select(
    *(_problems.c[column.key] for column in FACT_COLUMNS),
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


def load_facts(db_session: Session, problem_ids: list[int], known: dict[int, ProblemFacts]) -> None:
    """Put the facts of these problems into ``known`` (those not there yet; unknown ids are left out)."""
    missing = [problem_id for problem_id in problem_ids if problem_id not in known]
    stale: list[int] = []
    for chunk in _chunks(missing):
        for row in db_session.execute(_VERSIONS_OF, {"ids": chunk}):
            cached = _FACTS_CACHE.get(row.id)
            if cached is not None and cached[0] == (row.notification_count, row.updated_at):
                known[row.id] = cached[1]
            else:
                stale.append(row.id)
    if len(_FACTS_CACHE) + len(stale) > _FACTS_CACHE_SIZE:
        _FACTS_CACHE.clear()
    for chunk in _chunks(stale):
        for row in db_session.execute(_FACTS_OF, {"ids": chunk}):
            facts = known[row.id] = facts_from(row)
            _FACTS_CACHE[row.id] = ((row.notification_count, row.updated_at), facts)


# -- the index --------------------------------------------------------------------------------------

_keys: sa.Table = IncidentKey.__table__  # type: ignore[assignment]
_KEY_ROWS_FOR = (
    sa.select(_keys.c.key, _keys.c.problem_id, _keys.c.incident_id)
    .where(
        _keys.c.workspace_id == sa.bindparam("workspace_id"),
        _keys.c.key.in_(sa.bindparam("keys", expanding=True)),
    )
    .limit(sa.bindparam("limit"))
)
_KEY_HITS = (
    sa.select(_keys.c.problem_id, _keys.c.incident_id)
    .where(
        _keys.c.workspace_id == sa.bindparam("workspace_id"),
        _keys.c.key.in_(sa.bindparam("keys", expanding=True)),
    )
    .order_by(_keys.c.incident_id, _keys.c.problem_id)
    .limit(sa.bindparam("limit"))
)
_KEYS_OF_PROBLEM = sa.select(_keys.c.key, _keys.c.incident_id).where(
    _keys.c.problem_id == sa.bindparam("problem_id")
)
_UNINDEX_PROBLEM = _keys.delete().where(_keys.c.problem_id == sa.bindparam("problem_id"))


class CandidateIndex:
    """The candidate index as one unit of work reads and writes it.

    After ``prefetch`` it holds a copy of the rows a batch's new problems look up (workspace id -> key ->
    [(problem id, incident id)]) and answers those lookups from it. The copy is kept in step with the
    new problems the batch indexes; any other change (resolving, merging, re-indexing) drops it, and
    lookups go to the database again.

    With ``hold`` the rows of newly placed problems wait, and go in one statement (``write_held``) at
    the end of the batch or before anything reads or changes the rows in the database, whichever is
    first: a batch places each new problem with no statement of its own.
    """

    def __init__(self, db_session: Session, *, hold: bool = False) -> None:
        self.db_session = db_session
        self._copy: dict[str, dict[str, list[tuple[int, int]]]] | None = None
        self._held: list[dict[str, Any]] | None = [] if hold else None

    def write_held(self, *, stop: bool = False) -> None:
        """Write the rows held back (before a read or change of the rows in the database); with
        ``stop`` (the batch's end) later ones are written as they come."""
        held = self._held
        if stop:
            self._held = None
        if held:
            self.db_session.execute(_keys.insert(), held)
            held.clear()

    def prefetch(self, keys_of: Mapping[str, Collection[str]]) -> bool:
        """Copy the rows of these keys per workspace (a workspace whose rows are too many is left to the
        database); returns whether any workspace's rows were copied."""
        self.write_held()
        copy: dict[str, dict[str, list[tuple[int, int]]]] = {}
        for workspace_id, keys in keys_of.items():
            rows: dict[str, list[tuple[int, int]]] = {key: [] for key in keys}
            count = 0
            for chunk in _chunks(sorted(keys)):
                found = self.db_session.execute(
                    _KEY_ROWS_FOR, {"workspace_id": workspace_id, "keys": chunk, "limit": _PREFETCH_ROWS + 1}
                ).all()
                count += len(found)
                for key, problem_id, incident_id in found:
                    rows[key].append((problem_id, incident_id))
            if count <= _PREFETCH_ROWS:
                copy[workspace_id] = rows
        self._copy = copy or None
        return bool(copy)

    def copies(self, workspace_id: str) -> bool:
        """Whether lookups for this workspace are answered from the batch's copy."""
        return self._copy is not None and workspace_id in self._copy

    def forget(self) -> None:
        """Drop the batch's copy: the index changed in a way it does not follow."""
        self._copy = None

    def hits(
        self,
        *,
        workspace_id: str,
        facts: ProblemFacts,
        settings: CorrelationSettings,
        reached: Mapping[str, Reach],
    ) -> dict[int, list[int]]:
        """Problem id -> [incident id, strong key hits, weak key hits] of the problems (other than this
        one) that share an index key with ``facts``; from the batch's copy when it has them."""
        strong, weak = lookup_keys(facts, settings, reached)
        copied = None if self._copy is None else self._copy.get(workspace_id)
        if copied is not None and not (strong <= copied.keys() and weak <= copied.keys()):
            copied = None
        if copied is None:
            self.write_held()
        hits: dict[int, list[int]] = {}
        for keys, slot in ((strong, 1), (weak, 2)):
            for chunk in _chunks(sorted(keys)):
                if copied is None:
                    rows = self.db_session.execute(
                        _KEY_HITS, {"workspace_id": workspace_id, "keys": chunk, "limit": MAX_KEY_ROWS}
                    ).all()
                else:
                    # As the query would answer: ordered by incident, then problem, and as many.
                    rows = sorted(
                        (row for key in chunk for row in copied[key]), key=lambda row: (row[1], row[0])
                    )[:MAX_KEY_ROWS]
                for problem_id, incident_id in rows:
                    hit = hits.setdefault(problem_id, [incident_id, 0, 0])
                    hit[slot] += 1
        hits.pop(int(facts.problem_id), None)
        return hits

    def candidates(
        self,
        *,
        workspace_id: str,
        facts: ProblemFacts,
        settings: CorrelationSettings,
        reached: Mapping[str, Reach],
        known: dict[int, ProblemFacts] | None = None,
    ) -> list[Candidate]:
        """Problems of open incidents that share an index key with ``facts``, at most ``MAX_CANDIDATES``
        of them, those sharing the most strong keys first. Facts already in ``known`` are not read
        again (and those read are added to it)."""
        incident_of = choose(
            self.hits(workspace_id=workspace_id, facts=facts, settings=settings, reached=reached)
        )
        if not incident_of:
            return []
        known = {} if known is None else known
        load_facts(self.db_session, list(incident_of), known)
        return [
            Candidate(incident_id=incident_id, incident_rank=(incident_id,), facts=known[problem_id])
            for problem_id, incident_id in sorted(incident_of.items())
            if problem_id in known
        ]

    def add_problem(
        self, workspace_id: str, problem_id: int, incident_id: int, keys: set[str], *, fresh: bool = False
    ) -> None:
        """Make the problem's rows exactly ``keys`` under ``incident_id`` (``fresh``: it has none yet)."""
        existing: dict[str, int] = {}
        if not fresh:
            self.write_held()
            existing = dict(self.db_session.execute(_KEYS_OF_PROBLEM, {"problem_id": problem_id}).all())
        if set(existing) == keys and all(value == incident_id for value in existing.values()):
            return
        if not fresh:
            self.forget()
        elif self._copy is not None and (copied := self._copy.get(workspace_id)) is not None:
            for key in keys & copied.keys():
                copied[key].append((problem_id, incident_id))
        if existing:
            self.db_session.execute(_UNINDEX_PROBLEM, {"problem_id": problem_id})
        rows = [
            {"workspace_id": workspace_id, "key": key, "problem_id": problem_id, "incident_id": incident_id}
            for key in sorted(keys)
        ]
        if fresh and self._held is not None:
            self._held.extend(rows)
        elif rows:
            self.db_session.execute(_keys.insert(), rows)

    def add_incident(self, incident: Incident) -> None:
        """Index every problem of an incident that is (again) open."""
        self.db_session.flush()
        rows = self.db_session.execute(
            sa.select(*FACT_COLUMNS)
            .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
            .where(IncidentProblem.incident_id == incident.id)
        )
        for row in rows.all():
            self.add_problem(incident.workspace_id, row.id, incident.id, keys_for(facts_from(row)))

    def remove_incident(self, incident_id: int) -> None:
        """Take out the rows of an incident that is no longer open."""
        self.write_held()
        self.forget()
        self.db_session.execute(sa.delete(IncidentKey).where(IncidentKey.incident_id == incident_id))

    def remove_problem(self, problem_id: int) -> None:
        """Take out the rows of a problem that moved into an incident that is not open."""
        self.write_held()
        self.forget()
        self.db_session.execute(sa.delete(IncidentKey).where(IncidentKey.problem_id == problem_id))

    def move_incident(self, source_id: int, target: Incident) -> None:
        """The rows of a merged-away incident: they follow its problems into ``target`` when it is
        open, or go."""
        self.write_held()
        self.forget()
        if target.status == OPEN:
            self.db_session.execute(
                sa.update(IncidentKey)
                .where(IncidentKey.incident_id == source_id)
                .values(incident_id=target.id)
            )
        else:
            self.db_session.execute(sa.delete(IncidentKey).where(IncidentKey.incident_id == source_id))


def choose(hits: dict[int, list[int]]) -> dict[int, int]:
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


def _chunks(items: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]
