"""Browser-session safety: the per-session CSRF token and one-time notices kept in the signed cookie."""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request

from borealis.deps import SESSION_USER_KEY
from borealis.errors import Forbidden

CSRF_SESSION_KEY = "csrf"
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
FLASH_SESSION_KEY = "flash"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRejected(Forbidden):
    code = "csrf_rejected"


def csrf_token(request: Request) -> str:
    """The session's token, created on first use; every form carries it back."""
    token = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing request whose form field or header does not carry the session's token.

    Installed on the whole page router, so no form can forget it."""
    if request.method in _SAFE_METHODS:
        return
    expected = request.session.get(CSRF_SESSION_KEY)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FORM_FIELD)
        sent = value if isinstance(value, str) else None
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise CsrfRejected(
            "This form has expired or did not come from this site. Reload the page and try again."
        )


def start_session(request: Request, user_id: str) -> None:
    """Log in: a fresh session (and CSRF token), so nothing from before the login carries over."""
    request.session.clear()
    request.session[SESSION_USER_KEY] = user_id
    csrf_token(request)


def end_session(request: Request) -> None:
    request.session.clear()


def flash(request: Request, message: str, kind: str = "success") -> None:
    """A notice shown once on the next page. Never put a secret here: the cookie is signed, not encrypted."""
    notices = list(request.session.get(FLASH_SESSION_KEY) or [])
    notices.append({"kind": kind, "message": message})
    request.session[FLASH_SESSION_KEY] = notices[-5:]


def pop_flashes(request: Request) -> list[dict[str, str]]:
    return list(request.session.pop(FLASH_SESSION_KEY, None) or [])
