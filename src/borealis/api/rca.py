"""The RCA of an incident: ``GET /incidents/{id}/rca`` and ``POST /incidents/{id}/rca`` (run it now)."""

from __future__ import annotations

from fastapi import APIRouter, status

from borealis.api.deps import AppSettings, DbSession, Responder
from borealis.api.incidents import INCIDENT_ERRORS, IncidentFromPath, IncidentToChange
from borealis.errors import NotFound
from borealis.rca import service
from borealis.rca.models import RcaTrigger
from borealis.rca.schemas import FeedbackIn, RcaRead
from borealis.schemas import API_ERRORS, error_responses

router = APIRouter(prefix="/incidents", tags=["rca"], responses=API_ERRORS)


@router.get("/{incident_id}/rca", response_model=RcaRead, responses=INCIDENT_ERRORS)
def get_rca(incident: IncidentFromPath, db_session: DbSession) -> RcaRead:
    """The incident's latest RCA: status, report, Markdown, analyzer, times, and the earlier runs."""
    run = service.latest(db_session=db_session, incident_id=incident.id)
    if run is None:
        raise NotFound(
            f"incident {incident.id} has no RCA yet; start one with POST /incidents/{incident.id}/rca "
            "(automatic runs need rcaEnabled: PUT /dynatrace/rca-settings)"
        )
    return service.read(db_session=db_session, run=run)


@router.post(
    "/{incident_id}/rca",
    response_model=RcaRead,
    status_code=status.HTTP_202_ACCEPTED,
    responses=INCIDENT_ERRORS,
)
def run_rca(incident: IncidentToChange, db_session: DbSession, settings: AppSettings) -> RcaRead:
    """Queue an RCA now, whatever the RCA setting and the rate limit of automatic runs say."""
    run = service.request(
        db_session=db_session, incident=incident, trigger=RcaTrigger.ON_DEMAND, settings=settings
    )
    assert run is not None  # on-demand runs are never declined
    db_session.commit()
    return service.read(db_session=db_session, run=run)


@router.post("/{incident_id}/rca/feedback", response_model=RcaRead, responses=error_responses(400, 404, 409))
def rca_feedback(
    body: FeedbackIn, incident: IncidentToChange, caller: Responder, db_session: DbSession
) -> RcaRead:
    """Mark the incident's standing report right, partly right or wrong (responders), naming the true
    cause for the last two. The mark goes on the timeline, on the report, into the insights' RCA
    precision, and onto the Dynatrace comment when the RCA is written back."""
    run = service.give_feedback(
        db_session=db_session, incident=incident, by=caller.user, mark=body.mark, cause=body.cause_entity
    )
    db_session.commit()
    return service.read(db_session=db_session, run=run)
