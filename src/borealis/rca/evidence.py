"""Evidence: what a root-cause report may cite and what could not be checked.

Every item the analyzer or the narrative cites is an ``Evidence`` with a short id (``E1``, ``E2``...), the
query that produced it, its time range, a one-line summary and a deep link back to Dynatrace. Whatever a
missing scope, a 429 or an error kept us from looking at is a ``NotChecked`` entry, never silently dropped.
Pure: no database, no network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from borealis.dynatrace.errors import RateLimited, ResourceNotFound, ScopeMissing
from borealis.errors import BorealisError
from borealis.schemas import CamelModel

ENTITY_ID_PATTERN = re.compile(r"\b[A-Z][A-Z0-9_]*-[0-9A-F]{16}\b")


class EvidenceKind(StrEnum):
    PROBLEM = "problem"  # a Dynatrace problem: title, times, impacted entities, its root cause, impact
    FINDING = "finding"  # one entry of the problem's evidenceDetails (Dynatrace's own root-cause analysis)
    ENTITY = "entity"  # an entity with its relationships (the topology)
    EVENT = "event"  # an event on a suspected entity: deployment, configuration change, restart...
    LOGS = "logs"  # error log records of a suspected entity
    METRIC = "metric"  # a key metric of a suspected entity over the window


class EntityRef(CamelModel):
    id: str
    name: str | None = None
    type: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name} ({self.id})" if self.name and self.name != self.id else self.id


class Evidence(CamelModel):
    id: str
    kind: EvidenceKind
    summary: str
    source: str
    start: datetime | None = None
    end: datetime | None = None
    entity: EntityRef | None = None
    link: str | None = None
    event_type: str | None = None
    root_cause_relevant: bool = False
    problem_id: str | None = None
    data: dict[str, Any] = {}


NotCheckedCode = Literal["missing_scope", "rate_limited", "error", "not_found", "budget"]


class NotChecked(CamelModel):
    """Something the report could not look at, and why (so a reader knows the gap is not a finding)."""

    what: str
    reason: str
    code: NotCheckedCode
    scope: str | None = None
    # The entities this gap leaves unexamined, when known (the analyzer treats them as unknown, not healthy).
    entity_ids: list[str] = []

    @classmethod
    def for_error(cls, what: str, error: BorealisError, entity_ids: Sequence[str] = ()) -> NotChecked:
        """The entry for a call that failed: its code from the error's kind, so the next steps can say
        "grant the scope" or "re-run later", and the error's own message, which says what to fix."""
        code: NotCheckedCode = "error"
        scope: str | None = None
        reason = error.message
        if isinstance(error, ScopeMissing):
            reason, code, scope = f"the token lacks the {error.scope} scope", "missing_scope", error.scope
        elif isinstance(error, RateLimited):
            reason, code = f"Dynatrace kept answering 429 (rate limit): {error.message}", "rate_limited"
        elif isinstance(error, ResourceNotFound):
            reason, code = f"Dynatrace does not know it: {error.message}", "not_found"
        return cls(what=what, reason=reason, code=code, scope=scope, entity_ids=list(entity_ids))


# Event types that mean somebody changed something: the strongest hint when they come just before a start.
CHANGE_EVENT_TYPES = frozenset(
    {
        "CUSTOM_DEPLOYMENT",
        "CUSTOM_CONFIGURATION",
        "CUSTOM_CONFIG",
        "DEPLOYMENT",
        "CONFIGURATION_CHANGE",
        "PROCESS_VERSION_CHANGE",
        "MARKED_FOR_TERMINATION",
    }
)
RESTART_EVENT_TYPES = frozenset({"PROCESS_RESTART", "HOST_REBOOT", "CONTAINER_RESTART", "OSI_HOST_REBOOT"})
# Informational events: they describe, they do not show anything going wrong.
INFO_EVENT_TYPES = frozenset({"CUSTOM_ANNOTATION", "CUSTOM_INFO", "MARKED_FOR_TERMINATION"})
INFRASTRUCTURE_TYPES = frozenset(
    {
        "HOST",
        "HOST_GROUP",
        "DISK",
        "NETWORK_INTERFACE",
        "KUBERNETES_NODE",
        "KUBERNETES_CLUSTER",
        "AWS_AVAILABILITY_ZONE",
        "AZURE_REGION",
        "GEOLOC_SITE",
        "DCRUM_APPLICATION",
        "HYPERVISOR",
        "VIRTUALMACHINE",
        "EC2_INSTANCE",
    }
)
APPLICATION_TYPES = frozenset({"APPLICATION", "MOBILE_APPLICATION", "CUSTOM_APPLICATION", "SYNTHETIC_TEST"})


def entity_type_of(entity_id: str) -> str | None:
    """Dynatrace ids carry their type: ``SERVICE-1A2B...`` is a SERVICE."""
    prefix, sep, _ = entity_id.rpartition("-")
    return prefix if sep and prefix else None


def entity_ref(raw: Any) -> EntityRef | None:
    """An entity from any of Dynatrace's shapes: ``{entityId: {id, type}, name}``, ``{id, type}``,
    ``{entity: id, name, type}`` (webhook), or a bare id."""
    if isinstance(raw, str):
        return EntityRef(id=raw, type=entity_type_of(raw)) if raw else None
    if not isinstance(raw, dict):
        return None
    inner = raw.get("entityId")
    if isinstance(inner, dict):
        entity_id = inner.get("id")
        entity_type = inner.get("type")
    else:
        entity_id = inner if isinstance(inner, str) else raw.get("id") or raw.get("entity")
        entity_type = raw.get("type")
    if not isinstance(entity_id, str) or not entity_id:
        return None
    name = raw.get("name") or raw.get("displayName")
    return EntityRef(
        id=entity_id,
        name=str(name) if name else None,
        type=str(entity_type) if entity_type else entity_type_of(entity_id),
    )


def from_millis(value: Any) -> datetime | None:
    """Dynatrace timestamps: UTC milliseconds (number or numeric string); -1 means 'not yet'."""
    try:
        millis = int(value)
    except (TypeError, ValueError):
        return None
    if millis <= 0:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def quote_data(text: Any, limit: int = 160) -> str:
    """Text from Dynatrace or a payload, shortened and on one line, for use inside a summary."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
