"""Browser-session safety for pages: the CSRF check on every form and one-time notices."""

from __future__ import annotations

from fastapi import Request
from starlette.exceptions import HTTPException

from borealis import csrf
from borealis.deps import SESSION_USER_KEY
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


def start_session(request: Request, user_id: str) -> None:
    """Log in: a fresh session (and CSRF token), so nothing from before the login carries over."""
    request.session.clear()
    request.session[SESSION_USER_KEY] = user_id
    csrf.session_token(request)


def end_session(request: Request) -> None:
    request.session.clear()


def flash(request: Request, message: str, kind: str = "success") -> None:
    """A notice shown once on the next page. Never put a secret here: the cookie is signed, not encrypted."""
    notices = list(request.session.get(FLASH_SESSION_KEY) or [])
    notices.append({"kind": kind, "message": message})
    request.session[FLASH_SESSION_KEY] = notices[-5:]


def pop_flashes(request: Request) -> list[dict[str, str]]:
    return list(request.session.pop(FLASH_SESSION_KEY, None) or [])
