"""How one notification changes a problem: pure, so the same rules hold for every storage path.

The final record must not depend on the order or repetition of deliveries (Dynatrace retries and
reorders without saying so). Two ideas make that hold:

* The state is a function of everything seen: RESOLVED and MERGED end a problem, and an OPEN reopens it
  only when its Dynatrace timestamp is later than every end seen (an end without a timestamp cannot be
  overtaken). The bookkeeping lives in ``problem["lifecycle"]``.
* The fields come from the newest notification, judged by its Dynatrace timestamp, then the state
  (OPEN < RESOLVED < MERGED), then its content hash. A timed notification outranks an untimed one; among
  untimed ones arrival order decides within a state. Empty values never blank out what is known (a
  MERGED carries almost nothing); an older notification only fills fields that are still empty.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from borealis.dynatrace.problem_notification import MERGED, OPEN, RESOLVED, ProblemNotification, priority_for

CREATED = "created"
UPDATED = "updated"
DUPLICATE = "duplicate"
STALE = "stale"
TEST = "test"

_RANK = {OPEN: 0, RESOLVED: 1, MERGED: 2}

# Problem column -> how to read it from a notification.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("display_id", "display_id"),
    ("api_problem_id", "api_problem_id"),
    ("title", "title"),
    ("severity", "severity"),
    ("impact", "impact"),
    ("problem_url", "problem_url"),
    ("impacted_entity", "impacted_entity"),
    ("impacted_entities", "impacted_entities"),
    ("tags", "tags"),
    ("tags_raw", "tags_raw"),
    ("management_zones", "management_zones"),
    ("start_time", "start_time"),
    ("details", "details"),
    ("details_format", "details_format"),
)
_ROOT_CAUSE = ("root_cause_entity_id", "root_cause_entity_name", "root_cause_entity_type")


def new_problem(notification: ProblemNotification) -> dict[str, Any]:
    """The columns of a problem seen for the first time, before the notification is applied."""
    problem: dict[str, Any] = {name: None for name, _ in _FIELDS}
    problem.update(dict.fromkeys(_ROOT_CAUSE))
    problem.update(
        pid=notification.pid,
        pid_key=notification.pid_key,
        state=OPEN,
        priority="medium",
        impacted_entities=[],
        tags=[],
        management_zones=[],
        search_text="",
        lifecycle={},
    )
    return problem


def apply(problem: dict[str, Any], notification: ProblemNotification) -> str:
    """Apply a notification not seen before to the problem's columns (in place); returns
    ``updated`` when it carried the newest information or changed the state, else ``stale``."""
    lifecycle = dict(problem.get("lifecycle") or {})
    observed = _ms(notification.observed_at)
    state = notification.state
    if state in (RESOLVED, MERGED):
        lifecycle["endSeen"] = True
        if state == MERGED:
            lifecycle["merged"] = True
        if observed is None:
            lifecycle["endUntimed"] = True
        else:
            lifecycle["endAt"] = max(observed, lifecycle.get("endAt") or observed)
        end_time = _ms(notification.end_time)
        if end_time is not None:
            lifecycle["endTime"] = max(end_time, lifecycle.get("endTime") or end_time)
    elif state == OPEN:
        lifecycle["openSeen"] = True
        if observed is not None:
            lifecycle["openAt"] = max(observed, lifecycle.get("openAt") or observed)
    elif state is not None:
        lifecycle["otherState"] = state

    version = [observed, _RANK.get(state or "", 0), notification.content_hash]
    current = lifecycle.get("version")
    newest = current is None or _is_newer(version, current)
    if newest:
        lifecycle["version"] = version
        _take(problem, notification, fill_only=False)
    else:
        _take(problem, notification, fill_only=True)

    previous_state = problem.get("state")
    problem["lifecycle"] = lifecycle
    problem["state"] = derive_state(lifecycle)
    problem["end_time"] = _end_time(lifecycle, problem["state"])
    problem["priority"] = priority_for(problem["severity"]) or problem.get("priority") or "medium"
    problem["search_text"] = search_text(problem)
    return UPDATED if newest or problem["state"] != previous_state else STALE


def derive_state(lifecycle: dict[str, Any]) -> str:
    """OPEN, RESOLVED or MERGED from everything seen (an unknown state only when nothing else was)."""
    if lifecycle.get("endSeen"):
        open_at, end_at = lifecycle.get("openAt"), lifecycle.get("endAt")
        reopened = (
            open_at is not None
            and end_at is not None
            and not lifecycle.get("endUntimed")
            and open_at > end_at
        )
        if not reopened:
            return MERGED if lifecycle.get("merged") else RESOLVED
        return OPEN
    if lifecycle.get("openSeen"):
        return OPEN
    return lifecycle.get("otherState") or OPEN


def _end_time(lifecycle: dict[str, Any], state: str) -> datetime | None:
    """Dynatrace's end time of an ended problem, unless an OPEN seen since makes it obsolete."""
    end_time = lifecycle.get("endTime")
    if state not in (RESOLVED, MERGED) or end_time is None:
        return None
    open_at, end_at = lifecycle.get("openAt"), lifecycle.get("endAt")
    if open_at is not None and end_at is not None and open_at > end_at:
        return None
    return datetime.fromtimestamp(end_time / 1000, UTC)


def search_text(problem: dict[str, Any]) -> str:
    """What the alerts ``q`` filter matches: title, ids, impact sentence and entity names."""
    parts = [
        problem.get("title"),
        problem.get("display_id"),
        problem.get("pid"),
        problem.get("impacted_entity"),
        problem.get("root_cause_entity_name"),
        problem.get("root_cause_entity_id"),
    ]
    for entity in problem.get("impacted_entities") or []:
        parts.append(entity.get("name"))
        parts.append(entity.get("entityId"))
    return "\n".join(part for part in parts if part).lower()


def _is_newer(version: list[Any], current: list[Any]) -> bool:
    observed, rank, content_hash = version
    current_observed, current_rank, current_hash = current
    if observed is not None and current_observed is not None:
        return (observed, rank, content_hash) > (current_observed, current_rank, current_hash)
    if observed is not None or current_observed is not None:
        # What carries Dynatrace's time is demonstrably placed; an untimed delivery only fills gaps.
        return observed is not None
    return rank >= current_rank


def _take(problem: dict[str, Any], notification: ProblemNotification, *, fill_only: bool) -> None:
    for column, attribute in _FIELDS:
        value = getattr(notification, attribute)
        if value is None or value == [] or value == "":
            continue
        if fill_only and problem.get(column) not in (None, [], ""):
            continue
        problem[column] = value
    root = notification.root_cause_entity
    if root and (not fill_only or problem.get("root_cause_entity_id") is None):
        problem["root_cause_entity_id"] = root.get("entityId")
        problem["root_cause_entity_name"] = root.get("name")
        problem["root_cause_entity_type"] = root.get("type")


def _ms(value: datetime | None) -> int | None:
    if value is None:
        return None
    return int(value.astimezone(UTC).timestamp() * 1000)
