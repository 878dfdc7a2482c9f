"""``/destinations``: where a workspace's incident events go, the delivery log, and a test send."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from borealis.api.deps import AppSettings, CurrentCaller, DbSession, Owner, Secrets
from borealis.db import utcnow
from borealis.notifications import service
from borealis.notifications.models import NotificationDelivery
from borealis.notifications.schemas import (
    DeliveryList,
    DeliveryRead,
    DestinationCreate,
    DestinationCreated,
    DestinationList,
    DestinationRead,
)
from borealis.notifications.sending import send
from borealis.schemas import API_ERRORS, UuidId, error_responses

router = APIRouter(prefix="/destinations", tags=["notifications"], responses=API_ERRORS)


@router.get("", response_model=DestinationList)
def list_destinations(caller: CurrentCaller, db_session: DbSession) -> DestinationList:
    """The workspace's destinations (URLs shown by their host only)."""
    items = service.listed(db_session=db_session, workspace_id=caller.workspace_id)
    return DestinationList(items=[DestinationRead.model_validate(item) for item in items])


@router.post(
    "", response_model=DestinationCreated, status_code=status.HTTP_201_CREATED, responses=error_responses(400)
)
def create_destination(
    body: DestinationCreate, caller: Owner, db_session: DbSession, settings: AppSettings, secret_box: Secrets
) -> DestinationCreated:
    """A Slack incoming webhook (Block Kit), a Microsoft Teams webhook or workflow (Adaptive Card), or a
    generic HTTPS webhook signed with ``X-Borealis-Signature`` (owners). The URL must reach a public
    address (``BOREALIS_ALLOW_PRIVATE_DESTINATIONS`` opts in to private ones). A webhook's signing
    secret is in this answer only."""
    destination, secret = service.create(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        kind=body.kind,
        name=body.name,
        url=body.url,
        events=body.events,
        filters=body.filters,
        settings=settings,
        secret_box=secret_box,
        actor=caller.actor,
    )
    db_session.commit()
    return DestinationCreated.model_validate(destination).model_copy(update={"secret": secret})


@router.delete("/{destination_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
def delete_destination(destination_id: UuidId, caller: Owner, db_session: DbSession) -> Response:
    """Remove a destination and its delivery log (owners)."""
    destination = service.get(
        db_session=db_session, workspace_id=caller.workspace_id, destination_id=destination_id
    )
    service.delete(db_session=db_session, destination=destination, actor=caller.actor)
    db_session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{destination_id}/deliveries", response_model=DeliveryList, responses=error_responses(404))
def list_deliveries(destination_id: UuidId, caller: Owner, db_session: DbSession) -> DeliveryList:
    """The delivery log, newest first: time, event, status, the receiver's status code, attempts and the
    last error (owners)."""
    destination = service.get(
        db_session=db_session, workspace_id=caller.workspace_id, destination_id=destination_id
    )
    items = service.deliveries(db_session=db_session, destination=destination)
    return DeliveryList(items=[DeliveryRead.model_validate(item) for item in items])


@router.post("/{destination_id}/test", response_model=DeliveryRead, responses=error_responses(404))
def send_test(
    destination_id: UuidId, caller: Owner, db_session: DbSession, settings: AppSettings, secret_box: Secrets
) -> DeliveryRead:
    """Send a test event now and answer with its entry in the delivery log (owners)."""
    destination = service.get(
        db_session=db_session, workspace_id=caller.workspace_id, destination_id=destination_id
    )
    event = {
        "event": "test",
        "occurredAt": utcnow().isoformat(),
        "incident": {
            "id": 0,
            "title": f"a test from {caller.workspace.name}",
            "status": "open",
            "priority": "info",
        },
        "link": None,
        "detail": f"sent by {caller.user.email}",
    }
    db_session.expunge(destination)
    db_session.close()  # no transaction held while the receiver answers
    sent = send(destination, event, settings=settings, secret_box=secret_box)
    delivery = NotificationDelivery(
        destination_id=destination.id,
        event="test",
        status="delivered" if sent.delivered else "failed",
        status_code=sent.status_code,
        attempts=1,
        last_error=sent.error,
        payload=event,
    )
    db_session.add(delivery)
    db_session.commit()
    return DeliveryRead.model_validate(delivery)
