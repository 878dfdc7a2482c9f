"""The /incidents endpoints: list, detail, manual actions, correlation settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from borealis import markup
from borealis.api.deps import (
    AppSettings,
    Caller,
    CorrelatedCaller,
    CorrelatedResponder,
    CurrentCaller,
    DbSession,
    Owner,
    Responder,
)
from borealis.api.schemas import IncidentDetail
from borealis.errors import InvalidInput, NotFound
from borealis.incidents import service, workflow
from borealis.incidents.models import Incident
from borealis.incidents.schemas import (
    AcknowledgementRead,
    AssignRequest,
    CorrelationSettingsRead,
    CorrelationSettingsUpdate,
    IncidentList,
    IncidentProblemRead,
    IncidentSummary,
    MergeRequest,
    MoveRequest,
    NoteList,
    NoteRead,
    NoteRevisionRead,
    NoteWrite,
    Person,
    TimelineEvent,
)
from borealis.postmortem import service as postmortem_service
from borealis.postmortem.render import to_markdown
from borealis.postmortem.schemas import Postmortem
from borealis.rca import service as rca_service
from borealis.schemas import API_ERRORS, Offset, RowId, error_responses
from borealis.writeback import service as writeback_service
from borealis.writeback.schemas import CloseRequest, CloseRequested

router = APIRouter(prefix="/incidents", tags=["incidents"], responses=API_ERRORS)


def _incident(db_session: DbSession, caller: Caller, incident_id: int) -> Incident:
    """The workspace's incident; another workspace's is as unknown as a missing one."""
    incident = service.get(db_session=db_session, workspace_id=caller.workspace_id, incident_id=incident_id)
    if incident is None:
        raise NotFound(f"incident {incident_id} does not exist; list incidents with GET /incidents")
    return incident


def incident_from_path(incident_id: RowId, caller: CorrelatedCaller, db_session: DbSession) -> Incident:
    """The incident named in the path, for any member to read."""
    return _incident(db_session, caller, incident_id)


def incident_to_change(incident_id: RowId, caller: CorrelatedResponder, db_session: DbSession) -> Incident:
    """The incident named in the path, for a responder or owner to act on."""
    return _incident(db_session, caller, incident_id)


IncidentFromPath = Annotated[Incident, Depends(incident_from_path)]
IncidentToChange = Annotated[Incident, Depends(incident_to_change)]
# Routes that take IncidentFromPath.
INCIDENT_ERRORS = error_responses(404)
# Routes that change an incident: a merged one refuses (409); with a body, 400 when it cannot be read.
CHANGE_ERRORS = error_responses(404, 409)
CHANGE_WITH_BODY_ERRORS = error_responses(400, 404, 409)


def _utc(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"{name} is outside the range of times this API can compare; use a time after year 1",
            details={"field": name},
        ) from None


# Declared before /{incident_id} so the path is not read as an id.
@router.get("/correlation-settings", response_model=CorrelationSettingsRead)
def get_correlation_settings(caller: CurrentCaller, db_session: DbSession) -> CorrelationSettingsRead:
    """How related problems are grouped in this workspace: window, threshold, topology depth, signals."""
    return CorrelationSettingsRead.of(
        service.get_settings(db_session=db_session, workspace_id=caller.workspace_id)
    )


@router.put("/correlation-settings", response_model=CorrelationSettingsRead, responses=error_responses(400))
def put_correlation_settings(
    update: CorrelationSettingsUpdate, caller: Owner, db_session: DbSession
) -> CorrelationSettingsRead:
    """Change any of the settings; they apply to problems arriving from now on."""
    current = service.get_settings(db_session=db_session, workspace_id=caller.workspace_id)
    changes = update.model_dump(exclude_none=True, exclude={"signals"})
    if update.signals is not None:
        changes.update(update.signals.model_dump(exclude_none=True))
    stored = service.put_settings(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=replace(current, **changes),
        actor=caller.actor,
    )
    db_session.commit()
    return CorrelationSettingsRead.of(stored)


@router.get("", response_model=IncidentList)
def list_incidents(
    caller: CorrelatedCaller,
    db_session: DbSession,
    status: Literal["open", "resolved"] | None = None,
    priority: Literal["critical", "high", "medium", "low", "info"] | None = None,
    since: Annotated[datetime | None, Query(description="started at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="started at or before (ISO 8601)")] = None,
    q: Annotated[str | None, Query(max_length=200, description="text in title, ids or entity names")] = None,
    assignee: Annotated[
        str | None, Query(max_length=36, description="'me', a member's user id, or 'none' for unassigned")
    ] = None,
    acknowledged: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> IncidentList:
    """The workspace's incidents, newest start first."""
    filters = service.IncidentFilter(
        status=status,
        priority=priority,
        since=_utc("since", since),
        until=_utc("until", until),
        q=(q or "").strip() or None,
        assignee=caller.user.id if assignee == "me" else assignee,
        acknowledged=acknowledged,
    )
    items, total = service.list_incidents(
        db_session=db_session, workspace_id=caller.workspace_id, filters=filters, limit=limit, offset=offset
    )
    return IncidentList(
        incidents=summaries(db_session, items),
        total=total,
        limit=limit,
        offset=offset,
    )


def _person(names: dict[str, str], user_id: str | None) -> Person | None:
    return Person(user_id=user_id, username=names[user_id]) if user_id and user_id in names else None


def summaries(db_session: DbSession, incidents: list[Incident]) -> list[IncidentSummary]:
    """The incidents as the API shows them, with the members of their workflow named."""
    names = workflow.usernames(
        db_session=db_session,
        user_ids={user_id for item in incidents for user_id in (item.acknowledged_by_id, item.assignee_id)},
    )
    return [
        IncidentSummary.model_validate(item).model_copy(
            update={
                "acknowledged_by": _person(names, item.acknowledged_by_id),
                "assignee": _person(names, item.assignee_id),
            }
        )
        for item in incidents
    ]


def _detail(db_session: DbSession, incident: Incident) -> IncidentDetail:
    problems = [
        IncidentProblemRead(
            alert_id=problem.id,
            display_id=problem.display_id,
            pid=problem.pid,
            title=problem.title,
            state=problem.state,
            severity=problem.severity,
            priority=problem.priority,
            problem_url=problem.problem_url,
            root_cause_entity_id=problem.root_cause_entity_id,
            start_time=problem.start_time,
            end_time=problem.end_time,
            strategy=attachment.strategy,
            score=attachment.score,
            reason=attachment.reason,
            related_alert_id=attachment.related_problem_id,
            attached_at=attachment.attached_at,
        )
        for attachment, problem in service.members(db_session=db_session, incident=incident)
    ]
    events = service.timeline(db_session=db_session, incident=incident)
    names = workflow.usernames(db_session=db_session, user_ids={event.user_id for event in events})
    timeline = [
        TimelineEvent(
            id=event.id,
            at=event.at,
            kind=event.kind,
            actor=event.actor,
            by=_person(names, event.user_id),
            alert_id=event.problem_id,
            message=event.message,
            details=event.details or {},
        )
        for event in events
    ]
    [summary] = summaries(db_session, [incident])
    rca = rca_service.summary_for(db_session=db_session, incident=incident)
    return IncidentDetail(**summary.model_dump(), problems=problems, timeline=timeline, rca=rca)


@router.get("/{incident_id}", response_model=IncidentDetail, responses=INCIDENT_ERRORS)
def get_incident(incident: IncidentFromPath, db_session: DbSession) -> IncidentDetail:
    """One incident with its problems (and why each is there) and its timeline."""
    return _detail(db_session, incident)


@router.post("/{incident_id}/resolve", response_model=IncidentDetail, responses=CHANGE_ERRORS)
def resolve_incident(incident: IncidentToChange, caller: Responder, db_session: DbSession) -> IncidentDetail:
    """Resolve by hand; it takes no new problems until reopened."""
    service.resolve(db_session=db_session, incident=incident, by=caller.user.id)
    db_session.commit()
    return _detail(db_session, incident)


@router.post("/{incident_id}/reopen", response_model=IncidentDetail, responses=CHANGE_ERRORS)
def reopen_incident(incident: IncidentToChange, caller: Responder, db_session: DbSession) -> IncidentDetail:
    """Reopen by hand; related new problems join it again."""
    service.reopen(db_session=db_session, incident=incident, by=caller.user.id)
    db_session.commit()
    return _detail(db_session, incident)


@router.post("/{incident_id}/merge", response_model=IncidentDetail, responses=CHANGE_WITH_BODY_ERRORS)
def merge_incident(
    body: MergeRequest, incident: IncidentToChange, caller: Responder, db_session: DbSession
) -> IncidentDetail:
    """Fold incident ``sourceIncidentId`` into this one; the source then points here."""
    service.merge(
        db_session=db_session, target=incident, source_incident_id=body.source_incident_id, by=caller.user.id
    )
    db_session.commit()
    return _detail(db_session, incident)


@router.post(
    "/{incident_id}/problems/{alert_id}/move",
    response_model=IncidentDetail,
    responses=CHANGE_WITH_BODY_ERRORS,
)
def move_problem(
    body: MoveRequest,
    incident: IncidentToChange,
    caller: Responder,
    db_session: DbSession,
    alert_id: RowId,
) -> IncidentDetail:
    """Move one problem to incident ``targetIncidentId``, or to a new incident when it is null; answers
    with the incident the problem now belongs to."""
    target = service.move_problem(
        db_session=db_session,
        incident=incident,
        problem_id=alert_id,
        target_incident_id=body.target_incident_id,
        by=caller.user.id,
    )
    db_session.commit()
    return _detail(db_session, target)


@router.post("/{incident_id}/acknowledge", response_model=AcknowledgementRead, responses=error_responses(404))
def acknowledge_incident(
    incident: IncidentToChange, caller: Responder, db_session: DbSession
) -> AcknowledgementRead:
    """Say "I'm on it": records who and when. Idempotent: a second acknowledgement changes nothing
    and answers with the first (``first: false``)."""
    done = workflow.acknowledge(db_session=db_session, incident=incident, user=caller.user)
    db_session.commit()
    return AcknowledgementRead(
        incident_id=incident.id,
        acknowledged_at=done.at,
        acknowledged_by=Person(user_id=done.by.id, username=done.by.email) if done.by else None,
        first=done.first,
    )


@router.post("/{incident_id}/assign", response_model=IncidentDetail, responses=CHANGE_WITH_BODY_ERRORS)
def assign_incident(
    body: AssignRequest, incident: IncidentToChange, caller: Responder, db_session: DbSession
) -> IncidentDetail:
    """Hand the incident to a member of the workspace (``userId``), or to nobody (``null``). Anyone
    else is refused (422)."""
    workflow.assign(db_session=db_session, incident=incident, assignee_id=body.user_id, by=caller.user)
    db_session.commit()
    return _detail(db_session, incident)


def _note(item: workflow.NoteWithHistory) -> NoteRead:
    note = item.note
    return NoteRead(
        id=note.id,
        incident_id=note.incident_id,
        author=Person(user_id=item.author.id, username=item.author.email) if item.author else None,
        text=note.text,
        html=str(markup.to_html(note.text)),
        created_at=note.created_at,
        updated_at=note.updated_at,
        history=[
            NoteRevisionRead(
                text=revision.text, written_at=revision.written_at, replaced_at=revision.replaced_at
            )
            for revision in item.revisions
        ],
    )


def _one_note(db_session: DbSession, incident: Incident, note_id: int) -> NoteRead:
    [item] = [
        item for item in workflow.notes(db_session=db_session, incident=incident) if item.note.id == note_id
    ]
    return _note(item)


@router.get("/{incident_id}/notes", response_model=NoteList, responses=INCIDENT_ERRORS)
def list_notes(incident: IncidentFromPath, db_session: DbSession) -> NoteList:
    """The incident's notes, oldest first, with their Markdown rendered and earlier texts of edited ones."""
    return NoteList(notes=[_note(item) for item in workflow.notes(db_session=db_session, incident=incident)])


@router.post(
    "/{incident_id}/notes",
    response_model=NoteRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 404),
)
def add_note(
    body: NoteWrite, incident: IncidentToChange, caller: Responder, db_session: DbSession
) -> NoteRead:
    """Leave a note (Markdown, up to 10,000 characters) for the team and the next shift."""
    note = workflow.add_note(db_session=db_session, incident=incident, author=caller.user, text=body.text)
    db_session.commit()
    return _one_note(db_session, incident, note.id)


@router.patch("/{incident_id}/notes/{note_id}", response_model=NoteRead, responses=error_responses(400, 404))
def edit_note(
    note_id: RowId, body: NoteWrite, incident: IncidentToChange, caller: Responder, db_session: DbSession
) -> NoteRead:
    """Change your note's text (only its author may, 403 otherwise); the text it replaces stays in its
    history."""
    workflow.edit_note(
        db_session=db_session, incident=incident, note_id=note_id, author=caller.user, text=body.text
    )
    db_session.commit()
    return _one_note(db_session, incident, note_id)


@router.post(
    "/{incident_id}/close-problems",
    response_model=CloseRequested,
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(400, 404, 409),
)
def close_problems(
    incident: IncidentToChange, caller: Responder, db_session: DbSession, body: CloseRequest | None = None
) -> CloseRequested:
    """Close the incident's open problems in Dynatrace, with a closing comment (responders). Borealis
    never does this on its own. It runs as durable work: the outcome, or a failure with its reason,
    appears on the incident's timeline. 409 when the connection cannot (not connected, or the token
    lacks problems.write)."""
    job = writeback_service.request_close(
        db_session=db_session, incident=incident, by=caller.user, message=body.message if body else None
    )
    db_session.commit()
    return CloseRequested(incident_id=incident.id, job_id=job.id)


@router.get(
    "/{incident_id}/postmortem",
    response_model=Postmortem,
    responses={
        **INCIDENT_ERRORS,
        200: {"content": {"text/markdown": {"schema": {"type": "string"}}}, "description": "The postmortem."},
    },
)
def get_postmortem(
    request: Request,
    incident: IncidentFromPath,
    db_session: DbSession,
    settings: AppSettings,
    format: Literal["json", "md"] | None = None,
) -> Response | Postmortem:
    """The incident's postmortem: the summary; the timeline (problems, acknowledgement, assignment,
    notes, RCA, resolution); the impact; the root cause with its evidence and links; time to
    acknowledge, time to resolve and duration; and an empty list of action items. JSON, or Markdown with
    ``?format=md`` or ``Accept: text/markdown``."""
    postmortem = postmortem_service.assemble(db_session=db_session, incident=incident)
    markdown = format == "md" or (format is None and "text/markdown" in request.headers.get("accept", ""))
    if not markdown:
        return postmortem
    base = (settings.public_base_url or str(request.base_url)).rstrip("/")
    text = to_markdown(postmortem, base_url=base)
    filename = f"incident-{incident.id}-postmortem.md"
    return Response(
        text,
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'inline; filename="{filename}"'},
    )
