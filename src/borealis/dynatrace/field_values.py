"""Reading one field of a notification: text, enums, entities, tags, timestamps, nested details.

Senders drift (DESIGN 4): arrays sent as strings or empty strings, placeholders left unreplaced, unknown
enum values, numbers where text is expected. Each reader takes what can be understood and records in the
notification's ``warnings`` (or ``unreplaced``) what it could not.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from borealis import jsontext
from borealis.dynatrace.json_body import no_constant
from borealis.dynatrace.problem_notification import MERGED, OPEN, RESOLVED, ProblemNotification

_STATE_ALIASES = {"OPEN": OPEN, "RESOLVED": RESOLVED, "CLOSED": RESOLVED, "MERGED": MERGED}
# Every placeholder Dynatrace documents for custom integrations; a value still containing one was not
# replaced (a typo in the template, or a field this Dynatrace version does not know).
PLACEHOLDERS = frozenset(
    {
        "ProblemID",
        "PID",
        "State",
        "ProblemTitle",
        "ProblemSeverity",
        "ProblemImpact",
        "ProblemURL",
        "ImpactedEntity",
        "ImpactedEntities",
        "ImpactedEntityNames",
        "Tags",
        "ProblemDetailsJSON",
        "ProblemDetailsJSONv2",
        "ProblemDetailsText",
        "ProblemDetailsHTML",
        "ProblemDetailsMarkdown",
        "NamesOfImpactedEntities",
    }
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z][A-Za-z0-9]*)\}")
# Type tuples, not unions (``int | float``), which isinstance would build anew on every call.
NUMBER_TYPES = (int, float)
_NOT_TEXT = (bool, dict, list)


def has_unreplaced(value: str) -> bool:
    """Whether a documented placeholder (``{PID}``) is still in the text: the template was not filled."""
    if "{" not in value:
        return False
    return any(match.group(1) in PLACEHOLDERS for match in _PLACEHOLDER.finditer(value))


def set_state(notification: ProblemNotification, raw: str | None) -> None:
    """The state in our words (``CLOSED`` is ``RESOLVED``); an unknown one is kept as sent, with a warning."""
    notification.state_raw = raw
    if raw is None:
        return
    state = _STATE_ALIASES.get(raw.upper())
    if state is None:
        notification.warnings.append(f"unknown state {raw!r} kept as sent")
    notification.state = state or raw


def known_case(value: str | None, known: tuple[str, ...]) -> str | None:
    """Known enum values in Dynatrace's spelling; unknown ones verbatim."""
    if value is None:
        return None
    upper = value.upper()
    return upper if upper in known else value


def maybe_json(value: Any, name: str, notification: ProblemNotification) -> Any:
    """Arrays and objects sometimes arrive quoted, as JSON text; plain text is returned stripped."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    if not stripped:
        return None
    if stripped[0] in "[{":
        try:
            return jsontext.loads(stripped, parse_constant=no_constant)
        except (json.JSONDecodeError, RecursionError):
            pass
    if has_unreplaced(stripped):
        notification.unreplaced.append(name)
        return None
    if stripped[0] in "[{":
        notification.warnings.append(f"{name} is text that is not valid JSON; ignored")
        return None
    return stripped


def read_entities(value: Any, name: str, notification: ProblemNotification) -> list[dict[str, Any]] | None:
    """The impacted entities; ``[]`` for an empty value (Dynatrace said "none"), None when unreadable."""
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        return []
    value = maybe_json(value, name, notification)
    if value is None:
        return None
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, str):
        # Names only ("MyHost1, MyService1"): better than nothing for display and search.
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        notification.warnings.append(f"{name} is not a list of entities; ignored")
        return None
    entities = []
    for item in value:
        entity = read_entity(item)
        if entity is not None:
            entities.append(entity)
        else:
            notification.warnings.append(f"{name}: an item could not be read")
    return entities


def read_entity(item: Any) -> dict[str, Any] | None:
    """``{type, name, entity}`` (webhook) or ``{entityId: {id, type}, name}`` (API) as one shape."""
    if isinstance(item, str):
        item = item.strip()
        return {"entityId": None, "name": item, "type": None} if item else None
    if not isinstance(item, dict):
        return None
    entity_id = item.get("entity", item.get("entityId", item.get("id")))
    entity_type = item.get("type")
    if isinstance(entity_id, dict):
        entity_type = entity_type or entity_id.get("type")
        entity_id = entity_id.get("id")
    entity_id = clean_text(entity_id)
    name = clean_text(item.get("name", item.get("entityName")))
    entity_type = clean_text(entity_type) or _type_of(entity_id)
    if not entity_id and not name:
        return None
    return {"entityId": entity_id, "name": name, "type": entity_type}


def _type_of(entity_id: str | None) -> str | None:
    if entity_id and "-" in entity_id:
        prefix = entity_id.rsplit("-", 1)[0]
        return prefix if prefix.replace("_", "").isalpha() and prefix.isupper() else None
    return None


def read_tags(value: Any, notification: ProblemNotification) -> list[dict[str, Any]]:
    """``"a, key:value, [Kubernetes]ns:prod"`` (or a list) into ``{context, key, value}`` items."""
    if isinstance(value, str):
        return [_tag(part.strip()) for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        items = value
    elif value is None:
        return []
    else:
        notification.warnings.append("Tags is neither text nor a list; ignored")
        return []
    tags = []
    for item in items:
        if isinstance(item, dict):
            key = clean_text(item.get("key"))
            if key:
                tags.append(
                    {
                        "context": clean_text(item.get("context")) or "CONTEXTLESS",
                        "key": key,
                        "value": clean_text(item.get("value")),
                    }
                )
            continue
        if not isinstance(item, str) or not item.strip():
            continue
        tags.append(_tag(item.strip()))
    return tags


def _tag(text: str) -> dict[str, Any]:
    context = "CONTEXTLESS"
    if text.startswith("[") and "]" in text:
        context, text = text[1:].split("]", 1)
        context, text = context.strip() or "CONTEXTLESS", text.strip()
    key, sep, value = text.partition(":")
    return {"context": context, "key": key.strip(), "value": value.strip() if sep else None}


def read_details(value: Any, name: str, notification: ProblemNotification) -> dict[str, Any] | None:
    """A ``ProblemDetailsJSON*`` value as an object, or None (with a warning) when it is not one."""
    value = maybe_json(value, name, notification)
    if value is None:
        return None
    if not isinstance(value, dict):
        notification.warnings.append(f"{name} is not an object; ignored")
        return None
    return value


def read_ms(value: Any, notification: ProblemNotification) -> datetime | None:
    """Epoch milliseconds (``-1`` meaning "not yet") as a UTC datetime."""
    if type(value) is not int:  # an integer is the usual case: skip these checks for it
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, bool) or not isinstance(value, NUMBER_TYPES):
            return None
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        notification.warnings.append(f"timestamp {value!r} is out of range; ignored")
        return None


def latest_time(values: list[Any], notification: ProblemNotification) -> datetime | None:
    """The newest of these epoch-millisecond values: how a delivery's age is judged."""
    times = [time for value in values if (time := read_ms(value, notification)) is not None]
    return max(times) if times else None


def clean_text(value: Any) -> str | None:
    """A value as stripped text; None for empty, containers and booleans."""
    if type(value) is str:  # the usual case: skip the checks below
        return value.strip() or None
    if value is None or isinstance(value, _NOT_TEXT):
        return None
    value = str(value).strip()
    return value or None
