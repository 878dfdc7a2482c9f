"""Cross-site request forgery: what a write authenticated by the session cookie must also prove.

A cookie rides along with any request the browser sends, whoever made the page that sends it, and
``SameSite=Lax`` does not stop a sibling subdomain or port. So a cookie-authenticated write must carry
the session's token (a form field or the ``X-CSRF-Token`` header, which another site cannot read) and
come from our own origin. An API key is never sent by a browser on its own, so it needs neither.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request

from borealis.errors import Forbidden

CSRF_SESSION_KEY = "csrf"
CSRF_FORM_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfRejected(Forbidden):
    code = "csrf_rejected"


def session_token(request: Request) -> str:
    """The session's token, created on first use; every form and the UI's script carry it back."""
    token = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


def verify(request: Request, *, sent: str | None, origin_required: bool) -> None:
    """Refuse the write unless ``sent`` is the session's token and the request comes from our origin.

    ``origin_required``: a write through the JSON API comes from the UI's script, and a browser's
    ``fetch`` always names its origin; a form post may lose it to a privacy setting, and its token
    is checked all the same. A page route checks its form first; the caller lookup then knows."""
    if getattr(request.state, "csrf_verified", False):
        return
    origin = _request_origin(request)
    if origin is None and origin_required:
        raise CsrfRejected(
            "a request signed in by the session cookie must come from this site's pages: "
            "the Origin or Referer header is missing. Scripts and tools should send an API key instead."
        )
    if origin is not None and origin not in _own_hosts(request):
        raise CsrfRejected(
            f"a request from {origin!r} cannot use this site's session; use an API key for cross-site calls"
        )
    expected = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(expected, sent):
        raise CsrfRejected(
            "The CSRF token is missing or stale. Reload the page and try again; a script sends "
            f"'{CSRF_HEADER}' with the page's csrf-token meta tag, a tool an API key."
        )
    request.state.csrf_verified = True


def _request_origin(request: Request) -> str | None:
    """The host (and port) the request says it came from: ``Origin``, else ``Referer``."""
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            # "null" (a sandboxed or privacy-stripped origin) names no host and never matches.
            return urlsplit(value).netloc.lower() if value != "null" else "null"
    return None


def _own_hosts(request: Request) -> set[str]:
    """The hosts this site is reached at: the one the browser asked for and the public URL."""
    hosts = {request.headers.get("host", "").lower()}
    public = request.app.state.settings.public_base_url
    if public:
        hosts.add(urlsplit(public).netloc.lower())
    hosts.discard("")
    return hosts
