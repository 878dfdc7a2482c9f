"""Jinja2 set-up: one environment, the helpers every template uses, and the headers every page gets."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from borealis import csrf
from borealis.api.deps import SESSION_USER_KEY
from borealis.units import spoken_duration
from borealis.web.security import pop_flashes
from borealis.workspaces import service as workspaces_service

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"

# Scripts and styles come only from our own /static: no inline code, nothing third-party.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# (key, label, path): the main sections, in the order they appear in the header.
NAVIGATION: list[tuple[str, str, str]] = [
    ("incidents", "Incidents", "/incidents"),
    ("alerts", "Alerts", "/dynatrace/alerts"),
    ("dynatrace", "Dynatrace", "/dynatrace"),
    ("insights", "Insights", "/insights"),
    ("members", "Members", "/members"),
    ("settings", "Settings", "/settings"),
]


@cache
def static_url(name: str) -> str:
    """The file's URL with a content hash, so a new release is never served from a stale cache."""
    content = (STATIC_DIR / name).read_bytes()
    return f"/static/{name}?v={hashlib.sha256(content).hexdigest()[:10]}"


def duration(seconds: float | None) -> Markup:
    """A span of time as people say it (``units.spoken_duration``); a dash when not yet."""
    if seconds is None:
        return Markup('<span class="muted">—</span>')
    return escape(spoken_duration(seconds))


def time_tag(value: datetime | None, style: str = "local") -> Markup:
    """A <time> the browser rewrites into the viewer's zone; UTC text until the script runs."""
    if value is None:
        return Markup('<span class="muted">never</span>')
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    iso = value.isoformat().replace("+00:00", "Z")
    text = value.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}" data-time="{}" title="{}">{}</time>').format(
        iso, escape(style), text, text
    )


def external_url(value: str | None) -> str | None:
    """A link taken from a payload, only if it is http(s): ``javascript:`` and the like are dropped."""
    if isinstance(value, str) and value.strip().lower().startswith(("https://", "http://")):
        return value.strip()
    return None


def css_token(value: object) -> str:
    """A Dynatrace value (AVAILABILITY, OPEN, ...) as a class-name suffix."""
    return re.sub(r"[^a-z0-9_-]", "", str(value or "").lower()) or "unknown"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["static_url"] = static_url
    env.globals["navigation"] = NAVIGATION
    env.filters["time"] = time_tag
    env.filters["duration"] = duration
    env.filters["external_url"] = external_url
    env.filters["css_token"] = css_token
    return env


ENVIRONMENT = _environment()


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    """A page: the template with the request, the CSRF token and pending notices, plus our headers."""
    # ``me``: the signed-in caller (the name ``caller`` belongs to Jinja's macro calls).
    values: dict[str, Any] = {"user": None, "me": None, "active": "", "title": "Borealis", "wide": False}
    values.update(context or {})
    values["request"] = request
    values["signed_in"] = bool(request.session.get(SESSION_USER_KEY))
    values["csrf_token"] = token = csrf.session_token(request)
    values["csrf_input"] = Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)
    values["flashes"] = pop_flashes(request)
    me = values["me"]
    values["workspaces"] = []
    if me is not None:
        # The header's switcher: the member's workspaces, in a short read of its own.
        with request.app.state.database.session() as db_session:
            values["workspaces"] = workspaces_service.for_user(db_session=db_session, user_id=me.user.id)
    html = ENVIRONMENT.get_template(name).render(values)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
