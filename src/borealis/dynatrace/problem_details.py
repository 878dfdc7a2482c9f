"""Dynatrace's own problem objects: the v2 problem (``ProblemDetailsJSONv2``, ``GET /api/v2/problems``)
and the v1 one (``ProblemDetailsJSON`` on older templates), read into a notification.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from borealis import jsontext
from borealis.dynatrace.field_values import (
    clean_text,
    known_case,
    latest_time,
    read_entity,
    read_ms,
    read_tags,
    set_state,
)
from borealis.dynatrace.problem_notification import IMPACTS, SEVERITIES, PayloadRejected, ProblemNotification


def from_api_problem(problem: dict[str, Any]) -> ProblemNotification:
    """A v2 problem object of ``GET /api/v2/problems`` as a notification for the same record."""
    problem, _ = jsontext.bounded(problem)
    problem_id = clean_text(problem.get("problemId"))
    if not problem_id:
        raise PayloadRejected("the API problem has no problemId")
    notification = ProblemNotification(pid=problem_id)
    apply_v2_details(notification, problem, fill_only=False)
    notification.details = problem
    notification.details_format = "api"
    notification.content_hash = hashlib.sha256(
        json.dumps(problem, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()
    return notification


def looks_v2(details: dict[str, Any]) -> bool:
    """Whether the details are a v2 problem (v1 has none of these keys)."""
    return "problemId" in details or "evidenceDetails" in details or "impactAnalysis" in details


def apply_v2_details(notification: ProblemNotification, details: dict[str, Any], *, fill_only: bool) -> None:
    """Fields of a v2 problem; with ``fill_only`` the webhook's own fields take precedence."""

    def fill(attribute: str, value: Any) -> None:
        if value is not None and (not fill_only or getattr(notification, attribute) in (None, [])):
            setattr(notification, attribute, value)

    notification.api_problem_id = clean_text(details.get("problemId")) or notification.api_problem_id
    if notification.pid is None and notification.api_problem_id:
        notification.pid = notification.api_problem_id
    fill("display_id", clean_text(details.get("displayId")))
    fill("title", clean_text(details.get("title")))
    fill("severity", known_case(clean_text(details.get("severityLevel")), SEVERITIES))
    fill("impact", known_case(clean_text(details.get("impactLevel")), IMPACTS))
    if notification.state is None or not fill_only:
        set_state(notification, clean_text(details.get("status")))
    impacted = details.get("impactedEntities")
    if isinstance(impacted, list):
        fill("impacted_entities", [entity for entity in map(read_entity, impacted) if entity])
    entity_tags = details.get("entityTags")
    if isinstance(entity_tags, list):
        fill("tags", read_tags(entity_tags, notification))
    zones = details.get("managementZones")
    if isinstance(zones, list):
        notification.management_zones = [
            {"id": clean_text(zone.get("id")), "name": clean_text(zone.get("name"))}
            for zone in zones
            if isinstance(zone, dict)
        ]
    root = details.get("rootCauseEntity")
    if isinstance(root, dict):
        notification.root_cause_entity = read_entity(root)
    notification.start_time = read_ms(details.get("startTime"), notification) or notification.start_time
    notification.end_time = read_ms(details.get("endTime"), notification) or notification.end_time
    times = [details.get("startTime"), details.get("endTime")]
    evidence = details.get("evidenceDetails")
    if isinstance(evidence, dict) and isinstance(evidence.get("details"), list):
        for item in evidence["details"]:
            if isinstance(item, dict):
                times += [item.get("startTime"), item.get("endTime")]
    comments = details.get("recentComments")
    if isinstance(comments, dict) and isinstance(comments.get("comments"), list):
        times += [c.get("createdAtTimestamp") for c in comments["comments"] if isinstance(c, dict)]
    notification.observed_at = latest_time(times, notification)


def apply_v1_details(notification: ProblemNotification, details: dict[str, Any]) -> None:
    """Fields of a v1 problem (``ProblemDetailsJSON`` on older templates) not given by the webhook."""
    notification.api_problem_id = clean_text(details.get("id")) if "_" in str(details.get("id", "")) else None
    if notification.display_id is None:
        notification.display_id = clean_text(details.get("displayName"))
    if notification.severity is None:
        notification.severity = known_case(clean_text(details.get("severityLevel")), SEVERITIES)
    if notification.impact is None:
        notification.impact = known_case(clean_text(details.get("impactLevel")), IMPACTS)
    if notification.state is None:
        set_state(notification, clean_text(details.get("status")))
    tags = details.get("tagsOfAffectedEntities")
    if notification.tags is None and isinstance(tags, list):
        notification.tags = read_tags(tags, notification)
    times = [details.get("startTime"), details.get("endTime")]
    events = details.get("rankedEvents")
    if isinstance(events, list):
        for event in events:
            if not isinstance(event, dict):
                continue
            times += [event.get("startTime"), event.get("endTime")]
            if event.get("isRootCause") and notification.root_cause_entity is None:
                notification.root_cause_entity = read_entity(event)
    notification.start_time = read_ms(details.get("startTime"), notification)
    notification.end_time = read_ms(details.get("endTime"), notification)
    notification.observed_at = latest_time(times, notification)
