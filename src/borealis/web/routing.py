"""Pages share paths with the JSON API (``/dynatrace/alerts``, ``/incidents``): a page answers only a
browser, so the API keeps every other client. Errors on a page become an HTML page, never JSON."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from borealis.errors import BorealisError, NotAuthenticated
from borealis.web.templating import render

logger = logging.getLogger("borealis.web")

_FORM_TYPES = (b"application/x-www-form-urlencoded", b"multipart/form-data")


def wants_page(scope: Scope) -> bool:
    """A browser navigation (GET asking for HTML) or a form submitted from a page."""
    headers = dict(scope.get("headers") or ())
    if scope.get("method") in ("GET", "HEAD"):
        return b"text/html" in headers.get(b"accept", b"")
    # An API client sends its key; a browser form never does, so such a request stays with the API.
    if b"authorization" in headers:
        return False
    return headers.get(b"content-type", b"").split(b";")[0].strip() in _FORM_TYPES


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/"
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)


class PageRoute(APIRoute):
    """A route that serves HTML to browsers and stays out of the JSON API's way."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") != "http" or not wants_page(scope):
            return Match.NONE, {}
        return super().matches(scope)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except NotAuthenticated:
                return login_redirect(request)
            except BorealisError as exc:
                response = render(
                    request,
                    "error.html",
                    {"title": _TITLES.get(exc.status_code, "Something is wrong"), "message": exc.message},
                    status_code=exc.status_code,
                )
            except HTTPException as exc:
                # The framework's own refusals, such as a form body it cannot parse.
                if isinstance(exc.__cause__, BorealisError):  # a body over the limit, say
                    exc = HTTPException(exc.__cause__.status_code, exc.__cause__.message)
                detail = exc.detail if isinstance(exc.detail, str) else "The request could not be read."
                response = render(
                    request,
                    "error.html",
                    {"title": _TITLES.get(exc.status_code, "Not a valid request"), "message": detail},
                    status_code=exc.status_code,
                )
            except RequestValidationError:
                response = render(
                    request,
                    "error.html",
                    {"title": "Not a valid request", "message": "Part of the address or form is invalid."},
                    status_code=422,
                )
            except Exception as exc:
                logger.exception("page %s failed: %s", request.url.path, type(exc).__name__)
                response = render(
                    request,
                    "error.html",
                    {"title": "Something went wrong", "message": "Something went wrong on our side."},
                    status_code=500,
                )
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return page_handler


_TITLES = {
    400: "Not a valid request",
    403: "Not allowed",
    404: "Not found",
    409: "Already done",
    413: "Too large",
    422: "Please check the input",
}
