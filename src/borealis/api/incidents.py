"""The /incidents endpoints: list, detail, manual actions, correlation settings."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from borealis.api.deps import Caller, CorrelatedCaller, CorrelatedResponder, CurrentCaller, DbSession, Owner
from borealis.api.schemas import IncidentDetail
from borealis.errors import InvalidInput, NotFound
from borealis.incidents import service
from borealis.incidents.models import Incident
from borealis.incidents.schemas import (
    CorrelationSettingsRead,
    CorrelationSettingsUpdate,
    IncidentList,
    IncidentProblemRead,
    IncidentSummary,
    MergeRequest,
    MoveRequest,
    TimelineEvent,
)
from borealis.rca import service as rca_service
from borealis.schemas import API_ERRORS, Offset, RowId, error_responses

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
    )
    items, total = service.list_incidents(
        db_session=db_session, workspace_id=caller.workspace_id, filters=filters, limit=limit, offset=offset
    )
    return IncidentList(
        incidents=[IncidentSummary.model_validate(item) for item in items],
        total=total,
        limit=limit,
        offset=offset,
    )


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
    timeline = [
        TimelineEvent(
            id=event.id,
            at=event.at,
            kind=event.kind,
            actor=event.actor,
            alert_id=event.problem_id,
            message=event.message,
            details=event.details or {},
        )
        for event in service.timeline(db_session=db_session, incident=incident)
    ]
    summary = IncidentSummary.model_validate(incident)
    rca = rca_service.summary_for(db_session=db_session, incident=incident)
    return IncidentDetail(**summary.model_dump(), problems=problems, timeline=timeline, rca=rca)


@router.get("/{incident_id}", response_model=IncidentDetail, responses=INCIDENT_ERRORS)
def get_incident(incident: IncidentFromPath, db_session: DbSession) -> IncidentDetail:
    """One incident with its problems (and why each is there) and its timeline."""
    return _detail(db_session, incident)


@router.post("/{incident_id}/resolve", response_model=IncidentDetail, responses=CHANGE_ERRORS)
def resolve_incident(incident: IncidentToChange, db_session: DbSession) -> IncidentDetail:
    """Resolve by hand; it takes no new problems until reopened."""
    service.resolve(db_session=db_session, incident=incident)
    db_session.commit()
    return _detail(db_session, incident)


@router.post("/{incident_id}/reopen", response_model=IncidentDetail, responses=CHANGE_ERRORS)
def reopen_incident(incident: IncidentToChange, db_session: DbSession) -> IncidentDetail:
    """Reopen by hand; related new problems join it again."""
    service.reopen(db_session=db_session, incident=incident)
    db_session.commit()
    return _detail(db_session, incident)


@router.post("/{incident_id}/merge", response_model=IncidentDetail, responses=CHANGE_WITH_BODY_ERRORS)
def merge_incident(body: MergeRequest, incident: IncidentToChange, db_session: DbSession) -> IncidentDetail:
    """Fold incident ``sourceIncidentId`` into this one; the source then points here."""
    service.merge(db_session=db_session, target=incident, source_incident_id=body.source_incident_id)
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
    )
    db_session.commit()
    return _detail(db_session, target)
