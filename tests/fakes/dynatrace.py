"""A fake Dynatrace environment: a real HTTP server speaking the Environment API (spec 1.254.47).

Tests edit ``FakeDynatrace`` directly: tokens (scopes, enabled, expiry), problems, entities, and failures
per path. Every endpoint authenticates like Dynatrace (``Authorization: Api-Token ...``; 401 for an unknown,
disabled or expired token, 403 naming the missing scope) and answers errors in Dynatrace's envelope
``{"error": {"code", "message"}}``.

Adding an endpoint (events, logs, metrics, settings): write a handler ``(fake, request) -> Response`` and
register it with ``@endpoint("GET", "/api/v2/events", scope="events.read")``. Paged lists use
``fake.page(request, items, "events")``, which implements nextPageKey as Dynatrace does.

Entity selectors (``/entities``, ``/metrics/query``, ``/events``) are parsed, not pattern-matched:
``parse_entity_selector`` reads nested criteria (``toRelationships.calls(type(SERVICE),entityId("X"))``,
``not(...)``, ``caseSensitive(...)``) and quoted values with commas, and enforces the spec's rules (type or
entityId, one type, 2,000 characters); ``EntityMatcher`` evaluates them against the stored entities.
Metrics are averaged into slots of the requested resolution, stamped at the end of each slot.

The environment is served both at the root (SaaS: ``https://{id}.live.dynatrace.com``) and under
``/e/{environment_id}`` (Managed). With ``managed = True`` only the ``/e/{id}`` form answers; the root
answers 404 with a web page, as a Managed cluster's UI would.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import fnmatch
import json
import re
import secrets
import string
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.support.server import serve_in_thread

DEFAULT_CLUSTER_VERSION = "1.254.47.20221025-144524"
DEFAULT_ENVIRONMENT_ID = "abc12345"
DEFAULT_PAGE_SIZE = 50
PROBLEM_NOTIFICATION_SCHEMA = "builtin:problem.notifications"
ALERTING_PROFILE_SCHEMA = "builtin:alerting.profile"
DEFAULT_ALERTING_PROFILE = "Default"
SECRET_MASK = "*" * 10
MAX_PAGE_SIZE = 500
SCOPE_TITLES = {
    "problems.read": "Read problems",
    "entities.read": "Read entities",
    "events.read": "Read events",
    "logs.read": "Read logs",
    "metrics.read": "Read metrics",
    "settings.read": "Read settings",
    "settings.write": "Write settings",
    "DataExport": "Access problem and event feed, metrics, and topology",
    "apiTokens.read": "Read API tokens",
    "ReadConfig": "Read configuration",
}
ALL_SCOPES = (
    "problems.read",
    "entities.read",
    "events.read",
    "logs.read",
    "metrics.read",
    "settings.read",
    "settings.write",
    "DataExport",
)
NOT_FOUND_PAGE = (
    "<!DOCTYPE html><html><head><title>Dynatrace</title></head><body>Page not found</body></html>"
)


@dataclass
class FakeToken:
    secret: str
    scopes: list[str]
    enabled: bool = True
    expires_at: datetime | None = None
    name: str = "borealis"
    owner: str = "sre@example.com"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=1))

    @property
    def id(self) -> str:
        """Prefix and public part, as Dynatrace shows it; never the secret part."""
        return ".".join(self.secret.split(".")[:2])

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


@dataclass
class Failure:
    """What one matching request gets instead of the normal answer."""

    pattern: str
    method: str | None = None
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    html: bool = False
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return fnmatch.fnmatchcase(path, self.pattern)


@dataclass
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


Handler = Callable[["FakeDynatrace", Request], Awaitable[Response] | Response]


@dataclass
class _Endpoint:
    method: str
    path: str
    handler: Handler
    scope: str | None


_ENDPOINTS: list[_Endpoint] = []


def endpoint(method: str, path: str, *, scope: str | None) -> Callable[[Handler], Handler]:
    """Register a handler for ``path`` (relative to the environment root); ``scope=None``: any token."""

    def register(handler: Handler) -> Handler:
        _ENDPOINTS.append(_Endpoint(method, path, handler, scope))
        return handler

    return register


def dt_error(status: int, message: str, **extra: Any) -> JSONResponse:
    """Dynatrace's error envelope."""
    return JSONResponse({"error": {"code": status, "message": message, **extra}}, status_code=status)


def new_token_secret() -> str:
    """A token in Dynatrace's format: ``dt0c01.<24>.<64>``."""
    alphabet = string.ascii_uppercase + string.digits
    public = "".join(secrets.choice(alphabet) for _ in range(24))
    private = "".join(secrets.choice(alphabet) for _ in range(64))
    return f"dt0c01.{public}.{private}"


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


def selector_error(exc: SelectorError, parameter: str = "entitySelector") -> JSONResponse:
    """A refused selector in Dynatrace's envelope, naming the query parameter."""
    return dt_error(
        400,
        str(exc),
        constraintViolations=[{"path": parameter, "message": str(exc), "parameterLocation": "QUERY"}],
    )


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


_UNSET = object()


class FakeDynatrace:
    """The state of one fake environment and the ASGI app that serves it."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self.app = self._build_app()
        self.reset()

    # ---- state ------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything tests added: a fresh environment with no tokens."""
        with self._lock:
            self.environment_id = DEFAULT_ENVIRONMENT_ID
            self.managed = False
            self.cluster_version = DEFAULT_CLUSTER_VERSION
            self.tokens: dict[str, FakeToken] = {}
            self.problems: dict[str, dict[str, Any]] = {}
            self.entities: dict[str, dict[str, Any]] = {}
            self.failures: list[Failure] = []
            self.requests: list[RecordedRequest] = []
            # How the last page says "no more": "absent", "null" (JSON null) or "string-null" ("null").
            self.last_page_key = "absent"
            # Lie about totalCount (Dynatrace's can disagree with the pages); None: the true count.
            self.total_count_override: int | None = None
            self._pages: dict[str, tuple[str, list[dict[str, Any]], int, int]] = {}
            # Events (v2 shape), log records (with entity attributes in additionalColumns), and metric
            # series per metric key: {"dimensionMap", "dimensions", "timestamps", "values"}.
            self.events: list[dict[str, Any]] = []
            self.logs: list[dict[str, Any]] = []
            self.metrics: dict[str, list[dict[str, Any]]] = {}
            # Settings 2.0 objects by objectId (SettingsObject shape, secrets stored in clear); every
            # environment starts with the alerting profile named Default.
            self.settings_objects: dict[str, dict[str, Any]] = {}
            self._settings_clock = 0
        self.default_alerting_profile = self.add_alerting_profile(DEFAULT_ALERTING_PROFILE)

    @property
    def environment_url(self) -> str:
        """The URL a user would paste: the root (SaaS form) or ``/e/{id}`` when managed."""
        return f"{self.url}/e/{self.environment_id}" if self.managed else self.url

    def add_token(
        self,
        scopes: list[str] | tuple[str, ...] = ALL_SCOPES,
        *,
        enabled: bool = True,
        expires_at: datetime | None = None,
        name: str = "borealis",
    ) -> str:
        """Create a token and return its secret."""
        secret = new_token_secret()
        with self._lock:
            self.tokens[secret] = FakeToken(
                secret=secret, scopes=list(scopes), enabled=enabled, expires_at=expires_at, name=name
            )
        return secret

    def token(self, secret: str) -> FakeToken:
        return self.tokens[secret]

    def add_problem(self, **fields: Any) -> dict[str, Any]:
        """Store a problem in the v2 API shape; unspecified fields get plausible values."""
        now = datetime.now(UTC)
        number = len(self.problems) + 1
        problem: dict[str, Any] = {
            "problemId": f"-{1000000000000000000 + number}_{to_millis(now)}V2",
            "displayId": f"P-{24000 + number}",
            "title": f"Problem {number}",
            "impactLevel": "SERVICES",
            "severityLevel": "ERROR",
            "status": "OPEN",
            "affectedEntities": [],
            "impactedEntities": [],
            "rootCauseEntity": None,
            "managementZones": [],
            "entityTags": [],
            "problemFilters": [],
            "startTime": to_millis(now - timedelta(minutes=5)),
            "endTime": -1,
        }
        problem.update(fields)
        with self._lock:
            self.problems[problem["problemId"]] = problem
        return problem

    def add_entity(self, entity_id: str, display_name: str | None = None, **fields: Any) -> dict[str, Any]:
        """Store a monitored entity (v2 shape); relationships go in fromRelationships/toRelationships."""
        entity: dict[str, Any] = {
            "entityId": entity_id,
            "type": entity_id.split("-")[0],
            "displayName": display_name or entity_id,
            "firstSeenTms": to_millis(datetime.now(UTC) - timedelta(days=7)),
            "lastSeenTms": to_millis(datetime.now(UTC)),
            "properties": {},
            "tags": [],
            "managementZones": [],
            "fromRelationships": {},
            "toRelationships": {},
        }
        entity.update(fields)
        with self._lock:
            self.entities[entity_id] = entity
        return entity

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Store an event in the v2 shape (``eventId``, ``eventType``, ``startTime``, ``entityId``...)."""
        with self._lock:
            self.events.append(event)
        return event

    def add_log(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a log record; entity attributes (``dt.entity.service``...) go in ``additionalColumns``."""
        with self._lock:
            self.logs.append(record)
        return record

    def add_metric_series(
        self, metric_id: str, entity_id: str, timestamps: list[int], values: list[float | None]
    ) -> None:
        """Store the data points of one metric for one entity."""
        dimension = "dt.entity." + entity_id.rsplit("-", 1)[0].lower()
        series = {
            "dimensionMap": {dimension: entity_id},
            "dimensions": [entity_id],
            "timestamps": list(timestamps),
            "values": list(values),
        }
        with self._lock:
            self.metrics.setdefault(metric_id, []).append(series)

    def add_settings_object(
        self, schema_id: str, value: dict[str, Any], *, scope: str = "environment", author: str = "admin"
    ) -> str:
        """Store a settings object as if created in the Dynatrace UI; returns its objectId."""
        with self._lock:
            return self._store_settings_object(schema_id, scope, value, author=author)

    def add_alerting_profile(self, name: str) -> str:
        """An alerting profile (schema ``builtin:alerting.profile``); returns its objectId."""
        return self.add_settings_object(
            ALERTING_PROFILE_SCHEMA,
            {"name": name, "managementZone": None, "severityRules": [], "eventFilters": []},
        )

    def settings_of(self, schema_id: str) -> list[dict[str, Any]]:
        """The stored objects of a schema, oldest first, secrets in clear."""
        with self._lock:
            return [item for item in self.settings_objects.values() if item["schemaId"] == schema_id]

    def problem_notifications(self) -> list[dict[str, Any]]:
        return self.settings_of(PROBLEM_NOTIFICATION_SCHEMA)

    def _store_settings_object(
        self, schema_id: str, scope: str, value: dict[str, Any], *, author: str, object_id: str | None = None
    ) -> str:
        # Milliseconds, strictly increasing, so "created" orders objects as Dynatrace's does.
        stamp = self._settings_clock = max(to_millis(datetime.now(UTC)), self._settings_clock + 1)
        if object_id is None:
            raw = f"{schema_id}|{scope}|{secrets.token_hex(12)}".encode()
            object_id = base64.urlsafe_b64encode(
                b"\xbe\xefT\xde" + raw
            ).decode()  # '=' padding, like real ids
            self.settings_objects[object_id] = {
                "objectId": object_id,
                "schemaId": schema_id,
                "schemaVersion": "1.0.0",
                "scope": scope,
                "created": stamp,
                "author": author,
                "externalId": None,
            }
        stored = self.settings_objects[object_id]
        stored.update(
            value=json.loads(json.dumps(value)),
            modified=stamp,
            updateToken=base64.b64encode(f"{object_id}:{stamp}".encode()).decode(),
            summary=str(value.get("displayName") or value.get("name") or schema_id),
        )
        return object_id

    def fail(
        self,
        pattern: str,
        status: int | object | None = _UNSET,
        *,
        method: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        html: bool = False,
        times: int | None = None,
        retry_after: int | str | None = None,
    ) -> Failure:
        """Make requests whose path (without ``/e/{id}``) matches the glob ``pattern`` fail.

        ``status=None`` with ``delay``: answer normally, late. ``html=True``: a web page instead of JSON
        (with status 200 unless given). ``times``: only the next N matching requests.
        """
        if status is _UNSET:
            status = 200 if html else 500
        headers = dict(headers or {})
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        failure = Failure(
            pattern=pattern,
            method=method,
            status=status,  # type: ignore[arg-type]
            body=body,
            headers=headers,
            delay=delay,
            html=html,
            times=times,
        )
        with self._lock:
            self.failures.append(failure)
        return failure

    def slow(self, pattern: str, seconds: float, *, times: int | None = None) -> Failure:
        """Answer normally after ``seconds``."""
        return self.fail(pattern, None, delay=seconds, times=times)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [recorded for recorded in self.requests if recorded.path == path]

    # ---- helpers for handlers ---------------------------------------------------------------------

    def page(
        self,
        request: Request,
        items: list[dict[str, Any]],
        key: str,
        *,
        default_size: int = DEFAULT_PAGE_SIZE,
        max_size: int = MAX_PAGE_SIZE,
    ) -> Response:
        """One page of ``items`` under ``key``, or the page a ``nextPageKey`` points at.

        As Dynatrace: with nextPageKey every other query parameter must be absent (400 otherwise).
        ``max_size`` is the route's largest pageSize (the spec: 500 for problems, 1000 for events).
        """
        params = request.query_params
        route = request.scope["fake_path"]
        page_key = params.get("nextPageKey")
        if page_key is not None:
            others = sorted(name for name in params if name != "nextPageKey")
            if others:
                return dt_error(
                    400,
                    "Constraints violated.",
                    constraintViolations=[
                        {
                            "path": name,
                            "message": "must be omitted when nextPageKey is set",
                            "parameterLocation": "QUERY",
                        }
                        for name in others
                    ],
                )
            with self._lock:
                stored = self._pages.pop(page_key, None)
            if stored is None or stored[0] != route:
                return dt_error(400, f"The nextPageKey '{page_key}' is invalid or expired.")
            _, items, offset, size = stored
        else:
            raw_size = params.get("pageSize")
            try:
                size = int(raw_size) if raw_size else default_size
            except ValueError:
                return dt_error(400, "pageSize must be a number")
            if not 1 <= size <= max_size:
                return dt_error(400, f"pageSize must be between 1 and {max_size}")
            offset = 0
        chunk = items[offset : offset + size]
        body: dict[str, Any] = {
            "totalCount": len(items) if self.total_count_override is None else self.total_count_override,
            "pageSize": size,
            key: chunk,
        }
        if offset + size < len(items):
            next_key = secrets.token_urlsafe(12)
            with self._lock:
                self._pages[next_key] = (route, items, offset + size, size)
            body["nextPageKey"] = next_key
        elif self.last_page_key == "null":
            body["nextPageKey"] = None
        elif self.last_page_key == "string-null":
            body["nextPageKey"] = "null"
        return JSONResponse(body)

    # ---- serving ----------------------------------------------------------------------------------

    def _authenticate(self, request: Request, scope: str | None) -> Response | FakeToken:
        header = request.headers.get("authorization", "")
        kind, _, secret = header.partition(" ")
        if not header:
            return dt_error(401, "Missing authorization parameter.")
        if kind != "Api-Token" or not secret:
            return dt_error(401, "Token Authentication failed")
        token = self.tokens.get(secret.strip())
        if token is None:
            return dt_error(401, "Token Authentication failed")
        if not token.enabled:
            return dt_error(401, "Token is disabled")
        if token.expired:
            return dt_error(401, "Token is expired")
        if scope is not None and scope not in token.scopes:
            title = SCOPE_TITLES.get(scope, scope)
            return dt_error(403, f"Token is missing required scope. Use one of: {scope} ({title})")
        return token

    def _take_failure(self, method: str, path: str) -> Failure | None:
        with self._lock:
            for failure in self.failures:
                if failure.matches(method, path):
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            self.failures.remove(failure)
                    return failure
        return None

    def _dispatch(self, spec: _Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            environment_id = request.path_params.pop("environment_id", None)
            if environment_id is not None and environment_id != self.environment_id:
                return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
            if environment_id is None and self.managed:
                return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
            path = request.url.path
            if environment_id is not None:
                path = path[len(f"/e/{environment_id}") :]
            request.scope["fake_path"] = spec.path
            body = await request.body()
            with self._lock:
                self.requests.append(
                    RecordedRequest(
                        method=request.method,
                        path=path,
                        params=dict(request.query_params),
                        headers=dict(request.headers),
                        body=body,
                    )
                )
            failure = self._take_failure(request.method, path)
            if failure is not None:
                if failure.delay:
                    await asyncio.sleep(failure.delay)
                if failure.html:
                    return HTMLResponse(
                        "<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>",
                        status_code=failure.status or 200,
                        headers=failure.headers,
                    )
                if failure.status is not None:
                    if failure.body is None:
                        return JSONResponse(
                            {"error": {"code": failure.status, "message": "Injected failure"}},
                            status_code=failure.status,
                            headers=failure.headers,
                        )
                    if isinstance(failure.body, str | bytes):
                        return Response(failure.body, status_code=failure.status, headers=failure.headers)
                    return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)
            auth = self._authenticate(request, spec.scope)
            if isinstance(auth, Response):
                return auth
            request.state.token = auth
            result = spec.handler(self, request)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return run

    def _build_app(self) -> Starlette:
        routes: list[Route] = []
        for spec in _ENDPOINTS:
            handler = self._dispatch(spec)
            routes.append(Route(spec.path, handler, methods=[spec.method]))
            routes.append(Route("/e/{environment_id}" + spec.path, handler, methods=[spec.method]))

        async def not_found(request: Request, exc: Exception) -> Response:
            return HTMLResponse(NOT_FOUND_PAGE, status_code=404)

        return Starlette(routes=routes, exception_handlers={404: not_found})


@contextmanager
def running_fake_dynatrace() -> Iterator[FakeDynatrace]:
    """A fake environment on a loopback port until the block ends."""
    fake = FakeDynatrace()
    with serve_in_thread(fake.app) as server:
        fake.url = server.url
        yield fake


# ---- endpoints ------------------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any] | Response:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return dt_error(400, "Could not map JSON at '' near line 1 column 1")
    if not isinstance(body, dict):
        return dt_error(400, "The request body must be a JSON object")
    return body


@endpoint("POST", "/api/v2/apiTokens/lookup", scope=None)
async def lookup_token(fake: FakeDynatrace, request: Request) -> Response:
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    secret = body.get("token")
    if not isinstance(secret, str) or not secret:
        return dt_error(
            400,
            "Constraints violated.",
            constraintViolations=[
                {"path": "token", "message": "must not be null", "parameterLocation": "PAYLOAD_BODY"}
            ],
        )
    token = fake.tokens.get(secret)
    if token is None:
        return dt_error(404, "Token not found")
    answer: dict[str, Any] = {
        "id": token.id,
        "name": token.name,
        "enabled": token.enabled,
        "personalAccessToken": False,
        "owner": token.owner,
        "creationDate": iso_millis(token.created_at),
        "scopes": list(token.scopes),
    }
    if token.expires_at is not None:
        answer["expirationDate"] = iso_millis(token.expires_at)
    return JSONResponse(answer)


@endpoint("GET", "/api/v1/config/clusterversion", scope="DataExport")
def cluster_version(fake: FakeDynatrace, request: Request) -> Response:
    return JSONResponse({"version": fake.cluster_version})


_OPTIONAL_PROBLEM_FIELDS = ("evidenceDetails", "impactAnalysis", "recentComments")


def _problem_view(problem: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """The problem as the API shows it: optional fields only when asked for with ``fields``."""
    wanted = {name.strip().lstrip("+") for name in (fields or "").split(",") if name.strip()}
    return {
        key: value for key, value in problem.items() if key not in _OPTIONAL_PROBLEM_FIELDS or key in wanted
    }


def _problem_matches(problem: dict[str, Any], criteria: dict[str, list[str]]) -> bool:
    checks = {
        "status": lambda values: problem["status"].lower() in {value.lower() for value in values},
        "problemId": lambda values: problem["problemId"] in values,
        "displayId": lambda values: problem["displayId"] in values,
        "severityLevel": lambda values: problem["severityLevel"] in {value.upper() for value in values},
        "impactLevel": lambda values: problem["impactLevel"] in {value.upper() for value in values},
    }
    return all(checks[name](values) for name, values in criteria.items() if name in checks)


@endpoint("GET", "/api/v2/problems", scope="problems.read")
def list_problems(fake: FakeDynatrace, request: Request) -> Response:
    params = request.query_params
    if "nextPageKey" in params:
        return fake.page(request, [], "problems")
    now = datetime.now(UTC)
    try:
        start = parse_timeframe(params.get("from"), now - timedelta(hours=2))
        end = parse_timeframe(params.get("to"), now)
    except ValueError:
        return dt_error(400, "from and to must be UTC milliseconds, ISO 8601 or relative (now-2h)")
    try:
        criteria = parse_selector(params.get("problemSelector"))
    except SelectorError as exc:
        return selector_error(exc, "problemSelector")
    start_ms, end_ms = to_millis(start), to_millis(end)
    found = [
        _problem_view(problem, params.get("fields"))
        for problem in fake.problems.values()
        if problem["startTime"] <= end_ms
        and (problem["endTime"] == -1 or problem["endTime"] >= start_ms)
        and _problem_matches(problem, criteria)
    ]
    found.sort(key=lambda problem: problem["startTime"], reverse=True)
    return fake.page(request, found, "problems")


@endpoint("GET", "/api/v2/problems/{problemId}", scope="problems.read")
def get_problem(fake: FakeDynatrace, request: Request) -> Response:
    problem_id = request.path_params["problemId"]
    problem = fake.problems.get(problem_id)
    if problem is None:
        return dt_error(404, f"The problem {problem_id} does not exist")
    return JSONResponse(_problem_view(problem, request.query_params.get("fields")))


@endpoint("GET", "/api/v2/entities/{entityId}", scope="entities.read")
def get_entity(fake: FakeDynatrace, request: Request) -> Response:
    entity_id = request.path_params["entityId"]
    entity = fake.entities.get(entity_id)
    if entity is None:
        return dt_error(404, f"The requested entity {entity_id} does not exist")
    return JSONResponse(entity)


@endpoint("GET", "/api/v2/entities", scope="entities.read")
def list_entities(fake: FakeDynatrace, request: Request) -> Response:
    params = request.query_params
    if "nextPageKey" in params:
        return fake.page(request, [], "entities")
    selector = params.get("entitySelector")
    if not selector:
        return selector_error(SelectorError('entitySelector must set type("TYPE") or entityId("id")'))
    try:
        matcher = EntityMatcher(fake.entities, parse_entity_selector(selector))
    except SelectorError as exc:
        return selector_error(exc)
    fields = _entity_fields(params.get("fields"))
    if isinstance(fields, Response):
        return fields
    seen = _seen_window(params)
    if isinstance(seen, Response):
        return seen
    with fake._lock:
        stored = list(fake.entities.values())
    try:
        found = [entity for entity in stored if _seen_within(entity, seen) and matcher.matches(entity)]
    except SelectorError as exc:
        return selector_error(exc)
    order = params.get("sort")
    if order:
        if order.lstrip("+-") != "name":
            return dt_error(400, f"Unsupported sort field: {order}; only name can be sorted")
        found.sort(key=lambda entity: str(entity.get("displayName") or ""), reverse=order.startswith("-"))
    return fake.page(request, [_entity_view(entity, fields) for entity in found], "entities")


# What an entity of the list holds without ``fields`` (the spec: the id and the name, always), and what
# ``fields=+name`` may add; ``properties.X`` and ``fromRelationships.X`` add one property or relationship.
ENTITY_LIST_BASE = ("entityId", "type", "displayName")
ENTITY_LIST_FIELDS = (
    "properties",
    "fromRelationships",
    "toRelationships",
    "tags",
    "managementZones",
    "firstSeenTms",
    "lastSeenTms",
    "icon",
)


def _entity_fields(raw: str | None) -> list[str] | Response:
    wanted = [name.strip().lstrip("+") for name in (raw or "").split(",") if name.strip()]
    for name in wanted:
        head, dot, tail = name.partition(".")
        known = (
            head in ("properties", *RELATIONSHIP_DIRECTIONS) if dot and tail else name in ENTITY_LIST_FIELDS
        )
        if not known:
            return dt_error(400, f"Invalid field: {name}")
    return wanted


def _entity_view(entity: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """The entity as the list shows it: the base fields plus those asked for."""
    view = {name: entity[name] for name in ENTITY_LIST_BASE if name in entity}
    for name in fields:
        head, dot, tail = name.partition(".")
        if not dot:
            if name in entity:
                view[name] = copy.deepcopy(entity[name])
            continue
        held = (entity.get(head) or {}).get(tail)
        part = view.setdefault(head, {})
        if held is not None and isinstance(part, dict):
            part[tail] = copy.deepcopy(held)
    return view


def _seen_window(params: Any) -> tuple[int, int] | Response | None:
    """The timeframe entities must have been seen in, only when from or to is given.

    Dynatrace defaults to the last three days; the fake lists every entity without from/to, because tests
    (and generated environments) stamp their entities with fixed dates in the past.
    """
    if not params.get("from") and not params.get("to"):
        return None
    return _timeframe(params, default_span=timedelta(days=3))


def _seen_within(entity: dict[str, Any], window: tuple[int, int] | None) -> bool:
    if window is None:
        return True
    start, end = window
    first = entity.get("firstSeenTms") or 0
    last = entity.get("lastSeenTms") or first
    return first <= end and last >= start


def _timeframe(params: Any, default_span: timedelta = timedelta(hours=2)) -> tuple[int, int] | Response:
    now = datetime.now(UTC)
    try:
        start = parse_timeframe(params.get("from"), now - default_span)
        end = parse_timeframe(params.get("to"), now)
    except ValueError:
        return dt_error(400, "from and to must be UTC milliseconds, ISO 8601 or relative (now-2h)")
    return to_millis(start), to_millis(end)


def _optional_matcher(fake: FakeDynatrace, selector: str | None) -> EntityMatcher | None:
    """The matcher of an optional entitySelector (None: every entity); raises ``SelectorError``."""
    if not selector:
        return None
    return EntityMatcher(fake.entities, parse_entity_selector(selector))


@endpoint("GET", "/api/v2/events", scope="events.read")
def list_events(fake: FakeDynatrace, request: Request) -> Response:
    params = request.query_params
    if "nextPageKey" in params:
        return fake.page(request, [], "events", default_size=100, max_size=1000)
    frame = _timeframe(params)
    if isinstance(frame, Response):
        return frame
    start, end = frame
    try:
        matcher = _optional_matcher(fake, params.get("entitySelector"))
    except SelectorError as exc:
        return selector_error(exc)
    try:
        wanted = _event_criteria(params.get("eventSelector"))
    except SelectorError as exc:
        return selector_error(exc, "eventSelector")

    def matches(event: dict[str, Any]) -> bool:
        entity_id = ((event.get("entityId") or {}).get("entityId") or {}).get("id", "")
        finish = event.get("endTime", -1)
        return (
            event["startTime"] <= end
            and (finish in (-1, None) or finish >= start)
            and (matcher is None or (bool(entity_id) and matcher.matches_id(entity_id)))
            and all(check(event) for check in wanted)
        )

    with fake._lock:
        stored = list(fake.events)
    try:
        found = sorted((e for e in stored if matches(e)), key=lambda e: e["startTime"], reverse=True)
    except SelectorError as exc:
        return selector_error(exc)
    return fake.page(request, found, "events", default_size=100, max_size=1000)


# eventSelector criteria that take one value only (the spec: "You can specify only one ...").
_SINGLE_VALUE_EVENT_CRITERIA = ("eventType", "status")
_EVENT_FLAGS = ("underMaintenance", "suppressAlert", "suppressProblem", "frequentEvent")


def _event_criteria(selector: str | None) -> list[Callable[[dict[str, Any]], bool]]:
    """One check per eventSelector criterion; all must hold."""
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for criterion in parse_criteria(selector) if selector else ():
        checks.append(_event_check(criterion.name, criterion.values))
    return checks


def _event_check(name: str, values: tuple[str, ...]) -> Callable[[dict[str, Any]], bool]:
    if not values:
        raise SelectorError(f"{name}() needs a value.")
    if name in _SINGLE_VALUE_EVENT_CRITERIA and len(values) != 1:
        raise SelectorError(f"Only one value can be given for {name}.")
    if name == "eventType":
        return lambda event: event.get("eventType") == values[0]
    if name == "status":
        return lambda event: _event_status(event) == values[0].upper()
    if name == "eventId":
        return lambda event: event.get("eventId") in values
    if name == "correlationId":
        return lambda event: event.get("correlationId") in values
    if name == "entityId":
        return lambda event: ((event.get("entityId") or {}).get("entityId") or {}).get("id") in values
    if name == "managementZoneId":
        return lambda event: any(str(zone.get("id")) in values for zone in event.get("managementZones") or [])
    if name in _EVENT_FLAGS:
        return lambda event: str(bool(event.get(name))).lower() == values[0].lower()
    if name.startswith("property."):
        key = name[len("property.") :]
        return lambda event: any(
            item.get("key") == key and str(item.get("value")) in values
            for item in event.get("properties") or []
        )
    raise SelectorError(f"Unknown eventSelector criterion: {name}")


def _event_status(event: dict[str, Any]) -> str:
    if event.get("status"):
        return str(event["status"]).upper()
    return "OPEN" if event.get("endTime") in (-1, None) else "CLOSED"


_LOG_CONDITION = re.compile(r'([\w.]+)\s*=\s*"([^"]*)"')


@endpoint("GET", "/api/v2/logs/search", scope="logs.read")
def search_logs(fake: FakeDynatrace, request: Request) -> Response:
    params = request.query_params
    frame = _timeframe(params)
    if isinstance(frame, Response):
        return frame
    start, end = frame
    try:
        limit = int(params.get("limit") or 1000)
    except ValueError:
        return dt_error(400, "limit must be a number")
    if not 1 <= limit <= 1000:
        return dt_error(400, "limit must be between 1 and 1000")
    conditions = _LOG_CONDITION.findall(params.get("query") or "")

    def matches(record: dict[str, Any]) -> bool:
        stamp = int(record.get("timestamp") or 0)
        if not start <= stamp <= end:
            return False
        for key, value in conditions:
            if key == "status":
                if str(record.get("status", "")).upper() != value.upper():
                    return False
            elif value not in (record.get("additionalColumns") or {}).get(key, []):
                return False
        return True

    newest_first = params.get("sort", "-timestamp") != "+timestamp"
    found = sorted(
        (r for r in fake.logs if matches(r)), key=lambda r: int(r.get("timestamp") or 0), reverse=newest_first
    )
    return JSONResponse({"results": found[:limit], "sliceSize": min(limit, len(found)), "nextSliceKey": None})


@endpoint("GET", "/api/v2/metrics/query", scope="metrics.read")
def query_metrics(fake: FakeDynatrace, request: Request) -> Response:
    """Data points per series, aggregated into slots of the resolution (average of the values in a slot,
    null when it has none), stamped with the end of each slot as Dynatrace does.

    The spec deprecates paging here (``nextPageKey`` is always null), so every matching series comes at once.
    """
    params = request.query_params
    selector = params.get("metricSelector")
    if not selector:
        return dt_error(400, "metricSelector must not be empty")
    try:
        keys = metric_keys(selector)
    except SelectorError as exc:
        return selector_error(exc, "metricSelector")
    if len(keys) > 10:
        return dt_error(400, "Up to 10 metrics can be selected in one query")
    frame = _timeframe(params)
    if isinstance(frame, Response):
        return frame
    start, end = frame
    if start >= end:
        return dt_error(400, "The start of the timeframe must be before its end")
    slots = _slots(params.get("resolution"), start, end)
    if isinstance(slots, Response):
        return slots
    try:
        matcher = _optional_matcher(fake, params.get("entitySelector"))
    except SelectorError as exc:
        return selector_error(exc)
    with fake._lock:
        stored = {key: list(fake.metrics.get(key, [])) for key in keys}
    result = []
    entities: set[tuple[str, ...]] = set()
    try:
        for key in keys:
            data = [slots.aggregate(series) for series in stored[key] if _series_selected(series, matcher)]
            data = [series for series in data if series is not None]
            entities.update(tuple(series["dimensions"]) for series in data)
            result.append(
                {
                    "metricId": key,
                    "dataPointCountRatio": round(len(data) * len(slots.ends) / 10_000_000, 7),
                    "dimensionCountRatio": round(len(data) / 1_000_000, 7),
                    "data": data,
                }
            )
    except SelectorError as exc:
        return selector_error(exc)
    return JSONResponse(
        {"totalCount": len(entities), "nextPageKey": None, "resolution": slots.label, "result": result}
    )


def metric_keys(selector: str) -> list[str]:
    """The metric keys of a metricSelector: comma-separated, ``prefix.(a,b)`` for siblings, quoted keys."""
    keys: list[str] = []
    depth, quoted, current = 0, False, []
    for char in selector:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"Unbalanced parentheses in metricSelector: {selector}")
        if char == "," and depth == 0 and not quoted:
            keys.extend(_expand_key("".join(current)))
            current = []
        else:
            current.append(char)
    if depth or quoted:
        raise SelectorError(f"Unbalanced parentheses or quotes in metricSelector: {selector}")
    keys.extend(_expand_key("".join(current)))
    return [key for key in keys if key]


def _expand_key(text: str) -> list[str]:
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return [text[1:-1].replace('~"', '"').replace("~~", "~")]
    if text.endswith(")") and ".(" in text:
        prefix, _, names = text[:-1].partition(".(")
        return [f"{prefix}.{name.strip()}" for name in names.split(",") if name.strip()]
    return [text] if text else []


_RESOLUTION = re.compile(r"^(\d+)([mhdwMy])$")
_RESOLUTION_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080, "M": 43200, "y": 525600}
DEFAULT_METRIC_POINTS = 120
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Slots:
    """The time slots of a metric query: (end - step, end] for each end; ``step`` None is ``Inf``."""

    ends: list[int]
    step: int | None
    label: str
    start: int

    def slot_of(self, stamp: int) -> int | None:
        if self.step is None:
            return 0 if self.start <= stamp <= self.ends[0] else None
        index = (-(-stamp // self.step) * self.step - self.ends[0]) // self.step
        return index if 0 <= index < len(self.ends) else None

    def aggregate(self, series: dict[str, Any]) -> dict[str, Any] | None:
        """The series over the slots; None when it has no data point in the timeframe (Dynatrace leaves
        such a series out)."""
        sums = [0.0] * len(self.ends)
        counts = [0] * len(self.ends)
        for stamp, value in zip(series["timestamps"], series["values"], strict=True):
            index = self.slot_of(int(stamp))
            if index is None or value is None:
                continue
            sums[index] += float(value)
            counts[index] += 1
        if not any(counts):
            return None
        return {
            "dimensionMap": dict(series["dimensionMap"]),
            "dimensions": list(series["dimensions"]),
            "timestamps": list(self.ends),
            "values": [total / count if count else None for total, count in zip(sums, counts, strict=True)],
        }


def _slots(raw: str | None, start: int, end: int) -> Slots | Response:
    """Slots aligned to the resolution from the slot holding ``from`` to the one holding ``to``: the last
    timestamp can lie after ``to``, as the Dynatrace documentation describes."""
    if raw == "Inf":
        return Slots(ends=[end], step=None, label="Inf", start=start)
    minutes = _resolution_minutes(raw, end - start)
    if minutes is None:
        return dt_error(400, f"Invalid resolution: {raw}")
    step = minutes * MINUTE_MS
    first = start // step
    last = -(-end // step) - 1
    ends = [(index + 1) * step for index in range(first, max(first, last) + 1)]
    label = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
    if minutes % 1440 == 0:
        label = f"{minutes // 1440}d"
    return Slots(ends=ends, step=step, label=label, start=start)


def _resolution_minutes(raw: str | None, span_ms: int) -> int | None:
    """A timespan (``5m``, ``1h``) or a number of points (the default: 120), as whole minutes."""
    if not raw or raw.isdigit():
        points = int(raw) if raw else DEFAULT_METRIC_POINTS
        if points < 1:
            return None
        return max(1, -(-span_ms // (points * MINUTE_MS)))
    match = _RESOLUTION.match(raw)
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    return amount * _RESOLUTION_MINUTES[unit] if amount >= 1 else None


def _series_selected(series: dict[str, Any], matcher: EntityMatcher | None) -> bool:
    """A series belongs to the selected entities when one of its entity dimensions is selected."""
    if matcher is None:
        return True
    return any(
        matcher.matches_id(str(value))
        for key, value in series["dimensionMap"].items()
        if key.startswith("dt.entity.") and value
    )


# ---- Settings 2.0 (spec: /settings/objects) ---------------------------------------------------------

SETTINGS_FIELDS = (
    "objectId",
    "value",
    "created",
    "modified",
    "schemaId",
    "schemaVersion",
    "scope",
    "summary",
    "updateToken",
    "externalId",
    "author",
)
KNOWN_SCHEMAS = (PROBLEM_NOTIFICATION_SCHEMA, ALERTING_PROFILE_SCHEMA)


def _masked(value: Any) -> Any:
    """A value as the API shows it: secret header values masked, never echoed."""
    shown = copy.deepcopy(value)
    webhook = shown.get("webHookNotification") if isinstance(shown, dict) else None
    for header in (webhook or {}).get("headers") or []:
        if isinstance(header, dict) and header.get("secret"):
            header["secretValue"] = SECRET_MASK
    return shown


def _violation(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message, "parameterLocation": "PAYLOAD_BODY"}


def _validate_settings_value(
    fake: FakeDynatrace, schema_id: str, value: Any, previous: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """The constraint violations of a value (only what the two schemas Borealis writes need)."""
    if not isinstance(value, dict):
        return [_violation("value", "must be an object")]
    problems: list[dict[str, str]] = []
    if schema_id == ALERTING_PROFILE_SCHEMA:
        if not isinstance(value.get("name"), str) or not value["name"]:
            problems.append(_violation("name", "must not be empty"))
        return problems
    if schema_id != PROBLEM_NOTIFICATION_SCHEMA:
        return problems
    if not isinstance(value.get("displayName"), str) or not value["displayName"].strip():
        problems.append(_violation("displayName", "must not be empty"))
    if value.get("type") not in ("EMAIL", "WEBHOOK", "SLACK", "PAGER_DUTY", "OPS_GENIE", "JIRA", "XMATTERS"):
        problems.append(_violation("type", "unknown notification type"))
    profiles = {item["objectId"] for item in fake.settings_of(ALERTING_PROFILE_SCHEMA)}
    if value.get("alertingProfile") not in profiles:
        problems.append(_violation("alertingProfile", "must reference an existing alerting profile"))
    if value.get("type") == "WEBHOOK":
        webhook = value.get("webHookNotification")
        if not isinstance(webhook, dict):
            return [*problems, _violation("webHookNotification", "must be set for type WEBHOOK")]
        url = webhook.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            problems.append(_violation("webHookNotification.url", "must be a valid http(s) URL"))
        if not isinstance(webhook.get("payload"), str) or not webhook["payload"].strip():
            problems.append(_violation("webHookNotification.payload", "must not be empty"))
        for index, header in enumerate(webhook.get("headers") or []):
            where = f"webHookNotification.headers[{index}]"
            if not isinstance(header, dict) or not header.get("name"):
                problems.append(_violation(f"{where}.name", "must not be empty"))
                continue
            key = "secretValue" if header.get("secret") else "value"
            if not isinstance(header.get(key), str) or not header[key]:
                problems.append(_violation(f"{where}.{key}", "must not be empty"))
            elif header.get("secret") and header[key] == SECRET_MASK:
                # The masked value sent back keeps the stored secret, as Dynatrace does.
                old = _header_secret(previous, header["name"])
                if old is None:
                    problems.append(
                        _violation(f"{where}.secretValue", "masked value without a stored secret")
                    )
                else:
                    header[key] = old
    return problems


def _header_secret(previous: dict[str, Any] | None, name: str) -> str | None:
    webhook = (previous or {}).get("webHookNotification") or {}
    for header in webhook.get("headers") or []:
        if header.get("name") == name and header.get("secret"):
            return header.get("secretValue")
    return None


def _object_error(code: int, message: str, violations: list[dict[str, str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if violations:
        error["constraintViolations"] = violations
    return {"code": code, "error": error}


@endpoint("GET", "/api/v2/settings/objects", scope="settings.read")
def list_settings_objects(fake: FakeDynatrace, request: Request) -> Response:
    params = request.query_params
    if "nextPageKey" in params:
        return fake.page(request, [], "items", default_size=100)
    schema_ids = [item for item in (params.get("schemaIds") or "").split(",") if item]
    scopes = [item for item in (params.get("scopes") or "").split(",") if item]
    if not schema_ids and not scopes:
        return dt_error(
            400,
            "Constraints violated.",
            constraintViolations=[
                {
                    "path": "schemaIds",
                    "message": "schemaIds or scopes is required when nextPageKey is not set",
                    "parameterLocation": "QUERY",
                }
            ],
        )
    known = set(KNOWN_SCHEMAS) | {item["schemaId"] for item in fake.settings_objects.values()}
    unknown = [schema for schema in schema_ids if schema not in known]
    if unknown:
        return dt_error(404, f"The specified schema or scope is not found: {unknown[0]}")
    fields = [name.strip() for name in (params.get("fields") or "objectId,value").split(",") if name.strip()]
    wrong = [name for name in fields if name not in SETTINGS_FIELDS]
    if wrong:
        return dt_error(400, f"Unknown field '{wrong[0]}'")
    with fake._lock:
        stored = list(fake.settings_objects.values())
    found = [
        {name: (_masked(item[name]) if name == "value" else item.get(name)) for name in fields}
        for item in stored
        if (not schema_ids or item["schemaId"] in schema_ids) and (not scopes or item["scope"] in scopes)
    ]
    return fake.page(request, found, "items", default_size=100)


@endpoint("GET", "/api/v2/settings/objects/{objectId}", scope="settings.read")
def get_settings_object(fake: FakeDynatrace, request: Request) -> Response:
    object_id = request.path_params["objectId"]
    item = fake.settings_objects.get(object_id)
    if item is None:
        return dt_error(404, f"No object available for the given objectId {object_id}")
    return JSONResponse({**item, "value": _masked(item["value"])})


@endpoint("POST", "/api/v2/settings/objects", scope="settings.write")
async def create_settings_objects(fake: FakeDynatrace, request: Request) -> Response:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return dt_error(400, "Could not map JSON at '' near line 1 column 1")
    if not isinstance(body, list) or not body:
        return dt_error(400, "The request body must be a non-empty array of settings objects")
    validate_only = request.query_params.get("validateOnly", "false").lower() == "true"
    answers: list[dict[str, Any]] = []
    for item in body:
        if not isinstance(item, dict) or not isinstance(item.get("schemaId"), str):
            answers.append(
                _object_error(400, "Constraints violated.", [_violation("schemaId", "must be set")])
            )
            continue
        schema_id = item["schemaId"]
        if schema_id not in KNOWN_SCHEMAS:
            answers.append(_object_error(404, f"Schema '{schema_id}' not found"))
            continue
        value = copy.deepcopy(item.get("value"))
        violations = _validate_settings_value(fake, schema_id, value)
        if violations:
            answers.append({**_object_error(400, "Constraints violated.", violations), "invalidValue": value})
            continue
        if validate_only:
            answers.append({"code": 200})
            continue
        with fake._lock:
            object_id = fake._store_settings_object(
                schema_id, item.get("scope") or "environment", value, author=request.state.token.id
            )
            if item.get("externalId"):
                fake.settings_objects[object_id]["externalId"] = item["externalId"]
        answers.append({"code": 200, "objectId": object_id})
    codes = {answer["code"] for answer in answers}
    status = 200 if codes == {200} else (207 if 200 in codes else answers[0]["code"])
    return JSONResponse(answers, status_code=status)


@endpoint("PUT", "/api/v2/settings/objects/{objectId}", scope="settings.write")
async def update_settings_object(fake: FakeDynatrace, request: Request) -> Response:
    object_id = request.path_params["objectId"]
    body = await _json_body(request)
    if isinstance(body, Response):
        return body
    item = fake.settings_objects.get(object_id)
    if item is None:
        return JSONResponse(
            _object_error(404, f"Settings not found for objectId {object_id}"), status_code=404
        )
    token = body.get("updateToken")
    if token is not None and token != item["updateToken"]:
        return JSONResponse(
            _object_error(409, "The object was modified since the updateToken was issued"), status_code=409
        )
    value = copy.deepcopy(body.get("value"))
    violations = _validate_settings_value(fake, item["schemaId"], value, previous=item["value"])
    if violations:
        return JSONResponse(
            {**_object_error(400, "Constraints violated.", violations), "invalidValue": value},
            status_code=400,
        )
    with fake._lock:
        fake._store_settings_object(
            item["schemaId"], item["scope"], value, author=request.state.token.id, object_id=object_id
        )
    return JSONResponse({"code": 200, "objectId": object_id})


@endpoint("DELETE", "/api/v2/settings/objects/{objectId}", scope="settings.write")
def delete_settings_object(fake: FakeDynatrace, request: Request) -> Response:
    object_id = request.path_params["objectId"]
    item = fake.settings_objects.get(object_id)
    if item is None:
        return JSONResponse(
            _object_error(404, f"Settings not found for objectId {object_id}"), status_code=404
        )
    token = request.query_params.get("updateToken")
    if token is not None and token != item["updateToken"]:
        return JSONResponse(
            _object_error(409, "The object was modified since the updateToken was issued"), status_code=409
        )
    with fake._lock:
        fake.settings_objects.pop(object_id, None)
    return Response(status_code=204)
