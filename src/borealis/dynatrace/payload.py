"""Webhook bodies into one normalized notification, and what a test delivery says about the template.

Pure: no database, no HTTP. Real senders drift (DESIGN 4): keys renamed or in another case, arrays sent
as strings or empty strings, placeholders left unreplaced, unknown enum values, duplicate keys. Whatever
can be understood is taken, what cannot is recorded in ``warnings``; only a body with no usable problem
identity is refused (``PayloadRejected``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Any

from borealis import jsontext
from borealis.dynatrace.field_values import (
    NUMBER_TYPES,
    has_unreplaced,
    known_case,
    read_details,
    read_entities,
    read_tags,
    set_state,
)
from borealis.dynatrace.json_body import load_json
from borealis.dynatrace.problem_details import apply_v1_details, apply_v2_details, looks_v2
from borealis.dynatrace.problem_notification import (
    IMPACTS,
    SEVERITIES,
    SUGGESTED_TEMPLATE_HINT,
    PayloadRejected,
    ProblemNotification,
)
from borealis.dynatrace.template import EXPECTED_FIELDS

TEST_PROBLEM_IDS = frozenset({"999", "TESTID"})
TEST_PID = "99999"
TEST_TITLE = "dynatrace problem notification test run"


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


def parse_webhook(body: bytes) -> ProblemNotification:
    """Parse a webhook body whatever its Content-Type; raises ``PayloadRejected`` if it has no use."""
    document, lone_surrogates = load_json(body)
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


def _best_of(values: list[Any]) -> Any:
    """Of a key sent twice, the last value that is neither empty nor an unreplaced placeholder."""
    for value in reversed(values):
        if value in (None, "", [], {}):
            continue
        if isinstance(value, str) and has_unreplaced(value):
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
            if isinstance(value, NUMBER_TYPES):
                return str(value)
            if not isinstance(value, str):
                if value not in (None, "", [], {}):
                    warnings.append(f"{name} is a {type(value).__name__}, expected text; ignored")
                return None
        value = value.strip()
        if not value:
            return None
        if has_unreplaced(value):
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
    set_state(notification, text("State"))
    notification.severity = known_case(text("ProblemSeverity"), SEVERITIES)
    notification.impact = known_case(text("ProblemImpact"), IMPACTS)
    notification.impacted_entities = read_entities(
        fields.get("ImpactedEntities"), "ImpactedEntities", notification
    )
    tags_value = fields.get("Tags")
    if isinstance(tags_value, str) and has_unreplaced(tags_value):
        unreplaced.append("Tags")
    elif "Tags" in fields:
        notification.tags_raw = tags_value if isinstance(tags_value, str) and tags_value.strip() else None
        notification.tags = read_tags(tags_value, notification)

    for name in ("ProblemDetailsJSONv2", "ProblemDetailsJSON", "ProblemDetails"):
        if name not in fields:
            continue
        details = read_details(fields[name], name, notification)
        if details is None:
            continue
        if looks_v2(details):
            apply_v2_details(notification, details, fill_only=True)
            notification.details, notification.details_format = details, "v2"
            break
        if notification.details is None:
            apply_v1_details(notification, details)
            notification.details, notification.details_format = details, "v1"

    notification.is_test = _is_test(notification)
    if notification.pid is None and not notification.is_test:
        problem = "PID is unreplaced ({PID})" if "PID" in unreplaced else "the body has no PID"
        raise PayloadRejected(
            f'{problem}: Borealis keys every problem by it; add "PID": "{{PID}}" to the payload '
            f"(and a ProblemDetailsJSONv2 for start and end times); {SUGGESTED_TEMPLATE_HINT}"
        )
    return notification


def _is_test(notification: ProblemNotification) -> bool:
    return (
        (notification.display_id or "").upper() in TEST_PROBLEM_IDS
        or notification.pid == TEST_PID
        or (notification.title or "").strip().lower() == TEST_TITLE
    )
