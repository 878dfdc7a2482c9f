"""The on-call workflow on an incident: acknowledge, assign, notes. Callers own the transaction.

Each step is a line on the incident's timeline naming the member. None of them takes the correlation
lock: they touch only the incident's own workflow columns and its notes, never its problems."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.auth.models import User
from borealis.db import utcnow
from borealis.errors import Forbidden, InvalidInput, NotFound
from borealis.incidents.changes import record_event
from borealis.incidents.models import MAX_NOTE_CHARS, Incident, IncidentNote, IncidentNoteRevision
from borealis.schemas import checked_id, storable
from borealis.workspaces import service as workspaces_service


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    at: datetime
    by: User | None
    # False when someone had acknowledged it already: nothing changed.
    first: bool


def acknowledge(*, db_session: Session, incident: Incident, user: User) -> Acknowledgement:
    """Record that ``user`` is on it. Idempotent: a later acknowledgement changes nothing and answers
    with the first one. Two at once: the conditional update lets exactly one of them in."""
    now = utcnow()
    taken = db_session.execute(
        sa.update(Incident)
        .where(Incident.id == incident.id, Incident.acknowledged_at.is_(None))
        .values(
            acknowledged_at=now,
            acknowledged_by_id=user.id,
            time_to_acknowledge_seconds=max(0.0, (now - incident.started_at).total_seconds()),
        )
        .execution_options(synchronize_session=False)
    ).rowcount
    db_session.refresh(incident)
    if taken:
        record_event(
            db_session=db_session,
            incident=incident,
            kind="acknowledged",
            actor="user",
            user_id=user.id,
            message="acknowledged",
        )
        db_session.flush()
    first_by = db_session.get(User, incident.acknowledged_by_id) if incident.acknowledged_by_id else None
    assert incident.acknowledged_at is not None
    return Acknowledgement(at=incident.acknowledged_at, by=first_by, first=bool(taken))


def assign(*, db_session: Session, incident: Incident, assignee_id: str | None, by: User) -> Incident:
    """Hand the incident to a member of its workspace (None: to nobody)."""
    assignee = None
    if assignee_id is not None:
        assignee = db_session.get(User, checked_id(assignee_id, field="userId"))
        member = assignee is not None and workspaces_service.is_member(
            db_session=db_session, workspace_id=incident.workspace_id, user_id=assignee_id
        )
        if not member:
            raise InvalidInput(
                f"user {assignee_id} is not a member of this workspace; assign a member "
                "(GET /workspaces/{id}/members lists them) or ask an owner to add them",
                details={"field": "userId"},
            )
    if incident.assignee_id == assignee_id:
        return incident
    incident.assignee_id = assignee_id
    record_event(
        db_session=db_session,
        incident=incident,
        kind="assigned" if assignee is not None else "unassigned",
        actor="user",
        user_id=by.id,
        message=f"assigned to {assignee.email}" if assignee else "unassigned",
        details={"assigneeId": assignee_id},
    )
    db_session.flush()
    return incident


def clean_note(text: str) -> str:
    storable(text, field="text")
    if not text.strip():
        raise InvalidInput("a note needs some text", details={"field": "text"})
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidInput(
            f"a note has at most {MAX_NOTE_CHARS:,} characters; this one has {len(text):,}",
            details={"field": "text"},
        )
    return text


def add_note(*, db_session: Session, incident: Incident, author: User, text: str) -> IncidentNote:
    note = IncidentNote(incident_id=incident.id, author_id=author.id, text=clean_note(text))
    db_session.add(note)
    db_session.flush()
    record_event(
        db_session=db_session,
        incident=incident,
        kind="note_added",
        actor="user",
        user_id=author.id,
        message="note added",
        details={"noteId": note.id},
    )
    db_session.flush()
    return note


def edit_note(
    *, db_session: Session, incident: Incident, note_id: int, author: User, text: str
) -> IncidentNote:
    """Change a note's text; only its author may, and the text it replaces is kept."""
    note = get_note(db_session=db_session, incident=incident, note_id=note_id)
    if note.author_id != author.id:
        raise Forbidden("only a note's author can edit it; add a note of your own instead")
    text = clean_note(text)
    if text == note.text:
        return note
    now = utcnow()
    db_session.add(
        IncidentNoteRevision(note_id=note.id, text=note.text, written_at=note.updated_at, replaced_at=now)
    )
    note.text = text
    note.updated_at = now
    record_event(
        db_session=db_session,
        incident=incident,
        kind="note_edited",
        actor="user",
        user_id=author.id,
        message="note edited",
        details={"noteId": note.id},
    )
    db_session.flush()
    return note


def get_note(*, db_session: Session, incident: Incident, note_id: int) -> IncidentNote:
    note = db_session.get(IncidentNote, note_id)
    if note is None or note.incident_id != incident.id:
        raise NotFound(
            f"incident {incident.id} has no note {note_id}; GET /incidents/{incident.id}/notes lists them"
        )
    return note


@dataclass(frozen=True, slots=True)
class NoteWithHistory:
    note: IncidentNote
    author: User | None
    revisions: list[IncidentNoteRevision]


def notes(*, db_session: Session, incident: Incident) -> list[NoteWithHistory]:
    """The incident's notes, oldest first, each with its author and earlier texts (oldest first)."""
    rows = db_session.execute(
        sa.select(IncidentNote, User)
        .outerjoin(User, User.id == IncidentNote.author_id)
        .where(IncidentNote.incident_id == incident.id)
        .order_by(IncidentNote.id)
    ).all()
    ids = [note.id for note, _ in rows]
    history: dict[int, list[IncidentNoteRevision]] = {note_id: [] for note_id in ids}
    if ids:
        for revision in db_session.scalars(
            sa.select(IncidentNoteRevision)
            .where(IncidentNoteRevision.note_id.in_(ids))
            .order_by(IncidentNoteRevision.id)
        ):
            history[revision.note_id].append(revision)
    return [NoteWithHistory(note, author, history[note.id]) for note, author in rows]


def usernames(*, db_session: Session, user_ids: set[str | None]) -> dict[str, str]:
    """User id -> username (email), for the timeline and the workflow fields."""
    wanted = {user_id for user_id in user_ids if user_id}
    if not wanted:
        return {}
    return dict(db_session.execute(sa.select(User.id, User.email).where(User.id.in_(wanted))).all())
