"""What Borealis writes onto Dynatrace problems, and where it keeps track. Callers own the transaction;
the Dynatrace calls happen outside one (``tasks.py``).

Adding a comment answers 201 with no id, and a worker may die between adding one and storing its id.
So a write first looks for its own comment on the problem (context ``Borealis``, and the incident's
marker line) and updates that one: a retried or taken-over job never posts a second comment."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.auth.models import User
from borealis.config import Settings
from borealis.dynatrace import service as dynatrace_service
from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.errors import ResourceNotFound, Transient
from borealis.dynatrace.models import Connection
from borealis.errors import Conflict
from borealis.incidents.changes import record_event
from borealis.incidents.models import Incident, IncidentProblem
from borealis.jobstore import enqueue
from borealis.jobstore.models import Job
from borealis.problems.models import Problem
from borealis.rca import service as rca_service
from borealis.rca.models import RcaRun
from borealis.rca.report import Report
from borealis.rca.store import stored_report
from borealis.schemas import storable
from borealis.workspaces.models import Workspace
from borealis.writeback.models import DynatraceComment

CONTEXT = dynatrace_service.CONTEXT
MAX_EVIDENCE = 2
# A problem Borealis still holds open (the others are closed in Dynatrace already).
OPEN_STATE = "OPEN"


@dataclass(frozen=True, slots=True)
class Target:
    problem_id: int
    # The problem's id in the API (its PID).
    api_id: str
    comment_id: str | None


@dataclass(frozen=True, slots=True)
class Plan:
    incident_id: int
    connection: Connection
    run_id: int
    message: str
    marker: str
    targets: list[Target]


def marker(incident_id: int) -> str:
    """The line that tells our comment for this incident from anyone else's."""
    return f"Borealis incident #{incident_id}"


def comment_text(*, incident: Incident, report: Report, link: str, run: RcaRun) -> str:
    """The verdict, the root cause with its key figure, the top two pieces of evidence, a responder's
    mark on the report if there is one, and the way back."""
    lines = [f"Borealis root-cause analysis: {report.verdict.value}", ""]
    cause = report.root_cause
    figure = next((hop.figure for hop in report.walk.path if hop.role == "cause" and hop.figure), None)
    if cause.entity is not None:
        lines.append(f"Root cause: {cause.entity.label}" + (f" ({figure})" if figure else ""))
    lines.append(cause.explanation)
    cited = {item.id: item for item in report.evidence}
    evidence = [cited[eid] for eid in cause.evidence_ids if eid in cited][:MAX_EVIDENCE]
    if evidence:
        lines += ["", "Evidence:"]
        lines += [f"- {item.summary}" for item in evidence]
    if run.feedback:
        mark = run.feedback.replace("_", " ")
        truth = f"; the true cause: {run.feedback_cause}" if run.feedback_cause else ""
        lines += ["", f"A responder marked this analysis {mark}{truth}."]
    lines += ["", f"{marker(incident.id)}: {link}"]
    return "\n".join(lines)


def plan(*, db_session: Session, incident_id: int, settings: Settings) -> Plan | str:
    """What to write for the incident's latest finished RCA, or why nothing is written."""
    incident = db_session.get(Incident, incident_id)
    if incident is None:
        return "the incident no longer exists"
    workspace = db_session.get(Workspace, incident.workspace_id)
    connection = dynatrace_service.get(db_session=db_session, workspace_id=incident.workspace_id)
    if not dynatrace_service.writes_back(workspace=workspace, connection=connection):
        return "write-back is off, or the token lacks problems.write"
    assert connection is not None
    run = rca_service.latest_done(db_session=db_session, incident_id=incident.id)
    report = stored_report(db_session=db_session, run=run) if run is not None else None
    if run is None or report is None:
        return "the incident has no finished RCA"
    base = settings.public_base_url or "http://127.0.0.1:8000"
    link = f"{base.rstrip('/')}/incidents/{incident.id}"
    rows = db_session.execute(
        sa.select(Problem.id, Problem.api_problem_id, Problem.pid, DynatraceComment.comment_id)
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .outerjoin(DynatraceComment, DynatraceComment.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id)
        .order_by(Problem.id)
    ).all()
    targets = [Target(problem_id, api_id or pid, comment_id) for problem_id, api_id, pid, comment_id in rows]
    return Plan(
        incident_id=incident.id,
        connection=connection,
        run_id=run.id,
        message=comment_text(incident=incident, report=report, link=link, run=run),
        marker=marker(incident.id),
        targets=targets,
    )


def write(client: DynatraceClient, target: Target, *, message: str, mark: str) -> str:
    """Put the message on the problem as our one comment; returns the comment's id."""
    if target.comment_id is not None:
        try:
            client.update_comment(target.api_id, target.comment_id, message, context=CONTEXT)
            return target.comment_id
        except ResourceNotFound:
            pass  # deleted in Dynatrace: look again, else write a new one
    found = _ours(client, target.api_id, mark)
    if found is None:
        client.add_comment(target.api_id, message, context=CONTEXT)
        found = _ours(client, target.api_id, mark)
        if found is None:
            raise _NotListed(target.api_id)
        return found
    client.update_comment(target.api_id, found, message, context=CONTEXT)
    return found


class _NotListed(Transient):
    def __init__(self, api_id: str) -> None:
        super().__init__(f"Dynatrace accepted the comment on problem {api_id} but does not list it yet")


def _ours(client: DynatraceClient, api_id: str, mark: str) -> str | None:
    for comment in client.list_comments(api_id):
        content = comment.get("content")
        if comment.get("context") == CONTEXT and isinstance(content, str) and mark in content:
            comment_id = comment.get("id")
            if isinstance(comment_id, str) and comment_id:
                return comment_id
    return None


def remember(*, db_session: Session, plan: Plan, target: Target, comment_id: str) -> None:
    row = db_session.get(DynatraceComment, target.problem_id)
    if row is None:
        row = DynatraceComment(
            problem_id=target.problem_id, incident_id=plan.incident_id, comment_id=comment_id
        )
        db_session.add(row)
    row.incident_id = plan.incident_id
    row.comment_id = comment_id
    row.rca_run_id = plan.run_id
    db_session.flush()


def note(
    *, db_session: Session, incident_id: int, kind: str, message: str, details: dict[str, object]
) -> None:
    """A timeline line about the write-back (done, failed with the reason)."""
    incident = db_session.get(Incident, incident_id)
    if incident is not None:
        record_event(db_session=db_session, incident=incident, kind=kind, message=message, details=details)


@dataclass(frozen=True, slots=True)
class Closing:
    incident_id: int
    connection: Connection
    message: str
    # (problem id, API id) of the incident's problems still open in Borealis's record.
    targets: list[tuple[int, str]]


DEFAULT_CLOSE_MESSAGE = "Closed from Borealis"


def request_close(*, db_session: Session, incident: Incident, by: User, message: str | None) -> Job:
    """Queue closing the incident's open problems in Dynatrace, on a responder's request (never on
    Borealis's own): refused at once when the connection cannot do it."""
    connection = dynatrace_service.get(db_session=db_session, workspace_id=incident.workspace_id)
    if connection is None or not connection.connected:
        raise Conflict("Dynatrace is not connected; connect with POST /dynatrace/connect")
    if dynatrace_service.WRITE_SCOPE not in (connection.token_scopes or []):
        raise Conflict(
            f"the token lacks {dynatrace_service.WRITE_SCOPE}, which closing a problem needs; grant it and connect again"
        )
    text = storable((message or "").strip() or DEFAULT_CLOSE_MESSAGE, field="message")
    job = enqueue(
        db_session=db_session,
        kind=dynatrace_service.CLOSE_JOB,
        workspace_id=incident.workspace_id,
        key=f"incident:{incident.id}",
        payload={"incidentId": incident.id, "message": f"{text} ({by.email}, {marker(incident.id)})"},
    )
    record_event(
        db_session=db_session,
        incident=incident,
        kind="close_requested",
        actor="user",
        user_id=by.id,
        message="closing its problems in Dynatrace",
        details={"jobId": job.id},
    )
    db_session.flush()
    return job


def closing(*, db_session: Session, incident_id: int, message: str) -> Closing | str:
    """What to close for the incident, or why nothing is."""
    incident = db_session.get(Incident, incident_id)
    if incident is None:
        return "the incident no longer exists"
    connection = dynatrace_service.get(db_session=db_session, workspace_id=incident.workspace_id)
    if connection is None or not connection.connected:
        return "Dynatrace is not connected"
    rows = db_session.execute(
        sa.select(Problem.id, Problem.api_problem_id, Problem.pid)
        .join(IncidentProblem, IncidentProblem.problem_id == Problem.id)
        .where(IncidentProblem.incident_id == incident.id, Problem.state == OPEN_STATE)
        .order_by(Problem.id)
    ).all()
    return Closing(
        incident.id, connection, message, [(problem_id, api_id or pid) for problem_id, api_id, pid in rows]
    )
