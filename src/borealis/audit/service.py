"""Recording and reading the audit log. Callers own the transaction: an entry commits with its change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.audit.models import Actor, AuditEntry


def record(
    *,
    db_session: Session,
    workspace_id: str,
    actor: Actor,
    action: str,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        workspace_id=workspace_id,
        actor_id=actor.user_id,
        actor_email=actor.email,
        address=actor.address,
        via=actor.via,
        action=action,
        target=target,
        details=details or {},
    )
    db_session.add(entry)
    return entry


def page(
    *, db_session: Session, workspace_id: str, limit: int, before: int | None = None
) -> list[AuditEntry]:
    """Newest first; ``before`` continues from the last entry of the previous page (an id)."""
    query = sa.select(AuditEntry).where(AuditEntry.workspace_id == workspace_id)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(db_session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


def prune(*, db_session: Session, before: datetime) -> int:
    """Remove the entries older than the retention; returns how many."""
    result = db_session.execute(sa.delete(AuditEntry).where(AuditEntry.at < before))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
