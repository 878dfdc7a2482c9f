"""Enrichment of one problem: its details and entities from the API, stored with the problem and in the
entity cache, then correlation again with the topology now known.

The fetches run with no transaction held; one short transaction stores everything. What a missing scope
or an API error kept from us is recorded on the problem's enrichment (what and why), never fatal: a
transient error (429 after the client's own retries, timeout, 5xx) retries the job with back-off and,
on the last attempt, is recorded like the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.dynatrace import entities
from borealis.dynatrace.capped import api_client, retry_later
from borealis.dynatrace.client import PROBLEM_DETAIL_FIELDS, DynatraceClient
from borealis.dynatrace.errors import NeedsUserAction, ResourceNotFound, ScopeMissing, Transient
from borealis.dynatrace.models import Connection
from borealis.dynatrace.problem_notification import pid_key
from borealis.incidents import service as incidents_service
from borealis.incidents.models import Incident
from borealis.incidents.placement import recorrelate
from borealis.jobstore import JobContext, PermanentFailure
from borealis.problems.models import Problem
from borealis.rca import service as rca_service
from borealis.rca.models import RcaTrigger
from borealis.sync import reconcile, service
from borealis.sync.models import SyncCounts

logger = logging.getLogger("borealis.sync")

PROBLEMS_SCOPE = "problems.read"
ENTITIES_SCOPE = "entities.read"
ENTITY_FIELDS = ("fromRelationships", "toRelationships", "tags", "managementZones")
# Entities looked up per problem (root cause first, then impacted and affected ones).
MAX_ENTITIES = 20
# How far back to look for a problem by its display id when its start time is unknown.
LOOKUP_WINDOW = timedelta(days=7)


@dataclass(slots=True)
class Snapshot:
    """What the job needs of the problem, read before any call."""

    problem_id: int
    api_id: str
    pid_key: str
    display_id: str | None
    start_time: datetime | None
    entity_ids: list[str]
    connection: Connection


@dataclass(slots=True)
class Fetched:
    details: dict[str, Any] | None = None
    entities: list[dict[str, Any]] = field(default_factory=list)
    entity_ids: list[str] = field(default_factory=list)
    not_fetched: list[dict[str, Any]] = field(default_factory=list)
    # A failure that may pass (429, timeout, 5xx): worth another attempt.
    transient: Transient | None = None


def entity_ids_in(*groups: Iterable[Any]) -> list[str]:
    """Entity ids, in order and once each, from the API's ``{"entityId": {"id"}}`` items and our
    ``{"entityId": "..."}`` ones."""
    found: list[str] = []
    for group in groups:
        for item in group:
            value = item.get("entityId") if isinstance(item, dict) else item
            if isinstance(value, dict):
                value = value.get("id")
            if isinstance(value, str) and value and value not in found:
                found.append(value)
    return found


def run(ctx: JobContext) -> dict[str, Any] | None:
    """Enrich the job's problem; completes the job with its last write and returns None, or returns
    the result when there was nothing to do."""
    try:
        problem_id = int(ctx.payload["problemId"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("the job names no problem (payload problemId)") from None
    snapshot = _snapshot(ctx, problem_id)
    if snapshot is None:
        return {"problemId": problem_id, "skipped": "the problem no longer exists"}
    connection = snapshot.connection
    if not connection.connected:
        fetched = Fetched(
            not_fetched=[
                {
                    "what": "problem details and entities",
                    "reason": "Dynatrace is not connected; connect again with POST /dynatrace/connect",
                }
            ]
        )
    else:
        fetched = _fetch(ctx, snapshot)
    if fetched.transient is not None and not ctx.is_last_attempt:
        # Keep what did arrive, then try the rest again after the back-off (a 429's wait if it said).
        _store(ctx, snapshot, fetched, complete=False)
        raise retry_later(fetched.transient)
    return _store(ctx, snapshot, fetched, complete=True)


def _snapshot(ctx: JobContext, problem_id: int) -> Snapshot | None:
    with ctx.session(write=False) as db_session:
        problem = db_session.get(Problem, problem_id)
        if problem is None:
            return None
        connection = db_session.get(Connection, problem.connection_id)
        if connection is None:
            return None
        db_session.expunge(connection)
        root = [{"entityId": problem.root_cause_entity_id}] if problem.root_cause_entity_id else []
        return Snapshot(
            problem_id=problem.id,
            api_id=problem.api_problem_id or problem.pid,
            pid_key=problem.pid_key,
            display_id=problem.display_id,
            start_time=problem.start_time,
            entity_ids=entity_ids_in(root, problem.impacted_entities or []),
            connection=connection,
        )


def _fetch(ctx: JobContext, snapshot: Snapshot) -> Fetched:
    connection = snapshot.connection
    scopes = set(connection.token_scopes or [])
    fetched = Fetched()
    with api_client(connection=connection, settings=ctx.settings, secret_box=ctx.secret_box) as client:
        if PROBLEMS_SCOPE in scopes:
            _fetch_details(client, snapshot, fetched)
        else:
            fetched.not_fetched.append(_scope_missing("problem details", PROBLEMS_SCOPE))
        details = fetched.details or {}
        root = details.get("rootCauseEntity")
        fetched.entity_ids = entity_ids_in(
            [root] if isinstance(root, dict) else [],
            snapshot.entity_ids,
            details.get("impactedEntities") or [],
            details.get("affectedEntities") or [],
        )[:MAX_ENTITIES]
        with ctx.session(write=False) as db_session:
            cached = entities.cached_entities(
                db_session=db_session, connection_id=connection.id, entity_ids=fetched.entity_ids
            )
        wanted = [entity_id for entity_id in fetched.entity_ids if entity_id not in cached]
        if not wanted:
            return fetched
        if ENTITIES_SCOPE not in scopes:
            fetched.not_fetched.append(
                _scope_missing(
                    f"{_entities(len(wanted))} and their relationships",
                    ENTITIES_SCOPE,
                )
            )
        elif fetched.transient is None:  # after a 429 or an outage, the rest would fail too
            _fetch_entities(client, wanted, fetched)
        else:
            fetched.not_fetched.append(
                {
                    "what": f"{_entities(len(wanted))} and their relationships",
                    "reason": "not asked after the error above",
                }
            )
    return fetched


def _fetch_details(client: DynatraceClient, snapshot: Snapshot, fetched: Fetched) -> None:
    what = "problem details (evidence, impact analysis, comments)"
    try:
        try:
            fetched.details = client.get_problem(snapshot.api_id, fields=PROBLEM_DETAIL_FIELDS)
        except ResourceNotFound:
            # Some clusters send {PID} without the API's "_<start>V2" suffix: find the full id by the
            # display id, then ask again.
            full_id = _full_problem_id(client, snapshot)
            if full_id is None:
                raise
            fetched.details = client.get_problem(full_id, fields=PROBLEM_DETAIL_FIELDS)
    except ScopeMissing as exc:
        fetched.not_fetched.append(_scope_missing(what, exc.scope))
    except ResourceNotFound:
        fetched.not_fetched.append(
            {
                "what": what,
                "reason": f"Dynatrace does not know problem {snapshot.api_id} (deleted or too old)",
            }
        )
    except NeedsUserAction as exc:
        fetched.not_fetched.append({"what": what, "reason": exc.message})
    except Transient as exc:
        fetched.not_fetched.append({"what": what, "reason": exc.message})
        fetched.transient = exc


def _full_problem_id(client: DynatraceClient, snapshot: Snapshot) -> str | None:
    """The API's problemId of a problem known by a short PID and its display id, or None."""
    if "_" in snapshot.api_id or not snapshot.display_id or '"' in snapshot.display_id:
        return None
    start = snapshot.start_time or utcnow() - LOOKUP_WINDOW
    found = client.list_problems(
        from_=start - timedelta(hours=1),
        problem_selector=f'displayId("{snapshot.display_id}")',
        page_size=10,
    )
    for problem in found:
        problem_id = problem.get("problemId")
        if isinstance(problem_id, str) and pid_key(problem_id) == snapshot.pid_key:
            return problem_id
    return None


def _fetch_entities(client: DynatraceClient, wanted: list[str], fetched: Fetched) -> None:
    for position, entity_id in enumerate(wanted):
        what = f"entity {entity_id}"
        try:
            fetched.entities.append(client.get_entity(entity_id, fields=ENTITY_FIELDS))
        except ScopeMissing as exc:
            rest = len(wanted) - position
            fetched.not_fetched.append(
                _scope_missing(f"{_entities(rest)} and their relationships", exc.scope)
            )
            return
        except ResourceNotFound:
            fetched.not_fetched.append(
                {"what": what, "reason": "Dynatrace does not know this entity (gone?)"}
            )
        except NeedsUserAction as exc:
            fetched.not_fetched.append({"what": what, "reason": exc.message})
            return
        except Transient as exc:
            fetched.not_fetched.append({"what": what, "reason": exc.message})
            fetched.transient = exc
            return


def _entities(count: int) -> str:
    return f"{count} entit{'y' if count == 1 else 'ies'}"


def _scope_missing(what: str, scope: str) -> dict[str, Any]:
    return {"what": what, "reason": f"the token lacks the scope '{scope}'", "scope": scope}


def _store(ctx: JobContext, snapshot: Snapshot, fetched: Fetched, *, complete: bool) -> dict[str, Any] | None:
    """One transaction: the entity cache, the enrichment record, any correction the details carry, and
    correlation again; with ``complete`` the job is marked done in it too."""
    problem_id = snapshot.problem_id
    status = (
        "complete"
        if not fetched.not_fetched
        else ("partial" if fetched.details or fetched.entities else "none")
    )
    result: dict[str, Any] = {
        "problemId": problem_id,
        "status": status,
        "details": fetched.details is not None,
        "entitiesFetched": len(fetched.entities),
        "notFetched": len(fetched.not_fetched),
    }
    with ctx.session(write=True) as db_session:
        connection = db_session.get(Connection, snapshot.connection.id)
        problem_exists = db_session.get(Problem, problem_id) is not None
        if connection is None or not problem_exists:
            if complete:
                ctx.complete(db_session, {"problemId": problem_id, "skipped": "the problem no longer exists"})
            db_session.commit()
            return None
        incidents_service.lock_workspace(db_session=db_session, workspace_id=connection.workspace_id)
        entities.store_entities(
            db_session=db_session, connection_id=connection.id, documents=fetched.entities
        )
        service.save_enrichment(
            db_session=db_session,
            problem_id=problem_id,
            connection_id=connection.id,
            details=fetched.details,
            entity_ids=fetched.entity_ids,
            not_fetched=fetched.not_fetched,
            status=status if complete else "partial",
        )
        if fetched.details is not None:
            counts = SyncCounts()
            reconcile.apply_api_problems(
                db_session=db_session,
                connection=connection,
                problems=[fetched.details],
                counts=counts,
                being_enriched=(problem_id,),
                follow_up_now=True,
            )
            result["corrected"] = counts.updated + counts.closed
        placement = recorrelate(db_session=db_session, problem_id=problem_id)
        if placement.attached:
            result["incidentId"] = placement.incident.id
            _request_analysis(db_session, placement.incident, ctx)
        if complete:
            ctx.complete(db_session, result)
        db_session.commit()
    logger.info("problem enriched", extra={"problemId": problem_id, "status": status})
    return None


def _request_analysis(db_session: Session, incident: Incident, ctx: JobContext) -> None:
    """The incident gained problems through the topology: its analysis should see them."""
    rca_service.request(
        db_session=db_session, incident=incident, trigger=RcaTrigger.PROBLEMS_ADDED, settings=ctx.settings
    )
