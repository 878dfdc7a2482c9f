"""``GET /dynatrace/alerts`` (the seed's list of webhook problems), one alert, rejected deliveries."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Response

from borealis import jsontext
from borealis.api.deps import CorrelatedCaller, CurrentCaller, DbSession
from borealis.dynatrace.json_body import stored_body
from borealis.dynatrace.models import Connection
from borealis.dynatrace.problem_notification import IMPACTS, SEVERITIES
from borealis.errors import InvalidInput, NotFound
from borealis.incidents import service as incidents_service
from borealis.problems import listing, service
from borealis.problems.models import MERGED, OPEN, RESOLVED, Problem
from borealis.problems.schemas import (
    AlertDetail,
    AlertList,
    AlertRead,
    NotificationRead,
    RejectedDeliveryList,
    RejectedDeliveryRead,
)
from borealis.schemas import API_ERRORS, MAX_BIGINT, RowId, error_responses

router = APIRouter(prefix="/dynatrace", tags=["alerts"], responses=API_ERRORS)

STATES = (OPEN, RESOLVED, MERGED)
INCLUDES = ("payload",)
MAX_LIMIT = 500


def _choice(name: str, value: str | None, valid: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    upper = value.strip().upper()
    if upper not in valid:
        raise InvalidInput(
            f"{name} must be one of {', '.join(valid)} (any case); got {value!r}",
            details={"field": name, "valid": list(valid)},
        )
    return upper


def _moment(name: str, value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{name} must be an ISO 8601 time such as 2024-05-01T12:00:00Z; got {value!r}",
            details={"field": name},
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _includes(value: str | None) -> set[str]:
    parts = {part.strip().lower() for part in (value or "").split(",") if part.strip()}
    unknown = parts - set(INCLUDES)
    if unknown:
        raise InvalidInput(
            f"include accepts {', '.join(INCLUDES)}; got {', '.join(sorted(unknown))}",
            details={"field": "include", "valid": list(INCLUDES)},
        )
    return parts


def _encode_cursor(after: tuple[datetime, int]) -> str:
    raw = json.dumps([after[0].isoformat(), after[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, last_id = json.loads(raw)
        moment, row = datetime.fromisoformat(at), int(last_id)
        if not 0 <= row <= MAX_BIGINT:
            raise ValueError("id out of range")
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC), row
    except (ValueError, TypeError, OverflowError, RecursionError, binascii.Error, json.JSONDecodeError):
        raise InvalidInput(
            "cursor is not one this API returned; pass nextCursor from the previous page as is",
            details={"field": "cursor"},
        ) from None


def _alert(row: Any, payload: Any = None) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    root = None
    if get("root_cause_entity_id") or get("root_cause_entity_name"):
        root = {
            "entityId": get("root_cause_entity_id"),
            "name": get("root_cause_entity_name"),
            "type": get("root_cause_entity_type"),
        }
    return {
        "id": get("id"),
        "problemId": get("display_id"),
        "pid": get("pid"),
        "title": get("title"),
        "state": get("state"),
        "severity": get("severity"),
        "impact": get("impact"),
        "priority": get("priority"),
        "impactedEntity": get("impacted_entity"),
        "impactedEntities": get("impacted_entities") or [],
        "rootCauseEntity": root,
        "problemUrl": get("problem_url"),
        "tags": get("tags") or [],
        "startTime": get("start_time"),
        "endTime": get("end_time"),
        "firstReceivedAt": get("first_received_at"),
        "lastReceivedAt": get("last_received_at"),
        "notificationCount": get("notification_count"),
        "payload": payload,
    }


Q_HELP = (
    "Up to 8 words to find in the title, display id, PID or an entity's name or id (any case). A "
    "problem matches when each word begins one of its words; inside a word, each part after "
    "punctuation begins a word too, so 'front' finds 'easytravel-frontend' and '22011' finds 'P-22011'."
)
OFFSET_HELP = (
    "Problems to skip. Costs time in proportion to the rows skipped (counted from the nearer end of "
    "the list); to go through many pages, follow nextCursor instead."
)
CURSOR_HELP = (
    "nextCursor of the previous page (same filters): the next page at any depth for the cost of the "
    "first. Replaces offset."
)


@router.get("/alerts", response_model=AlertList, response_model_exclude_none=False)
def list_alerts(
    caller: CorrelatedCaller,
    db_session: DbSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Problems per page, 1..500.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_BIGINT, description=OFFSET_HELP)] = 0,
    state: Annotated[str | None, Query(description="OPEN, RESOLVED or MERGED (any case).")] = None,
    severity: Annotated[str | None, Query(description=f"One of {', '.join(SEVERITIES)}.")] = None,
    impact: Annotated[str | None, Query(description=f"One of {', '.join(IMPACTS)}.")] = None,
    q: Annotated[str | None, Query(max_length=200, description=Q_HELP)] = None,
    since: Annotated[str | None, Query(description="Last activity at or after (ISO 8601).")] = None,
    until: Annotated[str | None, Query(description="Last activity at or before (ISO 8601).")] = None,
    cursor: Annotated[str | None, Query(description=CURSOR_HELP)] = None,
    include: Annotated[str | None, Query(description="'payload' adds the latest raw body.")] = None,
) -> Response:
    """The workspace's problems, newest activity first, one row per problem, and how many match.

    ``total`` is exact. ``nextCursor`` is set while more pages follow; pass it as ``cursor`` (with
    the same filters) for the next page, which costs the same at any depth, unlike a deep ``offset``.
    ``q`` matches word beginnings: every word of ``q`` must begin a word of the problem's title,
    display id, PID or an impacted or root-cause entity's name or id."""
    filters = listing.AlertFilters(
        state=_choice("state", state, STATES),
        severity=_choice("severity", severity, SEVERITIES),
        impact=_choice("impact", impact, IMPACTS),
        q=q.strip() if q and q.strip() else None,
        since=_moment("since", since),
        until=_moment("until", until),
    )
    includes = _includes(include)
    after = _decode_cursor(cursor) if cursor else None
    page = listing.list_alerts(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        filters=filters,
        limit=limit,
        offset=offset,
        after=after,
    )
    payloads: dict[int, str] = {}
    if "payload" in includes:
        payloads = service.latest_payloads(
            db_session=db_session, problem_ids=[row["id"] for row in page.rows]
        )
    incident_ids = incidents_service.incident_ids_for(
        db_session=db_session, problem_ids=[row["id"] for row in page.rows]
    )
    answer = AlertList.model_validate(
        {
            "alerts": [
                {
                    **_alert(row, stored_body(payloads.get(row["id"]))),
                    "incidentId": incident_ids.get(row["id"]),
                }
                for row in page.rows
            ],
            "total": page.total,
            "limit": limit,
            "offset": offset,
            "nextCursor": _encode_cursor(page.next_after) if page.next_after else None,
        }
    )
    # Serialized here, in the request's worker thread, rather than validated again on another.
    return Response(answer.model_dump_json(by_alias=True), media_type="application/json")


def _workspace_problem(alert_id: RowId, caller: CorrelatedCaller, db_session: DbSession) -> Problem:
    problem = service.get_in_workspace(
        db_session=db_session, workspace_id=caller.workspace_id, problem_id=alert_id
    )
    if problem is None:
        raise NotFound(f"no alert {alert_id} in this workspace; list them with GET /dynatrace/alerts")
    return problem


WorkspaceProblem = Annotated[Problem, Depends(_workspace_problem)]


@router.get("/alerts/{alert_id}", response_model=AlertDetail, responses=error_responses(404))
def get_alert(
    problem: WorkspaceProblem,
    db_session: DbSession,
    include: Annotated[str | None, Query(description="'payload' adds each raw body.")] = None,
) -> dict[str, Any]:
    """One problem with its notification history (oldest first)."""
    includes = _includes(include)
    notifications = service.notifications_of(db_session=db_session, problem_id=problem.id)
    history = [
        NotificationRead(
            id=item.id,
            source=item.source,
            outcome=item.outcome,
            state=item.state,
            state_raw=item.state_raw,
            problem_id=item.display_id,
            title=item.title,
            observed_at=item.observed_at,
            received_at=item.received_at,
            last_received_at=item.last_received_at,
            delivery_count=item.delivery_count,
            warnings=item.warnings or [],
            payload=stored_body(item.raw_body) if "payload" in includes else None,
        )
        for item in notifications
    ]
    latest = stored_body(notifications[-1].raw_body) if notifications and "payload" in includes else None
    return {
        **_alert(problem, latest),
        "incidentId": incidents_service.incident_ids_for(db_session=db_session, problem_ids=[problem.id]).get(
            problem.id
        ),
        "apiProblemId": problem.api_problem_id,
        "managementZones": problem.management_zones or [],
        "duplicateCount": problem.duplicate_count,
        # Bounded at intake; a document stored before the bound is cut here, so it can be read.
        "details": jsontext.bounded(problem.details)[0],
        "detailsFormat": problem.details_format,
        "notifications": history,
    }


@router.get("/rejected-deliveries", response_model=RejectedDeliveryList)
def list_rejected_deliveries(caller: CurrentCaller, db_session: DbSession) -> RejectedDeliveryList:
    """Webhook deliveries that could not be used, newest first, as Dynatrace sent them."""
    connection = db_session.scalar(
        sa.select(Connection).where(Connection.workspace_id == caller.workspace_id)
    )
    if connection is None:
        return RejectedDeliveryList(deliveries=[])
    rejected = service.list_rejected(db_session=db_session, connection_id=connection.id)
    return RejectedDeliveryList(deliveries=[RejectedDeliveryRead.model_validate(item) for item in rejected])


__all__ = ["AlertRead", "router"]
