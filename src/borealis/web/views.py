"""Page routes: thin, calling the same service functions as the JSON API."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from borealis.api.deps import (
    AppSettings,
    Caller,
    CurrentCaller,
    DbSession,
    Owner,
    current_session_id,
    get_caller,
)
from borealis.auth import service as auth_service
from borealis.auth import sessions as sessions_service
from borealis.auth.throttle import LoginLocked
from borealis.config import Settings
from borealis.dynatrace import service as dynatrace_service
from borealis.errors import BorealisError
from borealis.incidents import service as incidents_service
from borealis.incidents.schemas import CorrelationSettingsUpdate
from borealis.web import alerts as alerts_pages
from borealis.web import dynatrace as dynatrace_pages
from borealis.web import incidents as incidents_pages
from borealis.web import insights as insights_pages
from borealis.web import service
from borealis.web import workspaces as workspace_pages
from borealis.web.routing import PageRoute
from borealis.web.security import end_session, flash, start_session, verify_csrf
from borealis.web.templating import STATIC_DIR, render
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Role

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])

FormText = Annotated[str, Form()]


def install(app: FastAPI) -> None:
    """Serve the pages and their static files. Include before the API routers: a page path that the
    API shares is then answered by the page for browsers and by the API for everyone else."""
    app.include_router(router)
    app.include_router(dynatrace_pages.router)
    app.include_router(workspace_pages.router)
    app.include_router(insights_pages.router)
    app.include_router(alerts_pages.router)
    app.include_router(incidents_pages.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a login link must not send anyone elsewhere."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


@router.get("/")
def home(request: Request, db_session: DbSession) -> Response:
    """Where a visitor starts: set-up, login, connecting Dynatrace, or the incidents once connected."""
    if service.setup_open(db_session=db_session):
        return _see_other("/setup")
    try:
        caller = get_caller(request, db_session)
    except BorealisError:
        return _see_other("/login")
    connection = dynatrace_service.get(db_session=db_session, workspace_id=caller.workspace_id)
    return _see_other("/incidents" if connection is not None and connection.connected else "/dynatrace")


@router.get("/setup")
def setup_page(request: Request, db_session: DbSession) -> Response:
    if not service.setup_open(db_session=db_session):
        return _see_other("/login")
    return render(request, "setup.html", {"title": "Set up Borealis", "email": "", "error": None})


@router.post("/setup")
def setup_submit(
    request: Request,
    db_session: DbSession,
    email: FormText = "",
    password: FormText = "",
    password_confirmation: FormText = "",
) -> Response:
    if not service.setup_open(db_session=db_session):
        flash(request, "Borealis is already set up. Log in with your account.", "info")
        return _see_other("/login")
    try:
        user = service.create_first_admin(
            db_session=db_session, email=email, password=password, confirmation=password_confirmation
        )
    except BorealisError as exc:
        context = {"title": "Set up Borealis", "email": email, "error": exc.message}
        return render(request, "setup.html", context, status_code=exc.status_code)
    start_session(request, db_session=db_session, user_id=user.id)
    db_session.commit()
    flash(request, f"Welcome! You are signed in as {user.email}. Next: connect Dynatrace.")
    return _see_other("/")


@router.get("/login")
def login_page(request: Request, db_session: DbSession, next: str = "/") -> Response:
    if service.setup_open(db_session=db_session):
        return _see_other("/setup")
    context = {"title": "Log in", "email": "", "next": _safe_next(next), "error": None}
    return render(request, "login.html", context)


@router.post("/login")
def login_submit(
    request: Request,
    db_session: DbSession,
    settings: AppSettings,
    email: FormText = "",
    password: FormText = "",
    next: FormText = "/",
) -> Response:
    context = {"title": "Log in", "email": email, "next": _safe_next(next)}
    address = request.client.host if request.client else None
    try:
        user = auth_service.log_in(
            db_session=db_session, email=email, password=password, address=address, settings=settings
        )
    except LoginLocked as exc:
        db_session.commit()  # the failure that started the lock, if this one did
        response = render(request, "login.html", context | {"error": exc.message}, status_code=429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        db_session.commit()  # the failure counted
        error = "That email and password do not match an account. Check both and try again."
        return render(request, "login.html", context | {"error": error}, status_code=401)
    workspaces_service.ensure_one(db_session=db_session, user=user)
    start_session(request, db_session=db_session, user_id=user.id)
    db_session.commit()  # the session, the account's count reset and a password hash upgraded
    return _see_other(_safe_next(next))


@router.post("/logout")
def logout(request: Request, db_session: DbSession) -> Response:
    end_session(request, db_session=db_session)
    db_session.commit()
    flash(request, "You are logged out.", "info")
    return _see_other("/login")


# Each correlation signal and what it means, in the order the settings page lists them.
SIGNALS: list[tuple[str, str]] = [
    ("root_cause", "Same root-cause entity"),
    ("entities", "Overlapping impacted entities"),
    ("topology", "Related in the entity topology (calls, runs on, process of)"),
    ("tags", "Shared tags"),
    ("management_zones", "Shared management zones"),
    ("title", "Similar titles"),
    ("time", "Started close together (supports the other signals)"),
]


def _llm_status(settings: Settings) -> dict[str, Any]:
    """What the page may say about the LLM: the model and the host, never the key."""
    if not settings.llm_enabled:
        return {"enabled": False}
    return {
        "enabled": True,
        "model": settings.llm_model,
        "host": urlsplit(settings.llm_base_url or "").netloc,
    }


def _settings_page(
    request: Request,
    db_session: DbSession,
    caller: Caller,
    settings: Settings,
    *,
    new_key: str | None = None,
    status_code: int = 200,
    **extra: object,
) -> Response:
    workspace = workspaces_service.get(db_session=db_session, workspace_id=caller.workspace_id)
    context: dict[str, Any] = {
        "title": "Settings",
        "active": "settings",
        "user": caller.user,
        "me": caller,
        "api_keys": auth_service.list_api_keys(
            db_session=db_session,
            workspace_id=caller.workspace_id,
            user_id=None if caller.may(Role.OWNER) else caller.user.id,
        ),
        "new_key": new_key,
        "key_error": None,
        "password_error": None,
        "sessions": sessions_service.list_live(db_session=db_session, user=caller.user, settings=settings),
        "current_session_id": current_session_id(request),
        "correlation": incidents_service.get_settings(
            db_session=db_session, workspace_id=caller.workspace_id
        ),
        "rca_enabled": workspace.rca_enabled if workspace else False,
        "write_back": workspace.write_back if workspace else False,
        "write_back_reason": dynatrace_service.write_back_reason(
            workspace=workspace,
            connection=dynatrace_service.get(db_session=db_session, workspace_id=caller.workspace_id),
        ),
        "owner": caller.may(Role.OWNER),
        "correlation_errors": {},
        "signals": SIGNALS,
        "llm": _llm_status(settings),
        "rca_limits": {
            "per_hour": settings.rca_rate_limit_per_hour,
            "debounce": settings.rca_debounce_seconds,
        },
    }
    context.update(extra)
    return render(request, "settings.html", context, status_code=status_code)


@router.get("/settings")
def settings_page(
    request: Request, db_session: DbSession, caller: CurrentCaller, settings: AppSettings
) -> Response:
    return _settings_page(request, db_session, caller, settings)


@router.post("/settings/rca")
def settings_rca(
    request: Request,
    db_session: DbSession,
    caller: Owner,
    rca_enabled: Annotated[str | None, Form()] = None,
    write_back: Annotated[str | None, Form()] = None,
) -> Response:
    for name, value in (("rca_enabled", rca_enabled), ("write_back", write_back)):
        workspace = workspaces_service.set_switch(
            db_session=db_session,
            name=name,
            workspace_id=caller.workspace_id,
            enabled=value is not None,
            actor=caller.actor,
        )
    db_session.commit()
    state = "on: every new incident gets a root-cause analysis" if workspace.rca_enabled else "off"
    back = "written onto the Dynatrace problems" if workspace.write_back else "kept in Borealis only"
    flash(request, f"Automatic root-cause analysis is {state}. Reports are {back}.")
    return _see_other("/settings")


@router.post("/settings/api-keys")
def settings_create_api_key(
    request: Request, db_session: DbSession, caller: CurrentCaller, settings: AppSettings, name: FormText = ""
) -> Response:
    if len(name.strip()) > 200:
        return _settings_page(
            request,
            db_session,
            caller,
            settings,
            key_error="A key name has at most 200 characters.",
            status_code=422,
        )
    _, plain = auth_service.create_api_key(
        db_session=db_session,
        user=caller.user,
        workspace_id=caller.workspace_id,
        actor=caller.actor,
        name=name or "default",
    )
    db_session.commit()
    return _settings_page(request, db_session, caller, settings, new_key=plain, status_code=201)


Checkbox = Annotated[str | None, Form()]


@router.post("/settings/correlation")
def settings_correlation(
    request: Request,
    db_session: DbSession,
    caller: Owner,
    settings: AppSettings,
    window_minutes: FormText = "",
    threshold: FormText = "",
    max_hops: FormText = "",
    root_cause: Checkbox = None,
    entities: Checkbox = None,
    topology: Checkbox = None,
    tags: Checkbox = None,
    management_zones: Checkbox = None,
    title: Checkbox = None,
    time: Checkbox = None,
) -> Response:
    numbers = {"window_minutes": window_minutes, "threshold": threshold, "max_hops": max_hops}
    checked = (root_cause, entities, topology, tags, management_zones, title, time)
    signals = {name: value is not None for (name, _), value in zip(SIGNALS, checked, strict=True)}
    try:
        update = CorrelationSettingsUpdate.model_validate(
            {**{name: value.strip() or None for name, value in numbers.items()}, "signals": signals}
        )
    except ValidationError as exc:
        errors = {
            str(error["loc"][0]): f"{error['msg']}; you entered {error.get('input')!r}."
            for error in exc.errors()
        }
        return _settings_page(
            request, db_session, caller, settings, correlation_errors=errors, status_code=422
        )
    current = incidents_service.get_settings(db_session=db_session, workspace_id=caller.workspace_id)
    changes = update.model_dump(exclude_none=True, exclude={"signals"}) | signals
    incidents_service.put_settings(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=replace(current, **changes),
        actor=caller.actor,
    )
    db_session.commit()
    flash(request, "Correlation settings saved. They apply to problems arriving from now on.")
    return _see_other("/settings#correlation")


@router.post("/settings/api-keys/{key_id}/revoke")
def settings_revoke_api_key(
    request: Request, db_session: DbSession, caller: CurrentCaller, key_id: str
) -> Response:
    api_key = auth_service.revoke_api_key(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        key_id_or_prefix=key_id,
        actor=caller.actor,
        # An owner may revoke any key of the workspace; others their own.
        user_id=None if caller.may(Role.OWNER) else caller.user.id,
    )
    db_session.commit()
    flash(request, f"API key {api_key.prefix}… ({api_key.name}) is revoked.")
    return _see_other("/settings")


@router.post("/settings/password")
def settings_change_password(
    request: Request,
    db_session: DbSession,
    caller: CurrentCaller,
    settings: AppSettings,
    current_password: FormText = "",
    new_password: FormText = "",
    new_password_confirmation: FormText = "",
) -> Response:
    # Proved like a login, throttle included: a borrowed session must not become a way to guess it.
    try:
        proven = auth_service.log_in(
            db_session=db_session,
            email=caller.user.email,
            password=current_password,
            address=request.client.host if request.client else None,
            settings=settings,
        )
    except LoginLocked as exc:
        db_session.commit()
        response = _settings_page(
            request, db_session, caller, settings, password_error=exc.message, status_code=429
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if proven is None or proven.id != caller.user.id:
        db_session.commit()  # the failure counts against the account
        error = "Your current password is not that. Nothing was changed."
        return _settings_page(request, db_session, caller, settings, password_error=error, status_code=422)
    try:
        ended = service.change_password(
            db_session=db_session,
            user=caller.user,
            password=new_password,
            confirmation=new_password_confirmation,
            keep_session_id=current_session_id(request),
        )
    except BorealisError as exc:
        return _settings_page(
            request, db_session, caller, settings, password_error=exc.message, status_code=exc.status_code
        )
    db_session.commit()
    message = "Your password is changed."
    if ended:
        sessions_ended = f"{ended} other session{'s are' if ended != 1 else ' is'}"
        message += f" {sessions_ended} ended: those browsers must log in again."
    flash(request, message)
    return _see_other("/settings#password")


@router.post("/settings/sessions/{session_id}/revoke")
def settings_revoke_session(
    request: Request, db_session: DbSession, caller: CurrentCaller, session_id: str
) -> Response:
    ended = sessions_service.revoke(db_session=db_session, user=caller.user, session_id=session_id)
    if ended.id == current_session_id(request):
        end_session(request, db_session=db_session)
        db_session.commit()
        flash(request, "This session is ended: you are logged out.", "info")
        return _see_other("/login")
    db_session.commit()
    where = f" from {ended.address}" if ended.address else ""
    flash(request, f"The session{where} is ended: that browser must log in again.")
    return _see_other("/settings#sessions")
