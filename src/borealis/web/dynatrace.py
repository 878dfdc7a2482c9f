"""The Dynatrace pages: connect, the connection's status, and the webhook set-up."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import RedirectResponse

from borealis.api.deps import AppSettings, Caller, CurrentCaller, DbSession, Owner, Secrets
from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.dynatrace import install, service
from borealis.dynatrace.models import Connection
from borealis.dynatrace.notifications import INSTALL_SCOPES
from borealis.dynatrace.template import SUGGESTED_PAYLOAD
from borealis.errors import BorealisError
from borealis.web.routing import PageRoute
from borealis.web.security import flash, verify_csrf
from borealis.web.templating import render
from borealis.workspaces.models import Role

router = APIRouter(route_class=PageRoute, include_in_schema=False, dependencies=[Depends(verify_csrf)])

FormText = Annotated[str, Form()]

# The URL forms a user can paste, from the seed's "Supported Environments".
URL_EXAMPLES = [
    ("SaaS", "https://{env-id}.live.dynatrace.com"),
    ("Managed", "https://{your-domain}/e/{environment-id}"),
    ("Gov Cloud and other custom domains", None),
]


def _reachable_from_outside(base: str) -> bool:
    """False for loopback and private addresses: Dynatrace SaaS cannot call those."""
    host = urlsplit(base).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return address.is_global


def _webhook(
    request: Request, connection: Connection, settings: Settings, secret_box: SecretBox
) -> dict[str, Any]:
    base = service.webhook_base(settings=settings, request_base=str(request.base_url))
    url = service.webhook_url(connection=connection, secret_box=secret_box, base=base)
    plain_url = base + service.webhook_path(connection=connection)
    return {
        "can_install": all(scope in (connection.token_scopes or []) for scope in INSTALL_SCOPES),
        "installed": connection.notification_object_id is not None,
        "url": url,
        "public": _reachable_from_outside(base),
        "plain_url": plain_url,
        "payload": SUGGESTED_PAYLOAD,
        "settings_page": (
            f"{connection.environment_url}/ui/settings/integration/notifications"
            if connection.environment_url
            else None
        ),
    }


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _scope_rows(granted: list[str]) -> list[dict[str, Any]]:
    rows = [
        {"scope": scope, "enables": enables, "granted": scope in granted, "optional": False}
        for scope, enables in service.SCOPES.items()
    ]
    rows.append(
        {
            "scope": service.VERSION_SCOPE,
            "enables": "show the Dynatrace cluster version (optional)",
            "granted": service.VERSION_SCOPE in granted,
            "optional": True,
        }
    )
    return rows


def _connect_page(
    request: Request,
    db_session: DbSession,
    caller: Caller,
    settings: Settings,
    secret_box: SecretBox,
    *,
    environment_url: str = "",
    error: BorealisError | None = None,
) -> Response:
    connection = service.get(db_session=db_session, workspace_id=caller.workspace_id)
    connected = connection is not None and connection.connected
    scopes = list(connection.token_scopes or []) if connected and connection else []
    context: dict[str, Any] = {
        "title": "Dynatrace",
        "active": "dynatrace",
        "user": caller.user,
        "me": caller,
        "connection": connection,
        "connected": connected,
        "scopes": _scope_rows(scopes if connected else []),
        "warnings": (
            service.warnings(
                scopes=scopes, expires_at=connection.token_expires_at, version=connection.cluster_version
            )
            if connected and connection
            else []
        ),
        "url_examples": URL_EXAMPLES,
        "environment_url": environment_url or (connection.environment_url if connection else ""),
        "error": error.message if error else None,
        "error_field": (error.details or {}).get("field") if error else None,
        # The webhook URL carries its secret: owners only, as in the API.
        "owner": caller.may(Role.OWNER),
        "webhook": (
            _webhook(request, connection, settings, secret_box)
            if connected and connection and caller.may(Role.OWNER)
            else None
        ),
        "test_report": connection.last_test_report if connection else None,
    }
    return render(request, "dynatrace.html", context, status_code=error.status_code if error else 200)


@router.get("/dynatrace")
def connect_page(
    request: Request, db_session: DbSession, caller: CurrentCaller, settings: AppSettings, secret_box: Secrets
) -> Response:
    return _connect_page(request, db_session, caller, settings, secret_box)


@router.post("/dynatrace")
def connect_submit(
    request: Request,
    db_session: DbSession,
    caller: Owner,
    settings: AppSettings,
    secret_box: Secrets,
    environment_url: FormText = "",
    api_token: FormText = "",
) -> Response:
    workspace_id = caller.workspace_id
    db_session.close()  # no transaction (and no SQLite write lock) while Dynatrace answers
    try:
        checked = service.check_token(environment_url=environment_url, api_token=api_token, settings=settings)
        connection = service.save(
            db_session=db_session,
            workspace_id=workspace_id,
            checked=checked,
            secret_box=secret_box,
            actor=caller.actor,
        )
    except BorealisError as exc:
        db_session.rollback()
        return _connect_page(
            request, db_session, caller, settings, secret_box, environment_url=environment_url, error=exc
        )
    db_session.commit()
    flash(request, f"Connected to {connection.environment_url}.")
    if checked.version_error:
        flash(request, checked.version_error, "warning")
    return RedirectResponse("/dynatrace", status_code=303)


@router.post("/dynatrace/disconnect")
def disconnect_submit(
    request: Request, db_session: DbSession, caller: Owner, settings: AppSettings, secret_box: Secrets
) -> Response:
    _, removal = install.disconnect(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=settings,
        secret_box=secret_box,
        actor=caller.actor,
    )
    db_session.commit()
    flash(request, "Dynatrace is disconnected and the token is deleted. Problems and incidents stay.", "info")
    if removal is not None:
        flash(request, _sentence(removal.message), "info" if removal.removed else "warning")
    return RedirectResponse("/dynatrace", status_code=303)


@router.post("/dynatrace/webhook/install")
def install_submit(
    request: Request, db_session: DbSession, caller: Owner, settings: AppSettings, secret_box: Secrets
) -> Response:
    try:
        outcome = install.install(
            db_session=db_session,
            workspace_id=caller.workspace_id,
            settings=settings,
            secret_box=secret_box,
            request_base=str(request.base_url),
            alerting_profile=None,
            actor=caller.actor,
        )
    except BorealisError as exc:
        db_session.rollback()
        flash(request, f"The webhook was not installed: {exc.message}", "error")
        return RedirectResponse("/dynatrace#webhook", status_code=303)
    db_session.commit()
    flash(request, outcome.message)
    for warning in outcome.warnings:
        flash(request, _sentence(warning), "warning")
    return RedirectResponse("/dynatrace#webhook", status_code=303)


@router.post("/dynatrace/webhook-url/rotate")
def rotate_submit(
    request: Request, db_session: DbSession, caller: Owner, settings: AppSettings, secret_box: Secrets
) -> Response:
    outcome = install.rotate(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=settings,
        secret_box=secret_box,
        request_base=str(request.base_url),
        actor=caller.actor,
    )
    db_session.commit()
    if outcome is not None and outcome.updated:
        flash(request, "The webhook has a new secret, and the notification installed in Dynatrace sends it.")
        return RedirectResponse("/dynatrace#webhook", status_code=303)
    flash(
        request,
        "The webhook URL has a new secret and the old URL stops working now: paste the new URL into "
        "the Custom Integration in Dynatrace.",
        "warning",
    )
    if outcome is not None:
        flash(request, _sentence(outcome.message), "warning")
    return RedirectResponse("/dynatrace#webhook", status_code=303)
