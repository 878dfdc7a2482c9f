"""Computing the insights from the incidents and their latest finished RCA. A window of 7, 30 or 90
days ending now; an incident counts in the window it started in."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.db import utcnow
from borealis.incidents.models import Incident
from borealis.insights.schemas import CauseCount, DayCount, Insights, Precision, Spread
from borealis.rca.models import Feedback, RcaRun, RcaStatus

WINDOWS = (7, 30, 90)
TOP_CAUSES = 10


def spread(values: list[float]) -> Spread:
    """The median (the mean of the middle two for an even count) and the nearest-rank 90th percentile."""
    if not values:
        return Spread(count=0, median=None, p90=None)
    ordered = sorted(values)
    rank = math.ceil(0.9 * len(ordered))
    return Spread(count=len(ordered), median=statistics.median(ordered), p90=ordered[rank - 1])


def _precision(verdict: str, marks: list[str | None]) -> Precision:
    counted = Counter(mark for mark in marks if mark)
    marked = sum(counted.values())
    right = counted[Feedback.RIGHT.value]
    return Precision(
        verdict=verdict,
        reports=len(marks),
        marked=marked,
        right=right,
        partly_right=counted[Feedback.PARTLY_RIGHT.value],
        wrong=counted[Feedback.WRONG.value],
        precision=right / marked if marked else None,
    )


def compute(*, db_session: Session, workspace_id: str, days: int, now: datetime | None = None) -> Insights:
    now = now or utcnow()
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    incidents = db_session.execute(
        sa.select(
            Incident.id,
            Incident.started_at,
            Incident.time_to_acknowledge_seconds,
            Incident.time_to_resolve_seconds,
        ).where(
            Incident.workspace_id == workspace_id,
            Incident.merged_into_id.is_(None),
            Incident.started_at >= since,
            Incident.started_at <= now,
        )
    ).all()
    per_day = Counter(started.date() for _, started, _, _ in incidents)
    first = since.date()
    calendar = [first + timedelta(days=offset) for offset in range((now.date() - first).days + 1)]
    # Each incident's newest finished report: its verdict, cause and mark.
    newest = (
        sa.select(sa.func.max(RcaRun.id))
        .where(RcaRun.status == RcaStatus.DONE.value, RcaRun.incident_id.in_([row.id for row in incidents]))
        .group_by(RcaRun.incident_id)
    )
    runs = (
        db_session.execute(
            sa.select(RcaRun.verdict, RcaRun.report, RcaRun.feedback).where(RcaRun.id.in_(newest))
        ).all()
        if incidents
        else []
    )
    causes: Counter[str] = Counter()
    names: dict[str, str | None] = {}
    by_verdict: dict[str, list[str | None]] = {}
    for verdict, report, feedback in runs:
        entity = ((report or {}).get("rootCause") or {}).get("entity") or {}
        if entity.get("id"):
            causes[entity["id"]] += 1
            names.setdefault(entity["id"], entity.get("name"))
        by_verdict.setdefault(verdict or "unknown", []).append(feedback)
    return Insights(
        days=days,
        since=first,
        incidents=len(incidents),
        incidents_per_day=[DayCount(day=day, incidents=per_day.get(day, 0)) for day in calendar],
        time_to_acknowledge=spread([tta for _, _, tta, _ in incidents if tta is not None]),
        time_to_resolve=spread([ttr for _, _, _, ttr in incidents if ttr is not None]),
        top_root_causes=[
            CauseCount(entity=entity, name=names.get(entity), incidents=count)
            for entity, count in sorted(causes.items(), key=lambda item: (-item[1], item[0]))[:TOP_CAUSES]
        ],
        verdicts={verdict: len(marks) for verdict, marks in sorted(by_verdict.items())},
        precision=[_precision(verdict, marks) for verdict, marks in sorted(by_verdict.items())],
        overall_precision=_precision("all", [mark for marks in by_verdict.values() for mark in marks]),
    )
