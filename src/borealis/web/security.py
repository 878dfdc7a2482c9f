"""Browser-session safety for pages: the CSRF check on every form and one-time notices."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException

from borealis import csrf
from borealis.api.deps import SESSION_TOKEN_KEY, SESSION_USER_KEY
from borealis.auth import sessions
from borealis.errors import BorealisError

FLASH_SESSION_KEY = "flash"


class MalformedForm(BorealisError):
    code = "malformed_form"


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing page request whose form field or header does not carry the session's
    token, or that comes from another site. Installed on the whole page router, so no form can forget it."""
    if request.method in csrf.SAFE_METHODS:
        return
    sent = request.headers.get(csrf.CSRF_HEADER)
    if sent is None:
        try:
            form = await request.form()
        except HTTPException as exc:
            raise MalformedForm(f"the form could not be read: {exc.detail}") from None
        value = form.get(csrf.CSRF_FORM_FIELD)
        sent = value if isinstance(value, str) else None
    csrf.verify(request, sent=sent, origin_required=False)


def start_session(request: Request, *, db_session: Session, user_id: str) -> None:
    """Log in: a new session row and a fresh cookie (and CSRF token), so nothing from before the login
    carries over; a session this browser still had ends. The caller commits."""
    _end_row(request, db_session)
    _, token = sessions.start(
        db_session=db_session,
        user_id=user_id,
        user_agent=request.headers.get("user-agent"),
        address=request.client.host if request.client else None,
        settings=request.app.state.settings,
    )
    request.session.clear()
    request.session[SESSION_USER_KEY] = user_id
    request.session[SESSION_TOKEN_KEY] = token
    csrf.session_token(request)


def end_session(request: Request, *, db_session: Session) -> None:
    """Log out: the row is revoked, so a copy of the cookie is worth nothing either. The caller commits."""
    _end_row(request, db_session)
    request.session.clear()


def _end_row(request: Request, db_session: Session) -> None:
    token = request.session.get(SESSION_TOKEN_KEY)
    if isinstance(token, str) and token:
        sessions.revoke_token(db_session=db_session, token=token)


def flash(request: Request, message: str, kind: str = "success") -> None:
    """A notice shown once on the next page. Never put a secret here: the cookie is signed, not encrypted."""
    notices = list(request.session.get(FLASH_SESSION_KEY) or [])
    notices.append({"kind": kind, "message": message})
    request.session[FLASH_SESSION_KEY] = notices[-5:]


def pop_flashes(request: Request) -> list[dict[str, str]]:
    return list(request.session.pop(FLASH_SESSION_KEY, None) or [])
