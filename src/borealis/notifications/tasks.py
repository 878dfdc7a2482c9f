"""The notification jobs: dispatching a workspace's new timeline lines, and sending one delivery."""

from __future__ import annotations

from typing import Any

from borealis.jobstore import JobContext, PermanentFailure, Retry
from borealis.notifications import service
from borealis.notifications.models import Destination, NotificationDelivery
from borealis.notifications.sending import send


def dispatch(ctx: JobContext) -> dict[str, Any] | None:
    workspace_id = str(ctx.payload.get("workspaceId") or ctx.workspace_id or "")
    with ctx.session() as db_session:
        recorded = service.dispatch(db_session=db_session, workspace_id=workspace_id, settings=ctx.settings)
        result = {"workspaceId": workspace_id, "recorded": recorded}
        ctx.complete(db_session, result)
        db_session.commit()
    return result


def deliver(ctx: JobContext) -> dict[str, Any] | None:
    """Send one delivery; a failure that may pass is retried with back-off (or after the receiver's
    Retry-After), up to the job's attempts. Every attempt is in the delivery log."""
    try:
        delivery_id = int(ctx.payload["deliveryId"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("the job names no delivery (payload deliveryId)") from None
    with ctx.session(write=False) as db_session:
        delivery = db_session.get(NotificationDelivery, delivery_id)
        destination = db_session.get(Destination, delivery.destination_id) if delivery is not None else None
        if delivery is None or destination is None or not destination.enabled or delivery.status != "pending":
            return {
                "deliveryId": delivery_id,
                "skipped": "the delivery or its destination is gone, off or done",
            }
        db_session.expunge(destination)
        event = dict(delivery.payload)
    sent = send(destination, event, settings=ctx.settings, secret_box=ctx.secret_box)
    final = sent.delivered or not sent.worth_retrying or ctx.is_last_attempt
    with ctx.session() as db_session:
        delivery = db_session.get(NotificationDelivery, delivery_id)
        if delivery is None:
            return {"deliveryId": delivery_id, "skipped": "the delivery is gone"}
        delivery.attempts += 1
        delivery.status_code = sent.status_code
        delivery.last_error = sent.error
        if final:
            delivery.status = "delivered" if sent.delivered else "failed"
            result = {"deliveryId": delivery_id, "status": delivery.status, "attempts": delivery.attempts}
            ctx.complete(db_session, result)
        db_session.commit()
    if not final:
        raise Retry(sent.error or "not delivered", delay=sent.retry_after)
    return result
