"""The entity cache as the topology correlation walks (``borealis.incidents.topology.Topology``).

Edges come from the relationships of cached entities (calls, runs on, process of, instance of), are
followed in both directions, and count only while the entity that listed them has not expired.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.dynatrace.models import Connection
from borealis.incidents.topology import NO_TOPOLOGY, Topology, use_topology_source
from borealis.sync.models import EntityRelation

# Dynatrace relationship names that make two entities depend on each other for correlation. Others
# (isNetworkClientOfHost, isSiteOf, candidates, ...) connect too much to be evidence of a shared cause.
TOPOLOGY_RELATIONS = frozenset(
    {"calls", "runsOn", "runsOnHost", "runsOnProcessGroupInstance", "isProcessOf", "isInstanceOf"}
)
_CHUNK = 400

_relations = EntityRelation.__table__


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


def topology_for_user(db_session: Session, user_id: str) -> Topology:
    """The user's connection's cached topology (``NO_TOPOLOGY`` without a connection)."""
    connection_id = db_session.scalar(sa.select(Connection.id).where(Connection.user_id == user_id))
    if connection_id is None:
        return NO_TOPOLOGY
    return CachedTopology(db_session, connection_id)


def install() -> None:
    """Make correlation read the entity cache (idempotent)."""
    use_topology_source(topology_for_user)
