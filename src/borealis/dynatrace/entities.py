"""The entity cache: monitored entities as Dynatrace returned them, and the topology their
relationships make.

Enrichment and RCA store what they fetch here; correlation walks the relationships (calls, runs on,
process of, instance of) and RCA reads cached documents instead of asking Dynatrace again. An entity is
trusted for ``ENTITY_TTL``; its relationships count only while it has not expired.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.models import CachedEntity, Connection, EntityRelation

# How long a fetched entity (and the relationships it lists) is trusted before it is fetched again.
ENTITY_TTL = timedelta(hours=6)
# Relationships kept per entity: a host can list thousands of processes.
MAX_RELATIONS_PER_ENTITY = 500
_CHUNK = 400

_entities = CachedEntity.__table__
_relations = EntityRelation.__table__


def _insert(db_session: Session) -> Any:
    return postgresql.insert if db_session.get_bind().dialect.name == "postgresql" else sqlite.insert


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def cached_entities(
    *, db_session: Session, connection_id: str, entity_ids: Iterable[str], now: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """The unexpired cached documents of these entities, by entity id (RCA and enrichment read these
    instead of calling ``GET /api/v2/entities/{id}`` again)."""
    now = now or utcnow()
    wanted = sorted(set(entity_ids))
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(wanted):
        rows = db_session.execute(
            sa.select(_entities.c.entity_id, _entities.c.document).where(
                _entities.c.connection_id == connection_id,
                _entities.c.entity_id.in_(chunk),
                _entities.c.expires_at > now,
            )
        )
        for entity_id, document in rows:
            found[entity_id] = document
    return found


def cached_documents(
    *, db_session: Session, connection_id: str, entity_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """The cached documents of these entities in the order given, expired ones included (for showing)."""
    found: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(entity_ids))):
        rows = db_session.execute(
            sa.select(_entities.c.entity_id, _entities.c.document).where(
                _entities.c.connection_id == connection_id, _entities.c.entity_id.in_(chunk)
            )
        )
        for entity_id, document in rows:
            found[entity_id] = document
    return [found[entity_id] for entity_id in dict.fromkeys(entity_ids) if entity_id in found]


def relations_of(document: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(from, relation, to)`` edges an entity document lists: its fromRelationships point away from
    it, its toRelationships point at it."""
    entity_id = document.get("entityId")
    if not isinstance(entity_id, str) or not entity_id:
        return []
    edges: list[tuple[str, str, str]] = []
    for key, outward in (("fromRelationships", True), ("toRelationships", False)):
        relationships = document.get(key)
        if not isinstance(relationships, dict):
            continue
        for relation, targets in relationships.items():
            if not isinstance(relation, str) or not isinstance(targets, list):
                continue
            for target in targets:
                other = target.get("id") if isinstance(target, dict) else None
                if not isinstance(other, str) or not other or len(other) > 200 or len(relation) > 200:
                    continue
                edges.append((entity_id, relation, other) if outward else (other, relation, entity_id))
    return sorted(set(edges))[:MAX_RELATIONS_PER_ENTITY]


def store_entities(
    *,
    db_session: Session,
    connection_id: str,
    documents: Sequence[Mapping[str, Any]],
    now: datetime | None = None,
    ttl: timedelta = ENTITY_TTL,
) -> int:
    """Cache entity documents (replacing what was cached for them, relationships included); returns
    how many were stored."""
    now = now or utcnow()
    expires_at = now + ttl
    by_id: dict[str, Mapping[str, Any]] = {}
    for document in documents:
        entity_id = document.get("entityId")
        if isinstance(entity_id, str) and 0 < len(entity_id) <= 200:
            by_id[entity_id] = document
    if not by_id:
        return 0
    insert = _insert(db_session)
    for entity_id in sorted(by_id):  # one order for every writer
        document = dict(by_id[entity_id])
        values = {
            "entity_type": _text(document.get("type"), 200) or entity_id.rsplit("-", 1)[0],
            "display_name": _text(document.get("displayName"), None),
            "document": document,
            "fetched_at": now,
            "expires_at": expires_at,
        }
        db_session.execute(
            insert(_entities)
            .values(connection_id=connection_id, entity_id=entity_id, **values)
            .on_conflict_do_update(index_elements=["connection_id", "entity_id"], set_=values)
        )
    ids = sorted(by_id)
    for chunk in _chunks(ids):
        db_session.execute(
            sa.delete(_relations).where(
                _relations.c.connection_id == connection_id, _relations.c.source_entity_id.in_(chunk)
            )
        )
    rows = [
        {
            "connection_id": connection_id,
            "source_entity_id": entity_id,
            "from_entity_id": left,
            "relation": relation,
            "to_entity_id": right,
            "expires_at": expires_at,
        }
        for entity_id in ids
        for left, relation, right in relations_of(by_id[entity_id])
    ]
    if rows:
        db_session.execute(_relations.insert(), rows)
    return len(by_id)


def prune_entities(*, db_session: Session, connection_id: str, expired_before: datetime) -> int:
    """Forget cached entities (and their relationships) that expired before the given time."""
    db_session.execute(
        sa.delete(_relations).where(
            _relations.c.connection_id == connection_id, _relations.c.expires_at < expired_before
        )
    )
    result = db_session.execute(
        sa.delete(_entities).where(
            _entities.c.connection_id == connection_id, _entities.c.expires_at < expired_before
        )
    )
    return result.rowcount or 0


def _text(value: Any, limit: int | None) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if limit is None else value[:limit]


# --- the topology the relationships make -------------------------------------------------------------


# Dynatrace relationship names that make two entities depend on each other for correlation. Others
# (isNetworkClientOfHost, isSiteOf, candidates, ...) connect too much to be evidence of a shared cause.
TOPOLOGY_RELATIONS = frozenset(
    {"calls", "runsOn", "runsOnHost", "runsOnProcessGroupInstance", "isProcessOf", "isInstanceOf"}
)


class CachedTopology:
    """One connection's cached relationships; one query per hop (per chunk of the frontier)."""

    def __init__(self, db_session: Session, connection_id: str) -> None:
        self._db_session = db_session
        self._connection_id = connection_id

    def neighbors(self, entity_ids: Collection[str]) -> Mapping[str, Collection[str]]:
        wanted = sorted(set(entity_ids))
        found: dict[str, set[str]] = {}
        now = utcnow()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            statement = sa.select(_relations.c.from_entity_id, _relations.c.to_entity_id).where(
                _relations.c.connection_id == self._connection_id,
                _relations.c.relation.in_(sorted(TOPOLOGY_RELATIONS)),
                _relations.c.expires_at > now,
                sa.or_(_relations.c.from_entity_id.in_(chunk), _relations.c.to_entity_id.in_(chunk)),
            )
            chosen = set(chunk)
            for left, right in self._db_session.execute(statement):
                if left == right:
                    continue
                if left in chosen:
                    found.setdefault(left, set()).add(right)
                if right in chosen:
                    found.setdefault(right, set()).add(left)
        return found


def cached_topology(db_session: Session, workspace_id: str) -> CachedTopology | None:
    """The cached topology of the workspace's connection (None without a connection)."""
    connection_id = db_session.scalar(sa.select(Connection.id).where(Connection.workspace_id == workspace_id))
    if connection_id is None:
        return None
    return CachedTopology(db_session, connection_id)


class CachedEntities:
    """A client that answers ``get_entity`` from entity documents already cached (read beforehand with
    ``cached_entities``) and passes every other call through: RCA's evidence
    gathering reads the entities enrichment fetched instead of asking Dynatrace again."""

    def __init__(self, client: DynatraceClient, cached: Mapping[str, dict[str, Any]]) -> None:
        self._client = client
        self._cached = dict(cached)

    def get_entity(self, entity_id: str, fields: Any = None) -> dict[str, Any]:
        document = self._cached.get(entity_id)
        return dict(document) if document is not None else self._client.get_entity(entity_id, fields=fields)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
