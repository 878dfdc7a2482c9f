"""The incidents pages: the list, and one incident with its problems, timeline, RCA and manual actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.orm import Session

from borealis import markup
from borealis.api.deps import AppSettings, Caller, CorrelatedCaller, CorrelatedResponder, DbSession
from borealis.errors import BorealisError, InvalidInput, NotFound
from borealis.incidents import service, workflow
from borealis.incidents.models import STATUSES, Incident
from borealis.problems.models import PRIORITIES
from borealis.rca import service as rca_service
from borealis.rca.models import Feedback, RcaStatus, RcaTrigger
from borealis.schemas import Offset, RowId
from borealis.web.drawing import draw
from borealis.web.listing import PAGE_SIZE, Limit, Search, choice, list_context, search_text
from borealis.web.routing import PageRoute
from borealis.web.security import flash, verify_csrf
from borealis.web.templating import render
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Role
from borealis.writeback import service as writeback_service

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])

# Targets offered for merge and move: the most recent incidents are the likely ones.
TARGET_CHOICES = 50
NEW_INCIDENT = "new"
# The assign form's "assign to me".
ME = "me"
# The list's workflow filters: whose incidents, and whether someone is on them.
ASSIGNEES = ("mine", "nobody")
ACKNOWLEDGED = ("yes", "no")


@router.get("/incidents")
def incidents_page(
    request: Request,
    caller: CorrelatedCaller,
    db_session: DbSession,
    status: str | None = None,
    priority: str | None = None,
    assignee: str | None = None,
    acknowledged: str | None = None,
    q: Search = None,
    limit: Limit = PAGE_SIZE,
    offset: Offset = 0,
) -> Response:
    search = search_text(q)
    whose = choice("assignee", assignee, ASSIGNEES, str.lower)
    seen = choice("acknowledged", acknowledged, ACKNOWLEDGED, str.lower)
    filters = service.IncidentFilter(
        status=choice("status", status, STATUSES, str.lower),
        priority=choice("priority", priority, PRIORITIES, str.lower),
        q=search,
        assignee={"mine": caller.user.id, "nobody": service.NOBODY}.get(whose or ""),
        acknowledged=None if seen is None else seen == "yes",
    )
    items, total = service.list_incidents(
        db_session=db_session, workspace_id=caller.workspace_id, filters=filters, limit=limit, offset=offset
    )
    chosen = {
        "status": filters.status,
        "priority": filters.priority,
        "assignee": whose,
        "acknowledged": seen,
        "q": search,
    }
    names = workflow.usernames(db_session=db_session, user_ids={item.assignee_id for item in items})
    context = {
        "title": "Incidents",
        "active": "incidents",
        "wide": True,
        "user": caller.user,
        "me": caller,
        "incidents": items,
        "statuses": STATUSES,
        "priorities": PRIORITIES,
        "assignees": ASSIGNEES,
        "acknowledged_choices": ACKNOWLEDGED,
        "names": names,
        **list_context("/incidents", chosen, total=total, limit=limit, offset=offset),
    }
    return render(request, "incidents.html", context)


def _incident(db_session: Session, caller: Caller, incident_id: int) -> Incident:
    incident = service.get(db_session=db_session, workspace_id=caller.workspace_id, incident_id=incident_id)
    if incident is None:
        raise NotFound(
            f"There is no incident #{incident_id} in this workspace. The incidents list shows every one."
        )
    return incident


def _targets(db_session: Session, caller: Caller, incident: Incident) -> list[Incident]:
    recent, _ = service.list_incidents(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        filters=service.IncidentFilter(),
        limit=TARGET_CHOICES,
        offset=0,
    )
    return [item for item in recent if item.id != incident.id]


def _evidence_index(rca: Any) -> dict[str, Any]:
    if rca is None or rca.report is None:
        return {}
    return {item.id: item for item in rca.report.evidence}


IncidentId = RowId


@router.get("/incidents/{incident_id}")
def incident_page(
    request: Request, caller: CorrelatedCaller, db_session: DbSession, incident_id: IncidentId
) -> Response:
    incident = _incident(db_session, caller, incident_id)
    run = rca_service.latest(db_session=db_session, incident_id=incident.id)
    rca = rca_service.read(db_session=db_session, run=run) if run is not None else None
    timeline = service.timeline(db_session=db_session, incident=incident)
    notes = workflow.notes(db_session=db_session, incident=incident)
    names = workflow.usernames(
        db_session=db_session,
        user_ids={event.user_id for event in timeline} | {incident.acknowledged_by_id, incident.assignee_id},
    )
    context: dict[str, Any] = {
        "title": f"Incident #{incident.id}",
        "active": "incidents",
        "user": caller.user,
        "me": caller,
        "incident": incident,
        "members": service.members(db_session=db_session, incident=incident),
        "timeline": list(reversed(timeline)),
        "names": names,
        "notes": [(item, markup.to_html(item.note.text)) for item in notes],
        "team": workspaces_service.members(db_session=db_session, workspace_id=caller.workspace_id),
        "responder": caller.may(Role.RESPONDER),
        "targets": _targets(db_session, caller, incident),
        "rca": rca,
        "rca_active": rca is not None and rca.status in (RcaStatus.QUEUED.value, RcaStatus.RUNNING.value),
        "evidence": _evidence_index(rca),
        # The report's walk drawn as a graph and sparklines; None for reports without a path.
        "walk": draw(rca.report.walk) if rca is not None and rca.report is not None else None,
        "new_incident": NEW_INCIDENT,
    }
    return render(request, "incident.html", context)


def _back(incident_id: int, anchor: str = "") -> RedirectResponse:
    return RedirectResponse(f"/incidents/{incident_id}{anchor}", status_code=303)


def _act(request: Request, incident_id: int, action: Callable[[], str], anchor: str = "") -> Response:
    """Run a manual action and come back to the incident with what happened, or why it was refused."""
    try:
        flash(request, action())
    except BorealisError as exc:
        flash(request, exc.message, "error")
    return _back(incident_id, anchor)


@router.post("/incidents/{incident_id}/resolve")
def resolve_submit(
    request: Request, caller: CorrelatedResponder, db_session: DbSession, incident_id: IncidentId
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        service.resolve(db_session=db_session, incident=incident, by=caller.user.id)
        db_session.commit()
        return "The incident is resolved. It takes no new problems until reopened."

    return _act(request, incident_id, action)


@router.post("/incidents/{incident_id}/reopen")
def reopen_submit(
    request: Request, caller: CorrelatedResponder, db_session: DbSession, incident_id: IncidentId
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        service.reopen(db_session=db_session, incident=incident, by=caller.user.id)
        db_session.commit()
        return "The incident is open again: related new problems join it."

    return _act(request, incident_id, action)


@router.post("/incidents/{incident_id}/rca")
def rca_submit(
    request: Request,
    caller: CorrelatedResponder,
    db_session: DbSession,
    settings: AppSettings,
    incident_id: IncidentId,
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        rca_service.request(
            db_session=db_session, incident=incident, trigger=RcaTrigger.ON_DEMAND, settings=settings
        )
        db_session.commit()
        return "Root-cause analysis queued: the report appears below when it is done."

    return _act(request, incident_id, action, "#rca")


@router.post("/incidents/{incident_id}/merge")
def merge_submit(
    request: Request,
    caller: CorrelatedResponder,
    db_session: DbSession,
    incident_id: IncidentId,
    source_incident_id: Annotated[str, Form()] = "",
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        source = _incident_number(source_incident_id, "the incident to merge in")
        service.merge(db_session=db_session, target=incident, source_incident_id=source, by=caller.user.id)
        db_session.commit()
        return f"Incident #{source} is merged into this one."

    return _act(request, incident_id, action)


@router.post("/incidents/{incident_id}/problems/{alert_id}/move")
def move_submit(
    request: Request,
    caller: CorrelatedResponder,
    db_session: DbSession,
    incident_id: IncidentId,
    alert_id: RowId,
    target_incident_id: Annotated[str, Form()] = "",
) -> Response:
    incident = _incident(db_session, caller, incident_id)
    target_text = target_incident_id.strip()

    def action() -> str:
        target = None if target_text == NEW_INCIDENT else _incident_number(target_text, "the target incident")
        moved_to = service.move_problem(
            db_session=db_session,
            incident=incident,
            problem_id=alert_id,
            target_incident_id=target,
            by=caller.user.id,
        )
        db_session.commit()
        return f"The problem is moved to incident #{moved_to.id}."

    return _act(request, incident_id, action)


def _incident_number(value: str, what: str) -> int:
    text = value.strip().lstrip("#")
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"Choose {what} by its number, such as 12.")
    return int(text)


@router.post("/incidents/{incident_id}/acknowledge")
def acknowledge_submit(
    request: Request, caller: CorrelatedResponder, db_session: DbSession, incident_id: IncidentId
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        done = workflow.acknowledge(db_session=db_session, incident=incident, user=caller.user)
        db_session.commit()
        if done.first:
            return "Acknowledged: the team sees that you are on it."
        first = done.by.email if done.by else "someone"
        return f"{first} had acknowledged it already; nothing changed."

    return _act(request, incident_id, action)


@router.post("/incidents/{incident_id}/assign")
def assign_submit(
    request: Request,
    caller: CorrelatedResponder,
    db_session: DbSession,
    incident_id: IncidentId,
    user_id: Annotated[str, Form()] = "",
) -> Response:
    incident = _incident(db_session, caller, incident_id)
    chosen = caller.user.id if user_id == ME else (user_id.strip() or None)

    def action() -> str:
        workflow.assign(db_session=db_session, incident=incident, assignee_id=chosen, by=caller.user)
        db_session.commit()
        if chosen is None:
            return "The incident is assigned to nobody."
        if chosen == caller.user.id:
            return "The incident is assigned to you."
        return "The incident is assigned."

    return _act(request, incident_id, action)


@router.post("/incidents/{incident_id}/notes")
def note_submit(
    request: Request,
    caller: CorrelatedResponder,
    db_session: DbSession,
    incident_id: IncidentId,
    text: Annotated[str, Form()] = "",
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        workflow.add_note(db_session=db_session, incident=incident, author=caller.user, text=text)
        db_session.commit()
        return "Your note is added."

    return _act(request, incident_id, action, "#notes")


@router.post("/incidents/{incident_id}/notes/{note_id}")
def note_edit_submit(
    request: Request,
    caller: CorrelatedResponder,
    db_session: DbSession,
    incident_id: IncidentId,
    note_id: RowId,
    text: Annotated[str, Form()] = "",
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        workflow.edit_note(
            db_session=db_session, incident=incident, note_id=note_id, author=caller.user, text=text
        )
        db_session.commit()
        return "Your note is updated; the earlier text stays in its history."

    return _act(request, incident_id, action, "#notes")


@router.post("/incidents/{incident_id}/close-problems")
def close_problems_submit(
    request: Request, caller: CorrelatedResponder, db_session: DbSession, incident_id: IncidentId
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        writeback_service.request_close(
            db_session=db_session, incident=incident, by=caller.user, message=None
        )
        db_session.commit()
        return "Closing its problems in Dynatrace: the timeline shows when it is done."

    return _act(request, incident_id, action, "#timeline")


@router.post("/incidents/{incident_id}/rca/feedback")
def feedback_submit(
    request: Request,
    caller: CorrelatedResponder,
    db_session: DbSession,
    incident_id: IncidentId,
    mark: Annotated[str, Form()] = "",
    cause_entity: Annotated[str, Form()] = "",
) -> Response:
    incident = _incident(db_session, caller, incident_id)

    def action() -> str:
        try:
            chosen = Feedback(mark.strip())
        except ValueError:
            raise InvalidInput("Choose right, partly right or wrong.") from None
        rca_service.give_feedback(
            db_session=db_session,
            incident=incident,
            by=caller.user,
            mark=chosen,
            cause=cause_entity.strip() or None,
        )
        db_session.commit()
        return "Your mark is saved: it counts towards the RCA precision on Insights."

    return _act(request, incident_id, action, "#rca")
