"""Dynatrace's query language as the simulated environment reads it: selectors and timeframes.

Entity selectors (``/entities``, ``/metrics/query``, ``/events``) are parsed, not pattern-matched:
``parse_entity_selector`` reads nested criteria (``toRelationships.calls(type(SERVICE),entityId("X"))``,
``not(...)``, ``caseSensitive(...)``) and quoted values with commas, and enforces the spec's rules (type or
entityId, one type, 2,000 characters); ``EntityMatcher`` evaluates them against the stored entities.
Times are UTC milliseconds, ISO 8601, or relative (``now-2h``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_RELATIVE = re.compile(r"^now(?:-(\d+)([smhdw]))?$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_timeframe(value: str | None, default: datetime) -> datetime:
    """Dynatrace's time formats: UTC milliseconds, ISO 8601, or relative ``now-2h``."""
    if value is None or value == "":
        return default
    if value.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = relative.groups()
        offset = int(amount) * _UNIT_SECONDS[unit] if amount else 0
        return datetime.now(UTC) - timedelta(seconds=offset)
    parsed = datetime.fromisoformat(value.replace(" ", "T").replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# ---- selectors (spec: entitySelector on /entities, /metrics/query, /events; problemSelector, eventSelector)

MAX_SELECTOR_LENGTH = 2000
RELATIONSHIP_DIRECTIONS = ("fromRelationships", "toRelationships")
# Criteria whose argument is itself a selector (or one criterion), not a list of values.
NESTING_CRITERIA = ("not", "caseSensitive")
_NAME_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_.")


class SelectorError(ValueError):
    """A selector Dynatrace refuses: the handler answers 400 with the message."""


@dataclass(frozen=True)
class Criterion:
    """One ``name(arguments)`` of a selector: quoted or bare values, or a nested selector."""

    name: str
    values: tuple[str, ...] = ()
    nested: tuple[Criterion, ...] = ()

    @property
    def relationship(self) -> tuple[str, str] | None:
        """``("toRelationships", "calls")`` for ``toRelationships.calls(...)``, else None."""
        direction, dot, name = self.name.partition(".")
        if dot and name and direction in RELATIONSHIP_DIRECTIONS:
            return direction, name
        return None


class _SelectorParser:
    """A recursive-descent reader, so nesting and quoted commas or parentheses never confuse it.

    Grammar: ``selector := criterion ("," criterion)*``; ``criterion := name "(" (selector | values) ")"``;
    a value is ``"quoted"`` (``~"`` and ``~~`` escape a quote and a tilde) or bare up to ``,`` or ``)``.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> tuple[Criterion, ...]:
        criteria = self._selector()
        if self._peek():
            raise self._error("unexpected text")
        return criteria

    def _error(self, what: str) -> SelectorError:
        return SelectorError(f"Invalid selector: {what} at position {self.pos}: {self.text!r}")

    def _peek(self) -> str:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            raise self._error(f"expected {char!r}")
        self.pos += 1

    def _selector(self) -> tuple[Criterion, ...]:
        found = [self._criterion()]
        while self._peek() == ",":
            self.pos += 1
            found.append(self._criterion())
        return tuple(found)

    def _criterion(self) -> Criterion:
        self._peek()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _NAME_CHARACTERS:
            self.pos += 1
        name = self.text[start : self.pos]
        if not name:
            raise self._error("expected a criterion name")
        self._expect("(")
        probe = Criterion(name)
        if probe.relationship or name in NESTING_CRITERIA:
            criterion = Criterion(name, nested=self._selector())
        else:
            criterion = Criterion(name, values=self._values())
        self._expect(")")
        return criterion

    def _values(self) -> tuple[str, ...]:
        if self._peek() == ")":
            return ()
        found = [self._value()]
        while self._peek() == ",":
            self.pos += 1
            found.append(self._value())
        return tuple(found)

    def _value(self) -> str:
        if self._peek() == '"':
            return self._quoted()
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ',()"':
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if not value:
            raise self._error("expected a value")
        return value

    def _quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "~" and self.pos + 1 < len(self.text) and self.text[self.pos + 1] in '"~':
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == '"':
                return "".join(out)
            out.append(char)
        raise self._error("unterminated quoted value")


def parse_criteria(selector: str) -> tuple[Criterion, ...]:
    """The criteria of a selector; raises ``SelectorError`` for text Dynatrace would refuse."""
    return _SelectorParser(selector).parse()


def parse_selector(selector: str | None) -> dict[str, list[str]]:
    """``status("open"),severityLevel("ERROR","AVAILABILITY")`` → ``{"status": ["open"], ...}`` (flat
    selectors: problems, events)."""
    if not selector:
        return {}
    return {criterion.name: list(criterion.values) for criterion in parse_criteria(selector)}


def entity_type_of(entity_id: str) -> str:
    return entity_id.rsplit("-", 1)[0]


def _check_entity_selector(criteria: tuple[Criterion, ...]) -> None:
    """The spec's rules for every entity selector, nested ones included: type or entityId is set, one
    type only, the ids of one type, type never negated."""
    names = [criterion.name for criterion in criteria]
    if "type" not in names and "entityId" not in names:
        raise SelectorError('entitySelector must set type("TYPE") or entityId("id")')
    for criterion in criteria:
        if criterion.name == "type" and len(criterion.values) != 1:
            raise SelectorError("Only one entity type can be selected: type() takes exactly one value.")
        if criterion.name == "entityId":
            if not criterion.values:
                raise SelectorError("entityId() needs at least one id.")
            if len({entity_type_of(value) for value in criterion.values}) > 1:
                raise SelectorError("All requested entities must be of the same type.")
        if criterion.relationship:
            _check_entity_selector(criterion.nested)
        elif criterion.name in NESTING_CRITERIA:
            _check_nested_criterion(criterion)


def _check_nested_criterion(criterion: Criterion) -> None:
    if len(criterion.nested) != 1:
        raise SelectorError(f"{criterion.name}() takes exactly one criterion.")
    (inner,) = criterion.nested
    if criterion.name == "not" and inner.name == "type":
        raise SelectorError("The type criterion cannot be negated.")
    if criterion.name == "caseSensitive" and not inner.name.startswith("entityName"):
        raise SelectorError("caseSensitive() takes an entityName criterion.")
    if inner.relationship:
        _check_entity_selector(inner.nested)


def parse_entity_selector(selector: str) -> tuple[Criterion, ...]:
    """An entity selector checked as Dynatrace checks it (length, syntax, type or entityId)."""
    if len(selector) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"The entitySelector must not be longer than {MAX_SELECTOR_LENGTH} characters.")
    criteria = parse_criteria(selector)
    _check_entity_selector(criteria)
    return criteria


Resolver = Callable[[str], dict[str, Any]]


class EntityMatcher:
    """Evaluates entity-selector criteria against the fake's entities.

    An id the fake holds no document for (metric series and events may name one) is judged on its id alone:
    its type is the id's prefix and it has no name, properties or relationships.
    """

    def __init__(self, entities: dict[str, dict[str, Any]], criteria: tuple[Criterion, ...]) -> None:
        self.entities = entities
        self.criteria = criteria

    def document(self, entity_id: str) -> dict[str, Any]:
        found = self.entities.get(entity_id)
        if found is not None:
            return found
        return {"entityId": entity_id, "type": entity_type_of(entity_id), "displayName": entity_id}

    def matches_id(self, entity_id: str) -> bool:
        return self.matches(self.document(entity_id))

    def matches(self, entity: dict[str, Any], criteria: tuple[Criterion, ...] | None = None) -> bool:
        chosen = self.criteria if criteria is None else criteria
        return all(self._holds(criterion, entity) for criterion in chosen)

    def _holds(self, criterion: Criterion, entity: dict[str, Any], *, case_sensitive: bool = False) -> bool:
        name, values = criterion.name, criterion.values
        if criterion.relationship:
            direction, relation = criterion.relationship
            related = (entity.get(direction) or {}).get(relation) or []
            return any(self.matches(self.document(item["id"]), criterion.nested) for item in related)
        if name == "not":
            return not self._holds(criterion.nested[0], entity)
        if name == "caseSensitive":
            return self._holds(criterion.nested[0], entity, case_sensitive=True)
        if name == "type":
            return (entity.get("type") or entity_type_of(entity["entityId"])) == values[0]
        if name == "entityId":
            return entity["entityId"] in values
        if name.startswith("entityName"):
            return _name_matches(name, values, str(entity.get("displayName") or ""), case_sensitive)
        if name == "tag":
            return any(_tag_matches(value, entity.get("tags") or []) for value in values)
        if name == "mzId":
            return any(str(zone.get("id")) in values for zone in entity.get("managementZones") or [])
        if name == "mzName":
            return any(zone.get("name") in values for zone in entity.get("managementZones") or [])
        if name.startswith(("firstSeenTms.", "lastSeenTms.")):
            return _time_matches(name, values, entity)
        return _attribute_matches(name, values, entity.get("properties") or {})


def _name_matches(name: str, values: tuple[str, ...], display: str, case_sensitive: bool) -> bool:
    """``entityName`` CONTAINS; ``.startsWith``, ``.equals``, ``.in`` as documented; case-insensitive unless
    wrapped in ``caseSensitive``."""
    fold = (lambda text: text) if case_sensitive else str.casefold
    shown = fold(display)
    wanted = [fold(value) for value in values]
    operator = name.partition(".")[2]
    if operator == "startsWith":
        return any(shown.startswith(value) for value in wanted)
    if operator in ("equals", "in"):
        return shown in wanted
    if operator:
        raise SelectorError(f"Unknown entity name operator: {name}")
    return any(value in shown for value in wanted)


def _tag_matches(value: str, tags: list[dict[str, Any]]) -> bool:
    """``[context]key:value``, ``key:value`` or ``key``, as the spec describes tag criteria."""
    context = None
    if value.startswith("[") and "]" in value:
        context, _, value = value[1:].partition("]")
    key, colon, tag_value = value.replace("\\:", "\0").partition(":")
    key, tag_value = key.replace("\0", ":"), tag_value.replace("\0", ":")
    for tag in tags:
        if context is not None and tag.get("context") != context:
            continue
        if tag.get("key") == key and (not colon or tag.get("value") == tag_value):
            return True
    return False


def _time_matches(name: str, values: tuple[str, ...], entity: dict[str, Any]) -> bool:
    field_name, _, operator = name.partition(".")
    if len(values) != 1 or operator not in ("lt", "lte", "gt", "gte"):
        raise SelectorError(f"Invalid criterion {name}")
    try:
        moment = to_millis(parse_timeframe(values[0], datetime.now(UTC)))
    except ValueError as exc:
        raise SelectorError(f"Invalid timestamp in {name}: {values[0]}") from exc
    seen = entity.get(field_name)
    if seen is None:
        return False
    return {
        "lt": seen < moment,
        "lte": seen <= moment,
        "gt": seen > moment,
        "gte": seen >= moment,
    }[operator]


def _attribute_matches(name: str, values: tuple[str, ...], properties: dict[str, Any]) -> bool:
    """``<attribute>("v1","v2")`` and ``<attribute>.exists()`` over the entity's properties."""
    if name.endswith(".exists"):
        return properties.get(name[: -len(".exists")]) is not None
    held = properties.get(name)
    if held is None:
        return False
    items = held if isinstance(held, list) else [held]
    return any(_text(item) in values for item in items)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
