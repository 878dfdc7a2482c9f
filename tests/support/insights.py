"""Incidents and finished reports written straight into a workspace, for figures computed by hand."""

from __future__ import annotations

from datetime import timedelta

from borealis.db import utcnow
from borealis.incidents.models import Incident
from borealis.rca.models import RcaRun


def add_incident(session, workspace_id, *, days_ago, tta=None, ttr=None, merged_into=None) -> Incident:
    incident = Incident(
        workspace_id=workspace_id,
        title=f"{days_ago} days ago",
        status="resolved" if ttr is not None else "open",
        priority="high",
        affected_entities=[],
        started_at=utcnow() - timedelta(days=days_ago, minutes=5),
        problem_count=1,
        open_problem_count=0 if ttr is not None else 1,
        search_text="",
        time_to_acknowledge_seconds=tta,
        time_to_resolve_seconds=ttr,
        merged_into_id=merged_into,
    )
    session.add(incident)
    session.flush()
    return incident


def add_report(session, incident, *, verdict, cause, name, feedback=None) -> None:
    session.add(
        RcaRun(
            incident_id=incident.id,
            workspace_id=incident.workspace_id,
            status="done",
            trigger="on_demand",
            verdict=verdict,
            report={
                "verdict": verdict,
                "rootCause": {"entity": {"id": cause, "name": name}, "explanation": "x"},
            },
            feedback=feedback,
        )
    )
    session.flush()


def seed_figures(database, workspace_id: str) -> None:
    """Four incidents in the last week and one three weeks ago (see tests/test_insights.py for the
    figures they give), and one merged away, which counts nowhere."""
    with database.session(write=True) as session:
        a = add_incident(session, workspace_id, days_ago=1, tta=60, ttr=600)
        add_report(session, a, verdict="INCONCLUSIVE", cause="HOST-9", name="old guess")  # replaced below
        add_report(session, a, verdict="CONFIRMED", cause="HOST-1", name="db-host", feedback="right")
        b = add_incident(session, workspace_id, days_ago=1, tta=120, ttr=1200)
        add_report(session, b, verdict="CONFIRMED", cause="HOST-1", name="db-host", feedback="wrong")
        c = add_incident(session, workspace_id, days_ago=2, tta=300)
        add_report(session, c, verdict="LIKELY", cause="SERVICE-2", name="checkout", feedback="partly_right")
        add_incident(session, workspace_id, days_ago=3)
        e = add_incident(session, workspace_id, days_ago=20, tta=30)
        add_report(session, e, verdict="LIKELY", cause="HOST-1", name="db-host", feedback="right")
        add_incident(session, workspace_id, days_ago=1, tta=1, ttr=1, merged_into=a.id)
        session.commit()
