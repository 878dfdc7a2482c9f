"""Report persistence: a finished run's report and its evidence rows, written once and read back as the
API shows them (the report is stored without its evidence, which has rows of its own)."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.jobstore.models import Job, JobState
from borealis.rca.evidence import EntityRef, Evidence, EvidenceKind
from borealis.rca.models import ACTIVE, RcaEvidence, RcaRun, RcaStatus
from borealis.rca.report import Report, render_markdown

HISTORY_LIMIT = 10


def store_report(*, db_session: Session, run: RcaRun, report: Report, title: str | None) -> None:
    """Replace the run's evidence rows and store the report, its markdown and its verdict on the run."""
    db_session.execute(sa.delete(RcaEvidence).where(RcaEvidence.rca_id == run.id))
    for item in report.evidence:
        db_session.add(
            RcaEvidence(
                rca_id=run.id,
                evidence_id=item.id,
                kind=item.kind.value,
                summary=item.summary,
                source=item.source,
                start_time=item.start,
                end_time=item.end,
                entity_id=item.entity.id if item.entity else None,
                entity_name=item.entity.name if item.entity else None,
                entity_type=item.entity.type if item.entity else None,
                link=item.link,
                event_type=item.event_type,
                root_cause_relevant=item.root_cause_relevant,
                problem_id=item.problem_id,
                data=item.data,
            )
        )
    run.report = report.model_dump(mode="json", by_alias=True, exclude={"evidence"})
    run.markdown = render_markdown(report, title=title)
    run.verdict = report.verdict.value


def evidence_of(*, db_session: Session, run: RcaRun) -> list[Evidence]:
    """The run's evidence rows as the report cites them, in the order they were stored."""
    rows = db_session.scalars(
        sa.select(RcaEvidence).where(RcaEvidence.rca_id == run.id).order_by(RcaEvidence.id)
    )
    items = []
    for row in rows:
        entity = (
            EntityRef(id=row.entity_id, name=row.entity_name, type=row.entity_type) if row.entity_id else None
        )
        items.append(
            Evidence(
                id=row.evidence_id,
                kind=EvidenceKind(row.kind),
                summary=row.summary,
                source=row.source,
                start=row.start_time,
                end=row.end_time,
                entity=entity,
                link=row.link,
                event_type=row.event_type,
                root_cause_relevant=row.root_cause_relevant,
                problem_id=row.problem_id,
                data=row.data or {},
            )
        )
    return items


def effective_status(*, db_session: Session, run: RcaRun) -> tuple[str, str | None]:
    """The run's status, corrected when its job died for good without the run hearing of it."""
    if run.status in ACTIVE and run.job_id is not None:
        job = db_session.get(Job, run.job_id)
        if job is not None and job.state == JobState.FAILED.value:
            return RcaStatus.FAILED.value, job.last_error or "the RCA job failed"
    return run.status, run.reason


def history(*, db_session: Session, incident_id: int, limit: int = HISTORY_LIMIT) -> Sequence[RcaRun]:
    """The incident's runs, newest first."""
    return db_session.scalars(
        sa.select(RcaRun).where(RcaRun.incident_id == incident_id).order_by(RcaRun.id.desc()).limit(limit)
    ).all()


def stored_report(*, db_session: Session, run: RcaRun) -> Report | None:
    """The run's whole report with its evidence, or None before it finished."""
    if run.report is None:
        return None
    return Report.model_validate({**run.report, "evidence": evidence_of(db_session=db_session, run=run)})
