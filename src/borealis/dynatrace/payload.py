"""Webhook bodies and API problem objects into one normalized notification.

Pure: no database, no HTTP. Real senders drift (DESIGN 4): keys renamed or in another case, arrays sent
as strings or empty strings, placeholders left unreplaced, unknown enum values, duplicate keys. Whatever
can be understood is taken, what cannot is recorded in ``warnings``; only a body with no usable problem
identity is refused (``PayloadRejected``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from borealis import jsontext
from borealis.dynatrace.template import EXPECTED_FIELDS

OPEN = "OPEN"
RESOLVED = "RESOLVED"
MERGED = "MERGED"
_STATE_ALIASES = {"OPEN": OPEN, "RESOLVED": RESOLVED, "CLOSED": RESOLVED, "MERGED": MERGED}

SEVERITIES = (
    "AVAILABILITY",
    "ERROR",
    "PERFORMANCE",
    "RESOURCE_CONTENTION",
    "CUSTOM_ALERT",
    "MONITORING_UNAVAILABLE",
    "INFO",
)
IMPACTS = ("APPLICATION", "SERVICE", "SERVICES", "INFRASTRUCTURE", "ENVIRONMENT")
_PRIORITY_BY_SEVERITY = {
    "AVAILABILITY": "critical",
    "ERROR": "high",
    "PERFORMANCE": "medium",
    "RESOURCE_CONTENTION": "medium",
    "CUSTOM_ALERT": "medium",
    "MONITORING_UNAVAILABLE": "low",
    "INFO": "info",
}

TEST_PROBLEM_IDS = frozenset({"999", "TESTID"})
TEST_PID = "99999"
TEST_TITLE = "dynatrace problem notification test run"

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
_V2_SUFFIX = re.compile(r"^(-?\d+)_\d+V\d+$")

# Canonical field -> the spellings seen in the wild, compared without case, spaces, '_' or '-'.
_FIELD_SPELLINGS = {
    "ProblemID": ("problemid", "displayid"),
    "PID": ("pid", "problempid"),
    "State": ("state", "problemstate", "status"),
    "ProblemTitle": ("problemtitle", "title"),
    "ProblemSeverity": ("problemseverity", "severity", "severitylevel"),
    "ProblemImpact": ("problemimpact", "impact", "impactlevel"),
    "ProblemURL": ("problemurl", "url"),
    "ImpactedEntity": ("impactedentity",),
    "ImpactedEntities": ("impactedentities",),
    "ImpactedEntityNames": ("impactedentitynames", "namesofimpactedentities"),
    "Tags": ("tags",),
    "ProblemDetailsJSONv2": ("problemdetailsjsonv2",),
    "ProblemDetailsJSON": ("problemdetailsjson",),
    "ProblemDetails": ("problemdetails",),
}
_CANONICAL = {spelling: name for name, spellings in _FIELD_SPELLINGS.items() for spelling in spellings}
_KEY_NOISE = re.compile(r"[\s_\-]+")
# Keys spelled as in the suggested template, found without normalizing them.
_TEMPLATE_KEYS = {name: _CANONICAL[_KEY_NOISE.sub("", name.lower())] for name in _FIELD_SPELLINGS}
# Containers in a text within this count are nested shallowly enough for ``json`` to read them.
_SHALLOW = 256
# Type tuples, not unions (``int | float``), which isinstance would build anew on every call.
_NUMBER = (int, float)
_NOT_TEXT = (bool, dict, list)

SUGGESTED_TEMPLATE_HINT = (
    "use the payload template from GET /dynatrace/webhook-url in the Dynatrace custom integration"
)


class PayloadRejected(Exception):
    """The body cannot be used at all; the message says what is missing and how to fix it."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.message = message
        # True when the body is not a JSON object at all (400); False when it lacks what we need (422).
        self.malformed = malformed


@dataclass(slots=True)
class ProblemNotification:
    """One delivery, normalized. ``None`` means "not told" (keep what is known); an empty list means
    Dynatrace said "none"."""

    pid: str | None
    display_id: str | None = None
    api_problem_id: str | None = None
    state: str | None = None
    state_raw: str | None = None
    title: str | None = None
    severity: str | None = None
    impact: str | None = None
    problem_url: str | None = None
    impacted_entity: str | None = None
    impacted_entity_names: str | None = None
    impacted_entities: list[dict[str, Any]] | None = None
    tags: list[dict[str, Any]] | None = None
    tags_raw: str | None = None
    management_zones: list[dict[str, Any]] | None = None
    root_cause_entity: dict[str, Any] | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    # The newest Dynatrace timestamp in the delivery: how "newer" is judged.
    observed_at: datetime | None = None
    details: dict[str, Any] | None = None
    details_format: str | None = None
    is_test: bool = False
    content_hash: str = ""
    present_fields: frozenset[str] = frozenset()
    unreplaced: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def pid_key(self) -> str | None:
        return pid_key(self.pid) if self.pid else None

    @property
    def priority(self) -> str | None:
        return priority_for(self.severity)


def pid_key(pid: str) -> str:
    """The identity of a problem: ``-123_1578561060000V2`` and ``-123`` are the same problem."""
    if "_" not in pid:
        return pid
    match = _V2_SUFFIX.match(pid)
    return match.group(1) if match else pid


def priority_for(severity: str | None) -> str | None:
    """critical/high/medium/low/info from Dynatrace's severity; an unknown severity is medium."""
    if not severity:
        return None
    return _PRIORITY_BY_SEVERITY.get(severity.upper(), "medium")


def parse_webhook(body: bytes) -> ProblemNotification:
    """Parse a webhook body whatever its Content-Type; raises ``PayloadRejected`` if it has no use."""
    document, lone_surrogates = _load_json(body)
    document, cut = jsontext.bounded(document)
    if not isinstance(document, dict):
        kind = type(document).__name__ if document is not None else "null"
        raise PayloadRejected(
            f"the body is JSON but a {kind}, not an object with the problem fields; {SUGGESTED_TEMPLATE_HINT}",
            malformed=True,
        )
    notification = _from_document(document)
    notification.content_hash = hashlib.sha256(body).hexdigest()
    if lone_surrogates:
        notification.warnings.append(
            f"{lone_surrogates} unpaired surrogate escape(s) (\\ud800-\\udfff) replaced by U+FFFD: they "
            "are not text and cannot be stored"
        )
    if cut:
        notification.warnings.append(f"the body was stored cut short: {cut}")
    return notification


def from_api_problem(problem: dict[str, Any]) -> ProblemNotification:
    """A v2 problem object of ``GET /api/v2/problems`` as a notification for the same record."""
    problem, _ = jsontext.bounded(problem)
    problem_id = _text(problem.get("problemId"))
    if not problem_id:
        raise PayloadRejected("the API problem has no problemId")
    notification = ProblemNotification(pid=problem_id)
    _apply_v2_details(notification, problem, fill_only=False)
    notification.details = problem
    notification.details_format = "api"
    notification.content_hash = hashlib.sha256(
        json.dumps(problem, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()
    return notification


def template_report(notification: ProblemNotification, received_at: datetime) -> dict[str, Any]:
    """What a test notification says about the user's template (shown by /dynatrace/status)."""
    missing = [name for name in EXPECTED_FIELDS if name not in notification.present_fields]
    if "ProblemDetailsJSONv2" in missing and notification.details_format == "v2":
        missing.remove("ProblemDetailsJSONv2")
    unreplaced = sorted(set(notification.unreplaced))
    return {
        "receivedAt": received_at.isoformat(),
        "ok": not missing and not unreplaced,
        "missingFields": missing,
        "unreplacedPlaceholders": unreplaced,
        "problemId": notification.display_id,
        "pid": notification.pid,
        "title": notification.title,
    }


# --- parsing -------------------------------------------------------------------------------------------


def _load_json(body: bytes) -> tuple[Any, int]:
    """The JSON document of the body, and how many unpaired surrogate escapes were replaced in it."""
    if not body.strip():
        raise PayloadRejected(f"the body is empty; {SUGGESTED_TEMPLATE_HINT}", malformed=True)
    text = _decode(body)
    lone = 0
    if "\\u" in text:
        # NUL cannot be stored in PostgreSQL text or JSONB; it carries no meaning in a notification.
        text = text.replace("\\u0000", "\\ufffd")
        text, lone = lone_surrogates_replaced(text)
    try:
        document = jsontext.loads(text, parse_constant=_no_constant)
        if isinstance(document, dict) and _read_every_pair(text, document):
            # Perhaps a key sent twice (json keeps the last silently): parse again, seeing every pair.
            document = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
        return document, lone
    except json.JSONDecodeError as exc:
        raise PayloadRejected(
            f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "placeholders that expand to JSON ({ImpactedEntities}, {ProblemDetailsJSONv2}) must stand "
            f"unquoted and the others inside quotes; {SUGGESTED_TEMPLATE_HINT}",
            malformed=True,
        ) from None
    except RecursionError:
        raise PayloadRejected(
            "the body is nested too deeply to be a Dynatrace notification", malformed=True
        ) from None
    except ValueError as exc:  # say, an integer of more digits than Python converts
        raise PayloadRejected(f"the body cannot be read as JSON: {exc}", malformed=True) from None


def stored_body(raw: str | None) -> Any:
    """A stored delivery body as JSON when it is JSON, else as the text Dynatrace sent: what a read
    shows. Kept as sent, except what no answer can carry: an unpaired surrogate escape becomes U+FFFD
    and nesting past the stored bound is cut, as at intake."""
    if raw is None:
        return None
    try:
        document = json.loads(lone_surrogates_replaced(raw)[0] if "\\u" in raw else raw)
    except (ValueError, RecursionError):
        return raw
    return jsontext.bounded(document)[0]


_SURROGATE_ESCAPE = re.compile(r"(\\+)u([dD][89a-fA-F][0-9a-fA-F]{2})")


def lone_surrogates_replaced(text: str) -> tuple[str, int]:
    """JSON text with each escape of an unpaired surrogate (``\\ud800`` alone) replaced by ``\\ufffd``:
    such a code point is not text, UTF-8 cannot encode it and PostgreSQL refuses it, so a title holding
    one could never be stored. A pair (high then low) is a real character and stays."""
    escapes = [m for m in _SURROGATE_ESCAPE.finditer(text) if len(m.group(1)) % 2 == 1]
    lone = []
    index = 0
    while index < len(escapes):
        escape = escapes[index]
        following = escapes[index + 1] if index + 1 < len(escapes) else None
        if (
            int(escape.group(2), 16) <= 0xDBFF
            and following is not None
            and following.start() == escape.end()
            and len(following.group(1)) == 1
            and int(following.group(2), 16) >= 0xDC00
        ):
            index += 2
            continue
        lone.append(escape)
        index += 1
    if not lone:
        return text, 0
    parts, last = [], 0
    for escape in lone:
        start = escape.end(1) - 1  # the backslash that opens the escape
        parts += [text[last:start], "\\ufffd"]
        last = escape.end()
    parts.append(text[last:])
    return "".join(parts), len(lone)


def _decode(body: bytes) -> str:
    """UTF-8 without a leading byte order mark (what the ``utf-8-sig`` codec gives, at a fraction of its
    cost), else Latin-1: any byte sequence is text."""
    try:
        return body.decode().removeprefix("\ufeff")
    except UnicodeDecodeError:
        return body.decode("latin-1")


def _read_every_pair(text: str, document: dict[str, Any]) -> bool:
    """Whether to parse again seeing every pair: a top-level key quoted more than once in the text may
    have been sent twice.

    Most bodies are settled by counting colons instead of searching for every key. A colon in JSON text
    is inside a string or after a member's name; the document written back has the same strings (when the
    text has no escape) and one name per member it kept. So the same number of colons means no member was
    dropped, no key was sent twice at any depth, and parsing again would give this same document. Not
    for deep text: ``json`` may refuse to parse it again, and that refusal is the answer.
    """
    if (
        "\\" not in text
        and text.count("{") + text.count("[") <= _SHALLOW
        and jsontext.dumps(document).count(":") == text.count(":")
    ):
        return False
    return any(text.count(f'"{key}"') > 1 for key in document)


def _no_constant(_name: str) -> None:
    return None


class _DuplicateKeys(dict):  # type: ignore[type-arg]
    """An object that had a key twice; the parser keeps the most useful value and says so."""

    duplicates: dict[str, list[Any]]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) == len(pairs):
        return result
    seen: dict[str, list[Any]] = {}
    for key, value in pairs:
        seen.setdefault(key, []).append(value)
    marked = _DuplicateKeys(result)
    marked.duplicates = {key: values for key, values in seen.items() if len(values) > 1}
    return marked


def _best_of(values: list[Any]) -> Any:
    """Of a key sent twice, the last value that is neither empty nor an unreplaced placeholder."""
    for value in reversed(values):
        if value in (None, "", [], {}):
            continue
        if isinstance(value, str) and _unreplaced_in(value):
            continue
        return value
    return values[-1]


def _from_document(document: dict[str, Any]) -> ProblemNotification:
    fields: dict[str, Any] = {}
    warnings: list[str] = []
    duplicates = getattr(document, "duplicates", {})
    for key, value in document.items():
        name = _TEMPLATE_KEYS.get(key) or _CANONICAL.get(_KEY_NOISE.sub("", key.lower()))
        if name is None:
            continue
        if key in duplicates:
            value = _best_of(duplicates[key])
            warnings.append(f"{key} was sent {len(duplicates[key])} times; kept one value")
        if name in fields and fields[name] not in (None, ""):
            continue
        fields[name] = value
        if key != name and name != "ProblemDetails":
            warnings.append(f"read {key!r} as {name}")

    present = frozenset(fields)
    unreplaced: list[str] = []

    def text(name: str) -> str | None:
        value = fields.get(name)
        if type(value) is not str:  # text is the usual case: skip these checks for it
            if isinstance(value, bool):
                return str(value).lower()
            if isinstance(value, _NUMBER):
                return str(value)
            if not isinstance(value, str):
                if value not in (None, "", [], {}):
                    warnings.append(f"{name} is a {type(value).__name__}, expected text; ignored")
                return None
        value = value.strip()
        if not value:
            return None
        if _unreplaced_in(value):
            unreplaced.append(name)
            return None
        return value

    notification = ProblemNotification(
        pid=text("PID"),
        display_id=text("ProblemID"),
        title=text("ProblemTitle"),
        problem_url=text("ProblemURL"),
        impacted_entity=text("ImpactedEntity"),
        impacted_entity_names=text("ImpactedEntityNames"),
        present_fields=present,
        unreplaced=unreplaced,
        warnings=warnings,
    )
    _set_state(notification, text("State"))
    notification.severity = _known_case(text("ProblemSeverity"), SEVERITIES)
    notification.impact = _known_case(text("ProblemImpact"), IMPACTS)
    notification.impacted_entities = _entities(
        fields.get("ImpactedEntities"), "ImpactedEntities", notification
    )
    tags_value = fields.get("Tags")
    if isinstance(tags_value, str) and _unreplaced_in(tags_value):
        unreplaced.append("Tags")
    elif "Tags" in fields:
        notification.tags_raw = tags_value if isinstance(tags_value, str) and tags_value.strip() else None
        notification.tags = _tags(tags_value, notification)

    for name in ("ProblemDetailsJSONv2", "ProblemDetailsJSON", "ProblemDetails"):
        if name not in fields:
            continue
        details = _details(fields[name], name, notification)
        if details is None:
            continue
        if _looks_v2(details):
            _apply_v2_details(notification, details, fill_only=True)
            notification.details, notification.details_format = details, "v2"
            break
        if notification.details is None:
            _apply_v1_details(notification, details)
            notification.details, notification.details_format = details, "v1"

    notification.is_test = _is_test(notification)
    if notification.pid is None and not notification.is_test:
        problem = "PID is unreplaced ({PID})" if "PID" in unreplaced else "the body has no PID"
        raise PayloadRejected(
            f'{problem}: Borealis keys every problem by it; add "PID": "{{PID}}" to the payload '
            f"(and a ProblemDetailsJSONv2 for start and end times); {SUGGESTED_TEMPLATE_HINT}"
        )
    return notification


def _unreplaced_in(value: str) -> bool:
    if "{" not in value:
        return False
    return any(match.group(1) in PLACEHOLDERS for match in _PLACEHOLDER.finditer(value))


def _set_state(notification: ProblemNotification, raw: str | None) -> None:
    notification.state_raw = raw
    if raw is None:
        return
    state = _STATE_ALIASES.get(raw.upper())
    if state is None:
        notification.warnings.append(f"unknown state {raw!r} kept as sent")
    notification.state = state or raw


def _known_case(value: str | None, known: tuple[str, ...]) -> str | None:
    """Known enum values in Dynatrace's spelling; unknown ones verbatim."""
    if value is None:
        return None
    upper = value.upper()
    return upper if upper in known else value


def _maybe_json(value: Any, name: str, notification: ProblemNotification) -> Any:
    """Arrays and objects sometimes arrive quoted, as JSON text; plain text is returned stripped."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    if not stripped:
        return None
    if stripped[0] in "[{":
        try:
            return jsontext.loads(stripped, parse_constant=_no_constant)
        except (json.JSONDecodeError, RecursionError):
            pass
    if _unreplaced_in(stripped):
        notification.unreplaced.append(name)
        return None
    if stripped[0] in "[{":
        notification.warnings.append(f"{name} is text that is not valid JSON; ignored")
        return None
    return stripped


def _entities(value: Any, name: str, notification: ProblemNotification) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, str) and not value.strip():
        return []
    value = _maybe_json(value, name, notification)
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
        entity = _entity(item)
        if entity is not None:
            entities.append(entity)
        else:
            notification.warnings.append(f"{name}: an item could not be read")
    return entities


def _entity(item: Any) -> dict[str, Any] | None:
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
    entity_id = _text(entity_id)
    name = _text(item.get("name", item.get("entityName")))
    entity_type = _text(entity_type) or _type_of(entity_id)
    if not entity_id and not name:
        return None
    return {"entityId": entity_id, "name": name, "type": entity_type}


def _type_of(entity_id: str | None) -> str | None:
    if entity_id and "-" in entity_id:
        prefix = entity_id.rsplit("-", 1)[0]
        return prefix if prefix.replace("_", "").isalpha() and prefix.isupper() else None
    return None


def _tags(value: Any, notification: ProblemNotification) -> list[dict[str, Any]]:
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
            key = _text(item.get("key"))
            if key:
                tags.append(
                    {
                        "context": _text(item.get("context")) or "CONTEXTLESS",
                        "key": key,
                        "value": _text(item.get("value")),
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


def _details(value: Any, name: str, notification: ProblemNotification) -> dict[str, Any] | None:
    value = _maybe_json(value, name, notification)
    if value is None:
        return None
    if not isinstance(value, dict):
        notification.warnings.append(f"{name} is not an object; ignored")
        return None
    return value


def _looks_v2(details: dict[str, Any]) -> bool:
    return "problemId" in details or "evidenceDetails" in details or "impactAnalysis" in details


def _apply_v2_details(notification: ProblemNotification, details: dict[str, Any], *, fill_only: bool) -> None:
    """Fields of a v2 problem; with ``fill_only`` the webhook's own fields take precedence."""

    def fill(attribute: str, value: Any) -> None:
        if value is not None and (not fill_only or getattr(notification, attribute) in (None, [])):
            setattr(notification, attribute, value)

    notification.api_problem_id = _text(details.get("problemId")) or notification.api_problem_id
    if notification.pid is None and notification.api_problem_id:
        notification.pid = notification.api_problem_id
    fill("display_id", _text(details.get("displayId")))
    fill("title", _text(details.get("title")))
    fill("severity", _known_case(_text(details.get("severityLevel")), SEVERITIES))
    fill("impact", _known_case(_text(details.get("impactLevel")), IMPACTS))
    if notification.state is None or not fill_only:
        _set_state(notification, _text(details.get("status")))
    impacted = details.get("impactedEntities")
    if isinstance(impacted, list):
        fill("impacted_entities", [entity for entity in map(_entity, impacted) if entity])
    entity_tags = details.get("entityTags")
    if isinstance(entity_tags, list):
        fill("tags", _tags(entity_tags, notification))
    zones = details.get("managementZones")
    if isinstance(zones, list):
        notification.management_zones = [
            {"id": _text(zone.get("id")), "name": _text(zone.get("name"))}
            for zone in zones
            if isinstance(zone, dict)
        ]
    root = details.get("rootCauseEntity")
    if isinstance(root, dict):
        notification.root_cause_entity = _entity(root)
    notification.start_time = _ms(details.get("startTime"), notification) or notification.start_time
    notification.end_time = _ms(details.get("endTime"), notification) or notification.end_time
    times = [details.get("startTime"), details.get("endTime")]
    evidence = details.get("evidenceDetails")
    if isinstance(evidence, dict) and isinstance(evidence.get("details"), list):
        for item in evidence["details"]:
            if isinstance(item, dict):
                times += [item.get("startTime"), item.get("endTime")]
    comments = details.get("recentComments")
    if isinstance(comments, dict) and isinstance(comments.get("comments"), list):
        times += [c.get("createdAtTimestamp") for c in comments["comments"] if isinstance(c, dict)]
    notification.observed_at = _latest(times, notification)


def _apply_v1_details(notification: ProblemNotification, details: dict[str, Any]) -> None:
    """Fields of a v1 problem (``ProblemDetailsJSON`` on older templates) not given by the webhook."""
    notification.api_problem_id = _text(details.get("id")) if "_" in str(details.get("id", "")) else None
    if notification.display_id is None:
        notification.display_id = _text(details.get("displayName"))
    if notification.severity is None:
        notification.severity = _known_case(_text(details.get("severityLevel")), SEVERITIES)
    if notification.impact is None:
        notification.impact = _known_case(_text(details.get("impactLevel")), IMPACTS)
    if notification.state is None:
        _set_state(notification, _text(details.get("status")))
    tags = details.get("tagsOfAffectedEntities")
    if notification.tags is None and isinstance(tags, list):
        notification.tags = _tags(tags, notification)
    times = [details.get("startTime"), details.get("endTime")]
    events = details.get("rankedEvents")
    if isinstance(events, list):
        for event in events:
            if not isinstance(event, dict):
                continue
            times += [event.get("startTime"), event.get("endTime")]
            if event.get("isRootCause") and notification.root_cause_entity is None:
                notification.root_cause_entity = _entity(event)
    notification.start_time = _ms(details.get("startTime"), notification)
    notification.end_time = _ms(details.get("endTime"), notification)
    notification.observed_at = _latest(times, notification)


def _ms(value: Any, notification: ProblemNotification) -> datetime | None:
    """Epoch milliseconds (``-1`` meaning "not yet") as a UTC datetime."""
    if type(value) is not int:  # an integer is the usual case: skip these checks for it
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        elif isinstance(value, bool) or not isinstance(value, _NUMBER):
            return None
    if value <= 0:
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        notification.warnings.append(f"timestamp {value!r} is out of range; ignored")
        return None


def _latest(values: list[Any], notification: ProblemNotification) -> datetime | None:
    times = [time for value in values if (time := _ms(value, notification)) is not None]
    return max(times) if times else None


def _is_test(notification: ProblemNotification) -> bool:
    return (
        (notification.display_id or "").upper() in TEST_PROBLEM_IDS
        or notification.pid == TEST_PID
        or (notification.title or "").strip().lower() == TEST_TITLE
    )


def _text(value: Any) -> str | None:
    if type(value) is str:  # the usual case: skip the checks below
        return value.strip() or None
    if value is None or isinstance(value, _NOT_TEXT):
        return None
    value = str(value).strip()
    return value or None
