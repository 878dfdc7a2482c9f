"""The simulated environment's read endpoints: token lookup, cluster version, problems, entities, events
and logs, each as the Environment API spec describes it."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from borealis.simulation.selectors import (
    RELATIONSHIP_DIRECTIONS,
    EntityMatcher,
    SelectorError,
    iso_millis,
    parse_criteria,
    parse_entity_selector,
    parse_selector,
    parse_timeframe,
    to_millis,
)
from borealis.simulation.server import dt_error, endpoint, json_body, selector_error

if TYPE_CHECKING:
    from borealis.simulation.store import FakeDynatrace


@endpoint("POST", "/api/v2/apiTokens/lookup", scope=None)
async def lookup_token(fake: FakeDynatrace, request: Request) -> Response:
    body = await json_body(request)
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
    with fake.lock:
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
    return timeframe(params, default_span=timedelta(days=3))


def _seen_within(entity: dict[str, Any], window: tuple[int, int] | None) -> bool:
    if window is None:
        return True
    start, end = window
    first = entity.get("firstSeenTms") or 0
    last = entity.get("lastSeenTms") or first
    return first <= end and last >= start


def timeframe(params: Any, default_span: timedelta = timedelta(hours=2)) -> tuple[int, int] | Response:
    now = datetime.now(UTC)
    try:
        start = parse_timeframe(params.get("from"), now - default_span)
        end = parse_timeframe(params.get("to"), now)
    except ValueError:
        return dt_error(400, "from and to must be UTC milliseconds, ISO 8601 or relative (now-2h)")
    return to_millis(start), to_millis(end)


def optional_matcher(fake: FakeDynatrace, selector: str | None) -> EntityMatcher | None:
    """The matcher of an optional entitySelector (None: every entity); raises ``SelectorError``."""
    if not selector:
        return None
    return EntityMatcher(fake.entities, parse_entity_selector(selector))


@endpoint("GET", "/api/v2/events", scope="events.read")
def list_events(fake: FakeDynatrace, request: Request) -> Response:
    params = request.query_params
    if "nextPageKey" in params:
        return fake.page(request, [], "events", default_size=100, max_size=1000)
    frame = timeframe(params)
    if isinstance(frame, Response):
        return frame
    start, end = frame
    try:
        matcher = optional_matcher(fake, params.get("entitySelector"))
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

    with fake.lock:
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
    frame = timeframe(params)
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
