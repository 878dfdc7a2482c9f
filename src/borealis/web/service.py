"""First-run set-up and the account forms. Callers own the transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from borealis.auth import service as auth_service
from borealis.auth.models import User
from borealis.errors import Conflict, InvalidInput
from borealis.workspaces import service as workspaces_service


def setup_open(*, db_session: Session) -> bool:
    """True while no user exists: the only time /setup may create an account."""
    return auth_service.count(db_session=db_session) == 0


def create_first_admin(*, db_session: Session, email: str, password: str, confirmation: str) -> User:
    """The first administrator; refused once any user exists, even when two set-ups race."""
    if password != confirmation:
        raise InvalidInput("the two passwords differ; type the same password twice")
    if db_session.get_bind().dialect.name == "postgresql":
        # SQLite's write session already holds the database lock; PostgreSQL needs the table's.
        db_session.execute(sa.text("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE"))
    if not setup_open(db_session=db_session):
        raise Conflict("Borealis is already set up; log in instead")
    user, _ = workspaces_service.create_user(
        db_session=db_session, email=email, password=password, is_admin=True
    )
    return user


def change_password(
    *, db_session: Session, user: User, password: str, confirmation: str, keep_session_id: str | None
) -> int:
    """The user's new password, typed twice; their other sessions end. Returns how many did."""
    if password != confirmation:
        raise InvalidInput("the two new passwords differ; type the same password twice")
    return auth_service.set_password(
        db_session=db_session, user=user, password=password, keep_session_id=keep_session_id
    )
