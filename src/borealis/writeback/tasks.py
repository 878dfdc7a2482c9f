"""The write-back jobs: short transactions around the Dynatrace calls, progress kept per problem."""

from __future__ import annotations

from typing import Any

from borealis.dynatrace.capped import api_client
from borealis.dynatrace.errors import NeedsUserAction, Transient
from borealis.jobstore import JobContext, PermanentFailure, Retry
from borealis.jobstore.context import describe
from borealis.writeback import service


def _incident_id(ctx: JobContext) -> int:
    try:
        return int(ctx.payload["incidentId"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("the job names no incident (payload incidentId)") from None


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
        final = isinstance(exc, NeedsUserAction) or ctx.is_last_attempt
        with ctx.session() as db_session:
            service.note(
                db_session=db_session,
                incident_id=incident_id,
                kind="write_back_failed",
                message=f"the RCA could not be written to Dynatrace: {exc.message}"
                + ("" if final else "; it is tried again"),
                details={"reason": describe(exc), "written": written, "attempt": ctx.attempt},
            )
            if final:
                ctx.complete(
                    db_session, {"incidentId": incident_id, "failed": exc.message, "written": written}
                )
            db_session.commit()
        if final:
            return None
        raise Retry(exc.message) from exc
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
