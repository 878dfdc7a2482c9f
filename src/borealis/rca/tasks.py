"""The ``rca`` job: two short transactions around the slow part (Dynatrace and the optional model)."""

from __future__ import annotations

from typing import Any

from borealis.jobstore import JobContext, PermanentFailure
from borealis.jobstore.context import describe
from borealis.rca import service
from borealis.rca.models import ACTIVE, RcaRun, RcaStatus


def run_rca(ctx: JobContext) -> dict[str, Any] | None:
    """Analyse one incident and store the report; a failure is recorded on the run with its reason."""
    try:
        rca_id = int(ctx.payload["rcaId"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("the job names no RCA (payload rcaId)") from None
    with ctx.session() as db_session:
        run = db_session.get(RcaRun, rca_id)
        if run is None:
            return {"rcaId": rca_id, "skipped": "the RCA no longer exists (its incident was deleted)"}
        if run.status not in ACTIVE:
            return {"rcaId": rca_id, "skipped": f"the RCA is already {run.status}"}
        inputs = service.start(db_session=db_session, run=run)
        if inputs is None:
            result = {"rcaId": rca_id, "status": run.status, "reason": run.reason}
            ctx.complete(db_session, result)
            db_session.commit()
            return result
        db_session.commit()
    try:
        outcome = service.analyse(inputs, settings=ctx.settings, secret_box=ctx.secret_box)
    except Exception as exc:
        with ctx.session() as db_session:
            run = db_session.get(RcaRun, rca_id)
            if run is not None:
                service.record_failure(
                    db_session=db_session, run=run, reason=describe(exc), final=ctx.is_last_attempt
                )
                db_session.commit()
        raise
    with ctx.session() as db_session:
        run = db_session.get(RcaRun, rca_id)
        if run is None:
            return {"rcaId": rca_id, "skipped": "the RCA was deleted while it ran"}
        service.finish(db_session=db_session, run=run, outcome=outcome)
        result = {
            "rcaId": rca_id,
            "status": RcaStatus.DONE.value,
            "verdict": run.verdict,
            "analyzer": run.analyzer,
        }
        ctx.complete(db_session, result)
        db_session.commit()
    return result
