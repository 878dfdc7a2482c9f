"""The ASGI application: routers, error handling, middleware."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from borealis import __version__, assembly
from borealis.api.deps import get_database
from borealis.api.dynatrace import router as dynatrace_router
from borealis.api.incidents import router as incidents_router
from borealis.api.insights import router as insights_router
from borealis.api.jobs import router as jobs_router
from borealis.api.notifications import router as notifications_router
from borealis.api.problems import router as problems_router
from borealis.api.rca import router as rca_router
from borealis.api.sync import router as sync_router
from borealis.api.workspaces import router as workspaces_router
from borealis.config import Settings, get_settings
from borealis.crypto import SecretBox
from borealis.db import Database
from borealis.errors import BorealisError
from borealis.ingest.webhook import get_writer as get_webhook_writer
from borealis.ingest.webhook import router as webhook_router
from borealis.logs import AccessLogMiddleware
from borealis.middleware import INTERNAL_ERROR, BodyLimitMiddleware, RequestIdMiddleware, request_id_var
from borealis.observability import metrics_router
from borealis.schemas import error_responses
from borealis.web import install as install_web

logger = logging.getLogger("borealis.http")


def make_secret_box(settings: Settings) -> SecretBox:
    if settings.secret_key:
        return SecretBox.from_passphrase(settings.secret_key)
    return SecretBox.from_key_file(settings.data_dir)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The webhook writer starts with the server, so follow-ups a stopped process left behind are
    # carried out at once.
    writer = get_webhook_writer(app)
    await writer.start()
    # What is loaded by now lives as long as the process: leave it out of every garbage collection,
    # which then only walks what requests allocate (a full pass over all of it costs tens of ms).
    gc.collect()
    gc.freeze()
    yield
    await writer.stop()


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    assembly.install()
    settings = settings or get_settings()
    database = database or Database(settings.effective_database_url)
    secret_box = make_secret_box(settings)

    app = FastAPI(
        lifespan=_lifespan,
        title="Borealis",
        version=__version__,
        description="Dynatrace problems into incidents with an evidence-backed root-cause analysis.",
    )
    app.state.settings = settings
    app.state.database = database
    app.state.secret_box = secret_box

    install_web(app)  # first: pages answer browsers on paths they share with the API
    app.include_router(dynatrace_router)
    # After the routes it shares a prefix with (POST /dynatrace/webhook/install); the server answers
    # deliveries ahead of all this (``server.py``), the route documents them and serves them elsewhere.
    app.include_router(webhook_router)
    app.include_router(problems_router)
    app.include_router(incidents_router)
    app.include_router(rca_router)
    app.include_router(sync_router)
    app.include_router(jobs_router)
    app.include_router(workspaces_router)
    app.include_router(insights_router)
    app.include_router(notifications_router)
    app.include_router(metrics_router)
    app.add_api_route("/healthz", healthz, methods=["GET"], tags=["health"])
    app.add_api_route("/readyz", readyz, methods=["GET"], tags=["health"], responses=error_responses(503))

    _install_error_handlers(app)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_box.derive("session-cookie"),
        session_cookie="borealis_session",
        same_site="lax",
        https_only=bool(settings.public_base_url and settings.public_base_url.startswith("https://")),
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


def readyz(request: Request) -> JSONResponse:
    """The database answers."""
    try:
        with get_database(request).engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        logger.warning("readiness check failed: %s", type(exc).__name__)
        return error_response(503, "not_ready", "the database is not reachable")
    return JSONResponse({"status": "ready"})


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    request_id = request_id_var.get()
    if request_id:
        body["error"]["requestId"] = request_id
    return JSONResponse(body, status_code=status)


def _describe_validation(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    fields = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        field = ".".join(location) or "body"
        fields.append({"field": field, "message": error.get("msg", "invalid")})
    message = "; ".join(f"{item['field']}: {item['message']}" for item in fields) or "invalid request"
    return message, fields


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BorealisError)
    async def _borealis_error(_request: Request, exc: BorealisError) -> JSONResponse:
        return error_response(exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, fields = _describe_validation(list(exc.errors()))
        return error_response(422, "invalid_input", message, {"fields": fields})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "no such endpoint; see /docs", 405: "method not allowed on this endpoint"}
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code not in messages else None
        return error_response(
            exc.status_code, f"http_{exc.status_code}", message or messages.get(exc.status_code, "error")
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error: %s", type(exc).__name__)
        return error_response(500, "internal_error", INTERNAL_ERROR)
