"""The alerts pages: the problem table with filters and live updates, and one problem with its history."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request, Response

from borealis import jsontext
from borealis.api.deps import CorrelatedCaller, DbSession
from borealis.dynatrace import service as dynatrace_service
from borealis.dynatrace.json_body import stored_body
from borealis.dynatrace.problem_notification import IMPACTS, SEVERITIES
from borealis.errors import NotFound
from borealis.incidents import service as incidents_service
from borealis.problems import listing, service
from borealis.problems.models import MERGED, OPEN, RESOLVED
from borealis.schemas import Offset, RowId
from borealis.web.listing import PAGE_SIZE, Limit, Search, choice, list_context, search_text
from borealis.web.routing import PageRoute
from borealis.web.security import verify_csrf
from borealis.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])

STATES = (OPEN, RESOLVED, MERGED)


@router.get("/dynatrace/alerts")
def alerts_page(
    request: Request,
    caller: CorrelatedCaller,
    db_session: DbSession,
    state: str | None = None,
    severity: str | None = None,
    impact: str | None = None,
    q: Search = None,
    limit: Limit = PAGE_SIZE,
    offset: Offset = 0,
) -> Response:
    search = search_text(q)
    filters = listing.AlertFilters(
        state=choice("state", state, STATES, str.upper),
        severity=choice("severity", severity, SEVERITIES, str.upper),
        impact=choice("impact", impact, IMPACTS, str.upper),
        q=search,
    )
    page = listing.list_alerts(
        db_session=db_session, workspace_id=caller.workspace_id, filters=filters, limit=limit, offset=offset
    )
    incident_ids = incidents_service.incident_ids_for(
        db_session=db_session, problem_ids=[row["id"] for row in page.rows]
    )
    chosen = {"state": filters.state, "severity": filters.severity, "impact": filters.impact, "q": search}
    connection = dynatrace_service.get(db_session=db_session, workspace_id=caller.workspace_id)
    context = {
        "title": "Alerts",
        "active": "alerts",
        "wide": True,
        "user": caller.user,
        "me": caller,
        "alerts": page.rows,
        "incident_ids": incident_ids,
        "states": STATES,
        "severities": SEVERITIES,
        "impacts": IMPACTS,
        "connected": connection is not None and connection.connected,
        **list_context("/dynatrace/alerts", chosen, total=page.total, limit=limit, offset=offset),
    }
    return render(request, "alerts.html", context)


def _pretty(raw: str | None) -> str:
    """A stored body as indented JSON when it is JSON, else as Dynatrace sent it."""
    body = stored_body(raw)
    if body is None:
        return ""
    return body if isinstance(body, str) else _pretty_json(body)


def _pretty_json(document: Any) -> str:
    return json.dumps(jsontext.bounded(document)[0], indent=2, ensure_ascii=False)


@router.get("/dynatrace/alerts/{alert_id}")
def problem_page(
    request: Request, caller: CorrelatedCaller, db_session: DbSession, alert_id: RowId
) -> Response:
    problem = service.get_in_workspace(
        db_session=db_session, workspace_id=caller.workspace_id, problem_id=alert_id
    )
    if problem is None:
        raise NotFound(f"There is no alert {alert_id} in your account. The alerts list shows every one.")
    notifications = service.notifications_of(db_session=db_session, problem_id=problem.id)
    incident_id = incidents_service.incident_ids_for(db_session=db_session, problem_ids=[problem.id]).get(
        problem.id
    )
    context: dict[str, Any] = {
        "title": problem.title or problem.display_id or f"Alert {problem.id}",
        "active": "alerts",
        "user": caller.user,
        "me": caller,
        "problem": problem,
        "incident_id": incident_id,
        "notifications": [(item, _pretty(item.raw_body)) for item in reversed(notifications)],
        "details": _pretty_json(problem.details) if problem.details else None,
    }
    return render(request, "problem.html", context)
