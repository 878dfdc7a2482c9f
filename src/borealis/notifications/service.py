"""Destinations and the dispatch of a workspace's incident events to them. Callers own the transaction.

Events come from the incidents' timelines: a dispatch job per workspace, on a schedule, reads the lines
written since its cursor, maps them to events, and records one delivery per matching destination, each
sent by a durable job of its own. Nothing on the webhook's path waits for any of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis import crypto
from borealis.audit import service as audit
from borealis.audit.models import Actor
from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import utcnow
from borealis.dynatrace.errors import DynatraceError
from borealis.dynatrace.urls import is_public_address, resolve_host
from borealis.errors import InvalidInput, NotFound
from borealis.incidents.index import facts_from
from borealis.incidents.models import Incident, IncidentEvent, IncidentProblem
from borealis.jobstore import enqueue
from borealis.jobstore.schedules import ensure_schedule, remove_schedule
from borealis.notifications.models import EVENTS, KINDS, Destination, DispatchCursor, NotificationDelivery
from borealis.problems.models import Problem
from borealis.rca import service as rca_service
from borealis.schemas import storable

DISPATCH_JOB = "notify.dispatch"
DELIVER_JOB = "notify.deliver"
DISPATCH_SECONDS = 5
MAX_ATTEMPTS = 8
# At most one incident.updated per incident per destination in this long.
UPDATE_EVERY = timedelta(minutes=1)
SECRET_PREFIX = "whsec_"
FILTERS = ("severities", "priorities", "managementZones", "tags")
# Timeline kinds -> the event they are.
_EVENT_OF = {
    "opened": "incident.opened",
    "problem_joined": "incident.updated",
    "problem_moved_in": "incident.updated",
    "problem_moved_out": "incident.updated",
    "merged": "incident.updated",
    "rca_done": "rca.completed",
    "acknowledged": "incident.acknowledged",
    "assigned": "incident.assigned",
    "unassigned": "incident.assigned",
    "resolved": "incident.resolved",
    "reopened": "incident.reopened",
}


def check_url(url: str, *, settings: Settings) -> str:
    """A destination URL Borealis may call: https (http only to a private host, when those are allowed),
    and a public address unless ``BOREALIS_ALLOW_PRIVATE_DESTINATIONS`` is set."""
    url = storable(url.strip(), field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("url must be an https:// address", details={"field": "url"})
    try:
        addresses = resolve_host(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except DynatraceError:
        raise InvalidInput(
            f"url: the host {parts.hostname} cannot be resolved", details={"field": "url"}
        ) from None
    private = [address for address in addresses if not is_public_address(address)]
    if private and not settings.allow_private_destinations:
        raise InvalidInput(
            f"url: the host {parts.hostname} resolves to a non-public address ({private[0]}); Borealis refuses "
            "those unless the operator sets BOREALIS_ALLOW_PRIVATE_DESTINATIONS=true",
            details={"field": "url"},
        )
    if parts.scheme == "http" and not private:
        raise InvalidInput(
            f"url must use https:// for the public host {parts.hostname}", details={"field": "url"}
        )
    return url


def _clean_filters(filters: dict[str, Any]) -> dict[str, list[str]]:
    cleaned: dict[str, list[str]] = {}
    for name, values in filters.items():
        if name not in FILTERS:
            raise InvalidInput(
                f"filters: {name!r} is not one of {', '.join(FILTERS)}", details={"field": "filters"}
            )
        if not isinstance(values, list) or not all(isinstance(value, str) for value in values):
            raise InvalidInput(f"filters.{name} must be a list of strings", details={"field": "filters"})
        cleaned[name] = [storable(value, field="filters") for value in values]
    return cleaned


def create(
    *,
    db_session: Session,
    workspace_id: str,
    kind: str,
    name: str,
    url: str,
    events: list[str],
    filters: dict[str, Any],
    settings: Settings,
    secret_box: SecretBox,
    actor: Actor,
) -> tuple[Destination, str | None]:
    """A new destination; returns it and, for a generic webhook, its signing secret (shown once)."""
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", details={"field": "kind"})
    unknown = [event for event in events if event not in EVENTS]
    if unknown or not events:
        raise InvalidInput(f"events: choose from {', '.join(EVENTS)}", details={"field": "events"})
    url = check_url(url, settings=settings)
    secret = crypto.new_secret(SECRET_PREFIX) if kind == "webhook" else None
    parts = urlsplit(url)
    destination = Destination(
        workspace_id=workspace_id,
        kind=kind,
        name=storable(name.strip(), field="name") or kind,
        url_ciphertext=secret_box.encrypt(url),
        url_hint=f"{parts.scheme}://{parts.netloc}/…",
        secret_ciphertext=secret_box.encrypt(secret) if secret else None,
        events=list(dict.fromkeys(events)),
        filters=_clean_filters(filters),
    )
    db_session.add(destination)
    db_session.flush()
    _start_dispatch(db_session, workspace_id)
    audit.record(
        db_session=db_session,
        workspace_id=workspace_id,
        actor=actor,
        action="destination.created",
        target=destination.name,
        details={"kind": kind, "host": parts.hostname, "events": destination.events},
    )
    return destination, secret


def _start_dispatch(db_session: Session, workspace_id: str) -> None:
    """The workspace's dispatch from now on: its cursor starts at the newest line, so history is not sent."""
    if db_session.get(DispatchCursor, workspace_id) is None:
        newest = db_session.scalar(
            sa.select(sa.func.max(IncidentEvent.id))
            .join(Incident, Incident.id == IncidentEvent.incident_id)
            .where(Incident.workspace_id == workspace_id)
        )
        db_session.add(DispatchCursor(workspace_id=workspace_id, last_event_id=newest or 0))
    ensure_schedule(
        db_session=db_session,
        kind=DISPATCH_JOB,
        key=f"workspace:{workspace_id}",
        workspace_id=workspace_id,
        interval_seconds=DISPATCH_SECONDS,
        payload={"workspaceId": workspace_id},
    )


def listed(*, db_session: Session, workspace_id: str) -> list[Destination]:
    return list(
        db_session.scalars(
            sa.select(Destination)
            .where(Destination.workspace_id == workspace_id)
            .order_by(Destination.created_at)
        )
    )


def get(*, db_session: Session, workspace_id: str, destination_id: str) -> Destination:
    destination = db_session.get(Destination, destination_id)
    if destination is None or destination.workspace_id != workspace_id:
        raise NotFound(f"destination {destination_id} does not exist; GET /destinations lists them")
    return destination


def delete(*, db_session: Session, destination: Destination, actor: Actor) -> None:
    audit.record(
        db_session=db_session,
        workspace_id=destination.workspace_id,
        actor=actor,
        action="destination.deleted",
        target=destination.name,
    )
    workspace_id = destination.workspace_id
    db_session.delete(destination)
    db_session.flush()
    if not listed(db_session=db_session, workspace_id=workspace_id):
        remove_schedule(db_session=db_session, kind=DISPATCH_JOB, key=f"workspace:{workspace_id}")


def deliveries(
    *, db_session: Session, destination: Destination, limit: int = 50
) -> list[NotificationDelivery]:
    """The destination's delivery log, newest first."""
    return list(
        db_session.scalars(
            sa.select(NotificationDelivery)
            .where(NotificationDelivery.destination_id == destination.id)
            .order_by(NotificationDelivery.id.desc())
            .limit(limit)
        )
    )


# -- what an event says -----------------------------------------------------------------------------


def event_body(
    *, db_session: Session, incident: Incident, event: str, detail: str | None, settings: Settings
) -> dict[str, Any]:
    """The generic JSON of an event, which the Slack and Teams formats are made from."""
    base = (settings.public_base_url or "http://127.0.0.1:8000").rstrip("/")
    body: dict[str, Any] = {
        "event": event,
        "occurredAt": utcnow().isoformat(),
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "status": incident.status,
            "priority": incident.priority,
            "problemCount": incident.problem_count,
            "openProblemCount": incident.open_problem_count,
            "startedAt": incident.started_at.isoformat(),
        },
        "link": f"{base}/incidents/{incident.id}",
        "detail": detail,
    }
    run = rca_service.latest_done(db_session=db_session, incident_id=incident.id)
    if run is not None and run.report:
        cause = (run.report.get("rootCause") or {}).get("entity") or {}
        body["rca"] = {"verdict": run.verdict, "rootCause": cause.get("name") or cause.get("id")}
    return body


def _incident_facts(db_session: Session, incident: Incident) -> dict[str, set[str]]:
    problems = db_session.scalars(
        sa.select(Problem)
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id)
    ).all()
    facts = {"severities": set(), "priorities": {incident.priority}, "managementZones": set(), "tags": set()}
    for problem in problems:
        found = facts_from(problem)
        if problem.severity:
            facts["severities"].add(problem.severity)
        facts["priorities"].add(problem.priority)
        facts["managementZones"] |= found.management_zones
        facts["tags"] |= found.tags
    return facts


def passes(filters: dict[str, list[str]], facts: dict[str, set[str]]) -> bool:
    """Each filter given must share a value with the incident (case-insensitive)."""
    for name, wanted in filters.items():
        if wanted and not {value.lower() for value in wanted} & {
            value.lower() for value in facts.get(name, set())
        }:
            return False
    return True


# -- dispatching -------------------------------------------------------------------------------------


def dispatch(*, db_session: Session, workspace_id: str, settings: Settings, limit: int = 500) -> int:
    """Turn the timeline lines since the cursor into deliveries; returns how many were recorded."""
    cursor = db_session.get(DispatchCursor, workspace_id, with_for_update=True)
    if cursor is None:
        return 0
    rows = db_session.execute(
        sa.select(IncidentEvent, Incident)
        .join(Incident, Incident.id == IncidentEvent.incident_id)
        .where(Incident.workspace_id == workspace_id, IncidentEvent.id > cursor.last_event_id)
        .order_by(IncidentEvent.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    destinations = [item for item in listed(db_session=db_session, workspace_id=workspace_id) if item.enabled]
    recorded = 0
    facts: dict[int, dict[str, set[str]]] = {}
    for line, incident in rows:
        event = _EVENT_OF.get(line.kind)
        if event is None:
            continue
        for destination in destinations:
            if event not in destination.events:
                continue
            if incident.id not in facts:
                facts[incident.id] = _incident_facts(db_session, incident)
            if not passes(destination.filters or {}, facts[incident.id]):
                continue
            body = event_body(
                db_session=db_session, incident=incident, event=event, detail=line.message, settings=settings
            )
            recorded += _record(db_session, destination, incident, event, body)
    cursor.last_event_id = rows[-1][0].id
    db_session.flush()
    return recorded


def _record(
    db_session: Session, destination: Destination, incident: Incident, event: str, body: dict[str, Any]
) -> int:
    """One delivery and its job; a flood of updates to one incident folds into one a minute."""
    run_after = None
    if event == "incident.updated":
        previous = db_session.scalar(
            sa.select(NotificationDelivery)
            .where(
                NotificationDelivery.destination_id == destination.id,
                NotificationDelivery.incident_id == incident.id,
                NotificationDelivery.event == event,
            )
            .order_by(NotificationDelivery.id.desc())
            .limit(1)
        )
        if previous is not None and previous.status == "pending" and previous.attempts == 0:
            previous.payload = body  # still waiting: it says the newest
            return 0
        if previous is not None and previous.created_at > utcnow() - UPDATE_EVERY:
            run_after = previous.created_at + UPDATE_EVERY
    delivery = NotificationDelivery(
        destination_id=destination.id, event=event, incident_id=incident.id, payload=body
    )
    db_session.add(delivery)
    db_session.flush()
    enqueue(
        db_session=db_session,
        kind=DELIVER_JOB,
        workspace_id=destination.workspace_id,
        key=f"delivery:{delivery.id}",
        payload={"deliveryId": delivery.id},
        run_after=run_after,
        max_attempts=MAX_ATTEMPTS,
    )
    return 1


def destination_url(destination: Destination, secret_box: SecretBox) -> str:
    return secret_box.decrypt(destination.url_ciphertext)


def destination_secret(destination: Destination, secret_box: SecretBox) -> str | None:
    return secret_box.decrypt(destination.secret_ciphertext) if destination.secret_ciphertext else None
