"""The write-back jobs: short transactions around the Dynatrace calls, progress kept per problem."""

from __future__ import annotations

from typing import Any

from borealis.dynatrace.capped import api_client
from borealis.dynatrace.errors import NeedsUserAction, Transient
from borealis.dynatrace.service import WRITE_BACK_JOB
from borealis.jobstore import JobContext, PermanentFailure, Retry
from borealis.jobstore.context import describe
from borealis.writeback import service


def _incident_id(ctx: JobContext) -> int:
    try:
        return int(ctx.payload["incidentId"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("the job names no incident (payload incidentId)") from None


def _failed(
    ctx: JobContext, incident_id: int, exc: NeedsUserAction | Transient, *, what: str, done: int
) -> None:
    """Put the failure on the incident's timeline with its reason; retry what may pass on its own
    (a Retry is raised), end the job on what needs the user (a scope, the token)."""
    final = isinstance(exc, NeedsUserAction) or ctx.is_last_attempt
    kind = "write_back_failed" if ctx.kind == WRITE_BACK_JOB else "close_failed"
    with ctx.session() as db_session:
        service.note(
            db_session=db_session,
            incident_id=incident_id,
            kind=kind,
            message=f"{what}: {exc.message}" + ("" if final else "; it is tried again"),
            details={"reason": describe(exc), "done": done, "attempt": ctx.attempt},
        )
        if final:
            ctx.complete(db_session, {"incidentId": incident_id, "failed": exc.message, "done": done})
        db_session.commit()
    if not final:
        raise Retry(exc.message) from exc
    return None


def write_back(ctx: JobContext) -> dict[str, Any] | None:
    """Write the incident's latest RCA onto each of its Dynatrace problems as Borealis's one comment."""
    incident_id = _incident_id(ctx)
    with ctx.session(write=False) as db_session:
        plan = service.plan(db_session=db_session, incident_id=incident_id, settings=ctx.settings)
    if isinstance(plan, str):
        return {"incidentId": incident_id, "skipped": plan}
    written = 0
    try:
        with api_client(
            connection=plan.connection, settings=ctx.settings, secret_box=ctx.secret_box
        ) as client:
            for target in plan.targets:
                comment_id = service.write(client, target, message=plan.message, mark=plan.marker)
                with ctx.session() as db_session:
                    service.remember(db_session=db_session, plan=plan, target=target, comment_id=comment_id)
                    db_session.commit()
                written += 1
    except (NeedsUserAction, Transient) as exc:
        return _failed(ctx, incident_id, exc, what="the RCA could not be written to Dynatrace", done=written)
    result = {"incidentId": incident_id, "rcaId": plan.run_id, "written": written}
    with ctx.session() as db_session:
        service.note(
            db_session=db_session,
            incident_id=incident_id,
            kind="written_back",
            message=f"RCA written to Dynatrace on {written} problem{'s' if written != 1 else ''}",
            details=result,
        )
        ctx.complete(db_session, result)
        db_session.commit()
    return result


def close_problems(ctx: JobContext) -> dict[str, Any] | None:
    """Close the incident's open problems in Dynatrace, as a responder asked."""
    incident_id = _incident_id(ctx)
    with ctx.session(write=False) as db_session:
        plan = service.closing(
            db_session=db_session, incident_id=incident_id, message=str(ctx.payload.get("message") or "")
        )
    if isinstance(plan, str):
        return {"incidentId": incident_id, "skipped": plan}
    closed = already = 0
    try:
        with api_client(
            connection=plan.connection, settings=ctx.settings, secret_box=ctx.secret_box
        ) as client:
            for _, api_id in plan.targets:
                if client.close_problem(api_id, plan.message):
                    closed += 1
                else:
                    already += 1
    except (NeedsUserAction, Transient) as exc:
        return _failed(
            ctx, incident_id, exc, what="the problems could not be closed in Dynatrace", done=closed
        )
    result = {"incidentId": incident_id, "closed": closed, "closedAlready": already}
    with ctx.session() as db_session:
        service.note(
            db_session=db_session,
            incident_id=incident_id,
            kind="closed_in_dynatrace",
            message=f"{closed} problem{'s' if closed != 1 else ''} closed in Dynatrace"
            + (f", {already} closed there already" if already else ""),
            details=result,
        )
        ctx.complete(db_session, result)
        db_session.commit()
    return result
