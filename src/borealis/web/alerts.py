"""The alerts pages: the problem table with filters and live updates, and one problem with its history."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from borealis.deps import CurrentUser, DbSession
from borealis.dynatrace import service as dynatrace_service
from borealis.dynatrace.payload import IMPACTS, SEVERITIES
from borealis.errors import InvalidInput, NotFound
from borealis.incidents import service as incidents_service
from borealis.problems import listing, service
from borealis.problems.models import MERGED, OPEN, RESOLVED
from borealis.web.routing import PageRoute
from borealis.web.security import verify_csrf
from borealis.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])

STATES = (OPEN, RESOLVED, MERGED)
PAGE_SIZE = 25
MAX_PAGE_SIZE = 200


def _choice(name: str, value: str | None, valid: tuple[str, ...]) -> str | None:
    if not value:
        return None
    upper = value.strip().upper()
    if upper not in valid:
        raise InvalidInput(f"The {name} filter must be one of {', '.join(valid)}; the link has {value!r}.")
    return upper


def _page_link(filters: dict[str, str | None], limit: int, offset: int) -> str:
    query = {key: value for key, value in filters.items() if value}
    if offset:
        query["offset"] = str(offset)
    if limit != PAGE_SIZE:
        query["limit"] = str(limit)
    return "/dynatrace/alerts" + (f"?{urlencode(query)}" if query else "")


@router.get("/dynatrace/alerts")
def alerts_page(
    request: Request,
    user: CurrentUser,
    db_session: DbSession,
    state: str | None = None,
    severity: str | None = None,
    impact: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    search = (q or "").strip() or None
    filters = listing.AlertFilters(
        state=_choice("state", state, STATES),
        severity=_choice("severity", severity, SEVERITIES),
        impact=_choice("impact", impact, IMPACTS),
        q=search,
    )
    page = listing.list_alerts(
        db_session=db_session, user_id=user.id, filters=filters, limit=limit, offset=offset
    )
    incident_ids = incidents_service.incident_ids_for(
        db_session=db_session, problem_ids=[row["id"] for row in page.rows]
    )
    chosen = {"state": filters.state, "severity": filters.severity, "impact": filters.impact, "q": search}
    connection = dynatrace_service.get(db_session=db_session, user_id=user.id)
    context = {
        "title": "Alerts",
        "active": "alerts",
        "wide": True,
        "user": user,
        "alerts": page.rows,
        "incident_ids": incident_ids,
        "total": page.total,
        "limit": limit,
        "offset": offset,
        "filters": chosen,
        "filtered": any(chosen.values()),
        "states": STATES,
        "severities": SEVERITIES,
        "impacts": IMPACTS,
        "connected": connection is not None and connection.connected,
        "previous_link": _page_link(chosen, limit, max(offset - limit, 0)) if offset else None,
        "next_link": _page_link(chosen, limit, offset + limit) if offset + limit < page.total else None,
    }
    return render(request, "alerts.html", context)


def _pretty(raw: str | None) -> str:
    """A stored body as indented JSON when it is JSON, else as Dynatrace sent it."""
    if raw is None:
        return ""
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw


@router.get("/dynatrace/alerts/{alert_id}")
def problem_page(
    request: Request, user: CurrentUser, db_session: DbSession, alert_id: Annotated[int, Path(ge=1)]
) -> Response:
    problem = service.get_for_user(db_session=db_session, user_id=user.id, problem_id=alert_id)
    if problem is None:
        raise NotFound(f"There is no alert {alert_id} in your account. The alerts list shows every one.")
    notifications = service.notifications_of(db_session=db_session, problem_id=problem.id)
    incident_id = incidents_service.incident_ids_for(db_session=db_session, problem_ids=[problem.id]).get(
        problem.id
    )
    context: dict[str, Any] = {
        "title": problem.title or problem.display_id or f"Alert {problem.id}",
        "active": "alerts",
        "user": user,
        "problem": problem,
        "incident_id": incident_id,
        "notifications": [(item, _pretty(item.raw_body)) for item in reversed(notifications)],
        "details": json.dumps(problem.details, indent=2, ensure_ascii=False) if problem.details else None,
    }
    return render(request, "problem.html", context)
