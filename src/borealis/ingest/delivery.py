"""One webhook delivery: its body parsed into a ``Job``, the job's wire form, and a batch of jobs applied
in one transaction.

The webhook endpoint parses each delivery into a job and sends it, in its wire form, to the writer
process (``writer.py``), which applies jobs in batches. Authentication happens there, inside the batch's
transaction, against the stored secret hash, so a rotated secret or a disconnect takes effect at once
and in every process.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis import jsontext
from borealis.crypto import matches
from borealis.db import StoredJson
from borealis.driver import Driver
from borealis.dynatrace.models import Connection
from borealis.dynatrace.payload import parse_webhook
from borealis.dynatrace.problem_notification import PayloadRejected, ProblemNotification
from borealis.ingest import intake
from borealis.problems import service as problems_service

logger = logging.getLogger("borealis.webhook")

# One answer for a wrong secret and for a workspace id with no connection: a caller without the secret
# learns nothing about which ids exist.
UNAUTHORIZED = (
    "unknown webhook URL or missing or wrong secret: connect first (POST /dynatrace/connect), then send the "
    "URL from GET /dynatrace/webhook-url as is (its ?token=) or 'Authorization: Bearer <secret>'"
)
NOT_STORED = "the notification could not be stored; send it again"


@dataclass(slots=True)
class Answer:
    """What the webhook answers a delivery: a status and a JSON body."""

    status: int
    body: dict[str, Any]


def error(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message}})


@dataclass(slots=True)
class Job:
    """A delivery from the sender's point of view: who it claims to be, and what it sent, parsed."""

    workspace_id: str
    token: str
    notification: ProblemNotification | None
    rejection: str | None
    malformed: bool
    raw_body: str
    content_type: str | None
    received_at: datetime
    # The endpoint's number for the delivery, to route its answer back.
    id: int = 0
    # The body as sent, while it waits to be parsed (``parsed``): None once it is.
    body: bytes | None = None


def job(
    *,
    workspace_id: str,
    token: str,
    body: bytes,
    received_at: datetime,
    content_type: str | None = None,
    id: int = 0,
    parse: bool = True,
) -> Job:
    """A delivery as a job, parsed unless ``parse`` is False: then the writer parses it once the secret
    is checked, so a sender without the secret never has its body read."""
    waiting = Job(workspace_id, token, None, None, False, "", content_type, received_at, id, body)
    return parsed(waiting) if parse else waiting


def parsed(job: Job) -> Job:
    """The job with its body parsed; a body with no use becomes a job that records why. Whatever goes
    wrong in parsing is the body's fault as far as the sender can tell: a 400 with the reason."""
    body = job.body
    if body is None:
        return job
    notification: ProblemNotification | None = None
    rejection: str | None = None
    malformed = False
    try:
        notification = parse_webhook(body)
    except PayloadRejected as exc:
        rejection, malformed = exc.message, exc.malformed
    except Exception as exc:
        logger.exception("a webhook body could not be parsed")
        rejection, malformed = f"the body could not be read ({type(exc).__name__})", True
    raw = body.decode("utf-8", "replace")
    if "\x00" in raw:
        raw = raw.replace("\x00", "\ufffd")
    return replace(
        job, notification=notification, rejection=rejection, malformed=malformed, raw_body=raw, body=None
    )


def to_wire(job: Job) -> bytes:
    """The job as bytes, for the writer process (parsing happened on the server's side): the lengths
    of the workspace id, of a JSON header and of the details document, then each, then the raw body as it
    is (inside JSON it would cost escaping). The writer only stores the document: it gets it as
    ``StoredJson``, never decoded."""
    notification = job.notification
    values: list[Any] | None = None
    details = b""
    if notification is not None:
        values = [getattr(notification, name) for name in _NOTIFICATION_FIELDS]
        for index in _TIME_FIELDS:
            if values[index] is not None:
                values[index] = values[index].isoformat()
        values[_PRESENT] = sorted(notification.present_fields)
        if notification.details is not None:
            details = jsontext.dumps(notification.details).encode()
            values[_DETAILS] = None
    workspace = job.workspace_id.encode()
    header = jsontext.dumps(
        [
            job.id,
            job.token,
            values,
            job.rejection,
            job.malformed,
            job.content_type,
            job.received_at.isoformat(),
            job.body is not None,
        ]
    ).encode()
    tail = job.body if job.body is not None else job.raw_body.encode()
    return _LENGTHS.pack(len(workspace), len(header), len(details)) + workspace + header + details + tail


def from_wire(data: bytes) -> Job:
    """The job ``to_wire`` wrote."""
    workspace_length, header_length, details_length = _LENGTHS.unpack_from(data)
    workspace_end = _LENGTHS.size + workspace_length
    header_end = workspace_end + header_length
    details_end = header_end + details_length
    workspace_id = data[_LENGTHS.size : workspace_end].decode()
    id_, token, values, rejection, malformed, content_type, received_at, waiting = jsontext.loads(
        data[workspace_end:header_end]
    )
    notification = None
    if values is not None:
        for index in _TIME_FIELDS:
            if values[index] is not None:
                values[index] = datetime.fromisoformat(values[index])
        values[_PRESENT] = frozenset(values[_PRESENT])
        if details_length:
            values[_DETAILS] = StoredJson(data[header_end:details_end].decode())
        notification = ProblemNotification(*values)
    tail = data[details_end:]
    return Job(
        workspace_id,
        token,
        notification,
        rejection,
        malformed,
        "" if waiting else tail.decode(),
        content_type,
        datetime.fromisoformat(received_at),
        id_,
        tail if waiting else None,
    )


_LENGTHS = struct.Struct("!HII")
_NOTIFICATION_FIELDS = tuple(field.name for field in fields(ProblemNotification))
_TIME_FIELDS = tuple(
    index for index, field in enumerate(fields(ProblemNotification)) if field.type == "datetime | None"
)
_PRESENT = _NOTIFICATION_FIELDS.index("present_fields")
_DETAILS = _NOTIFICATION_FIELDS.index("details")


def process(db_session: Session, jobs: list[Job]) -> list[Answer]:
    """Authenticate, then parse what waits to be, and apply jobs in the caller's transaction; one
    answer per job, in order."""
    connections = _connections(db_session, sorted({job.workspace_id for job in jobs}))
    answers: list[Answer | None] = [None] * len(jobs)
    accepted: list[intake.Accepted] = []
    positions: list[int] = []
    for position, job in enumerate(jobs):
        connection = connections.get(job.workspace_id)
        if (
            connection is None
            or not connection.connected
            or not matches(job.token, connection.webhook_secret_hash)
        ):
            answers[position] = error(401, "not_authenticated", UNAUTHORIZED)
            continue
        job = parsed(job)
        if job.notification is None:
            problems_service.record_rejected(
                db_session=db_session,
                connection_id=connection.id,
                reason=job.rejection or "unusable body",
                raw_body=job.raw_body,
                content_type=job.content_type,
                received_at=job.received_at,
            )
            status, code = (400, "malformed_payload") if job.malformed else (422, "invalid_payload")
            answers[position] = error(status, code, job.rejection or "unusable body")
        else:
            positions.append(position)
            accepted.append(
                intake.Accepted(connection, job.notification, "webhook", job.raw_body, job.received_at)
            )
    results = intake.ingest_many(db_session=db_session, items=accepted, follow_up_now=False)
    for position, result in zip(positions, results, strict=True):
        answers[position] = Answer(200, result.as_answer())
    return [answer for answer in answers if answer is not None]


def _connections(db_session: Session, workspace_ids: list[str]) -> dict[str, Connection]:
    """The workspaces' connections with what a delivery needs of them: who, the secret's hash, whether it is
    connected, and the times intake moves forward (``intake._touch_connections``). They are read
    straight from the driver (an ORM query costs more than the rest of a small batch's reads) and
    stay out of the session: nothing here changes them through it."""
    driver = Driver.of(db_session)
    reader = driver.reader(_connections_table, _CONNECTION_COLUMNS)
    sql = f"{reader.sql} WHERE workspace_id IN ({driver.marks(len(workspace_ids))})"
    rows = reader.dicts(driver.query(db_session, sql, workspace_ids))
    return {row["workspace_id"]: Connection(**row) for row in rows}


_connections_table: sa.Table = Connection.__table__  # type: ignore[assignment]
_CONNECTION_COLUMNS = (
    "id",
    "workspace_id",
    "token_ciphertext",
    "webhook_secret_hash",
    "last_webhook_at",
    "last_test_notification_at",
)
