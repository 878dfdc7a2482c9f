"""How the simulated environment answers HTTP: its endpoint registry, routing, and error envelopes.

Adding an endpoint (events, logs, metrics, settings): write a handler ``(fake, request) -> Response`` and
register it with ``@endpoint("GET", "/api/v2/events", scope="events.read")``. Every route first records
the request, then plays an injected failure (``FakeDynatrace.fail``), then authenticates the token like
Dynatrace (401 for an unknown, disabled or expired token, 403 naming the missing scope).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from borealis.server import running_in_thread
from borealis.simulation.selectors import SelectorError

if TYPE_CHECKING:
    from borealis.simulation.store import FakeDynatrace

NOT_FOUND_PAGE = (
    "<!DOCTYPE html><html><head><title>Dynatrace</title></head><body>Page not found</body></html>"
)


@dataclass
class RecordedRequest:
    """One request as the environment received it, for tests to inspect."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


Handler = Callable[["FakeDynatrace", Request], Awaitable[Response] | Response]


@dataclass
class _Endpoint:
    method: str
    path: str
    handler: Handler
    scope: str | None


_ENDPOINTS: list[_Endpoint] = []


def endpoint(method: str, path: str, *, scope: str | None) -> Callable[[Handler], Handler]:
    """Register a handler for ``path`` (relative to the environment root); ``scope=None``: any token."""

    def register(handler: Handler) -> Handler:
        _ENDPOINTS.append(_Endpoint(method, path, handler, scope))
        return handler

    return register


def dt_error(status: int, message: str, **extra: Any) -> JSONResponse:
    """Dynatrace's error envelope."""
    return JSONResponse({"error": {"code": status, "message": message, **extra}}, status_code=status)


def selector_error(exc: SelectorError, parameter: str = "entitySelector") -> JSONResponse:
    """A refused selector in Dynatrace's envelope, naming the query parameter."""
    return dt_error(
        400,
        str(exc),
        constraintViolations=[{"path": parameter, "message": str(exc), "parameterLocation": "QUERY"}],
    )


def _dispatch(fake: FakeDynatrace, spec: _Endpoint) -> Callable[[Request], Awaitable[Response]]:
    """The route of one endpoint: the environment id, the record of the request, an injected failure,
    the token, then the handler."""

    async def run(request: Request) -> Response:
        environment_id = request.path_params.pop("environment_id", None)
        if environment_id is not None and environment_id != fake.environment_id:
            return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
        if environment_id is None and fake.managed:
            return HTMLResponse(NOT_FOUND_PAGE, status_code=404)
        path = request.url.path
        if environment_id is not None:
            path = path[len(f"/e/{environment_id}") :]
        request.scope["fake_path"] = spec.path
        body = await request.body()
        with fake.lock:
            fake.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=path,
                    params=dict(request.query_params),
                    headers=dict(request.headers),
                    body=body,
                )
            )
        failure = fake.take_failure(request.method, path)
        if failure is not None:
            if failure.delay:
                await asyncio.sleep(failure.delay)
            if failure.html:
                return HTMLResponse(
                    "<!DOCTYPE html><html><body><h1>Sign in</h1></body></html>",
                    status_code=failure.status or 200,
                    headers=failure.headers,
                )
            if failure.status is not None:
                if failure.body is None:
                    return JSONResponse(
                        {"error": {"code": failure.status, "message": "Injected failure"}},
                        status_code=failure.status,
                        headers=failure.headers,
                    )
                if isinstance(failure.body, str | bytes):
                    return Response(failure.body, status_code=failure.status, headers=failure.headers)
                return JSONResponse(failure.body, status_code=failure.status, headers=failure.headers)
        auth = fake.authenticate(request, spec.scope)
        if isinstance(auth, Response):
            return auth
        request.state.token = auth
        result = spec.handler(fake, request)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    return run


def build_app(fake: FakeDynatrace) -> Starlette:
    """Every registered endpoint, at the root (SaaS) and under ``/e/{environment_id}`` (Managed)."""
    from borealis.simulation import api, api_comments, api_metrics, api_settings  # noqa: F401  (they register endpoints)

    routes: list[Route] = []
    for spec in _ENDPOINTS:
        handler = _dispatch(fake, spec)
        routes.append(Route(spec.path, handler, methods=[spec.method]))
        routes.append(Route("/e/{environment_id}" + spec.path, handler, methods=[spec.method]))

    async def not_found(request: Request, exc: Exception) -> Response:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404)

    return Starlette(routes=routes, exception_handlers={404: not_found})


async def json_body(request: Request) -> dict[str, Any] | Response:
    """The request's JSON object, or the 400 Dynatrace answers for anything else."""
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return dt_error(400, "Could not map JSON at '' near line 1 column 1")
    if not isinstance(body, dict):
        return dt_error(400, "The request body must be a JSON object")
    return body


@contextmanager
def serving(app: Starlette, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` in a thread on a port the kernel chooses until the block ends; yields its URL."""
    config = uvicorn.Config(app, log_level="warning", access_log=False, log_config=None)
    with running_in_thread(config, host=host) as server:
        yield server.url
