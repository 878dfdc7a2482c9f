"""The seed's /dynatrace endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from borealis.api.deps import AppSettings, CurrentCaller, DbSession, Owner, Secrets
from borealis.api.schemas import StatusRead, VerifiedStatusRead
from borealis.dynatrace import install, notifications, service
from borealis.dynatrace.models import Connection
from borealis.dynatrace.schemas import (
    AlertingProfileRead,
    AlertingProfilesRead,
    ConnectIn,
    ConnectRead,
    DisconnectRead,
    InstalledNotificationRead,
    MissingScopeRead,
    RcaSettings,
    WebhookInstallIn,
    WebhookInstallRead,
    WebhookRemovalRead,
    WebhookUrlRead,
    WriteBackIn,
    WriteBackRead,
)
from borealis.dynatrace.template import SUGGESTED_PAYLOAD
from borealis.schemas import API_ERRORS, error_responses
from borealis.sync import service as sync_service
from borealis.workspaces import service as workspaces_service
from borealis.workspaces.models import Workspace

router = APIRouter(prefix="/dynatrace", tags=["dynatrace"], responses=API_ERRORS)


@router.get("/rca-settings", response_model=RcaSettings)
def get_rca_settings(caller: CurrentCaller, db_session: DbSession) -> RcaSettings:
    """Whether new incidents of this workspace get an automatic RCA."""
    workspace = workspaces_service.get(db_session=db_session, workspace_id=caller.workspace_id)
    return RcaSettings(rca_enabled=bool(workspace and workspace.rca_enabled))


@router.put("/rca-settings", response_model=RcaSettings, responses=error_responses(400))
def put_rca_settings(settings_in: RcaSettings, caller: Owner, db_session: DbSession) -> RcaSettings:
    """Turn automatic RCA on or off for this workspace (owners)."""
    workspace = workspaces_service.set_switch(
        db_session=db_session,
        name="rca_enabled",
        workspace_id=caller.workspace_id,
        enabled=settings_in.rca_enabled,
        actor=caller.actor,
    )
    db_session.commit()
    return RcaSettings(rca_enabled=workspace.rca_enabled)


def _write_back(workspace: Workspace, connection: Connection | None) -> WriteBackRead:
    return WriteBackRead(
        enabled=workspace.write_back,
        active=service.writes_back(workspace=workspace, connection=connection),
        reason=service.write_back_reason(workspace=workspace, connection=connection),
    )


@router.get("/write-back", response_model=WriteBackRead)
def get_write_back(caller: CurrentCaller, db_session: DbSession) -> WriteBackRead:
    """Whether each finished RCA is written onto the incident's Dynatrace problems as one comment
    (context ``Borealis``, updated on a rerun), and why (not): it needs the workspace's switch (on by
    default) and a token with ``problems.write``."""
    connection = service.get(db_session=db_session, workspace_id=caller.workspace_id)
    return _write_back(caller.workspace, connection)


@router.put("/write-back", response_model=WriteBackRead, responses=error_responses(400))
def put_write_back(body: WriteBackIn, caller: Owner, db_session: DbSession) -> WriteBackRead:
    """Switch the write-back on or off for this workspace (owners)."""
    workspace = workspaces_service.set_switch(
        db_session=db_session,
        name="write_back",
        workspace_id=caller.workspace_id,
        enabled=body.enabled,
        actor=caller.actor,
    )
    db_session.commit()
    connection = service.get(db_session=db_session, workspace_id=caller.workspace_id)
    return _write_back(workspace, connection)


def _missing(scopes: list[str]) -> list[MissingScopeRead]:
    return [MissingScopeRead(scope=m.scope, enables=m.enables) for m in service.missing_scopes(scopes)]


@router.post("/connect", response_model=ConnectRead, responses=error_responses(400, 409, 502, 503, 504))
def connect(
    connect_in: ConnectIn,
    caller: Owner,
    db_session: DbSession,
    settings: AppSettings,
    secret_box: Secrets,
) -> ConnectRead:
    """Validate the environment URL and token with Dynatrace, then store the token encrypted."""
    workspace_id = caller.workspace_id
    # Hold no database transaction (SQLite's write lock) while Dynatrace answers.
    db_session.close()
    checked = service.check_token(
        environment_url=connect_in.environment_url,
        api_token=connect_in.api_token.get_secret_value(),
        settings=settings,
    )
    connection = service.save(
        db_session=db_session,
        workspace_id=workspace_id,
        checked=checked,
        secret_box=secret_box,
        actor=caller.actor,
    )
    db_session.commit()
    found = service.warnings(
        scopes=connection.token_scopes,
        expires_at=connection.token_expires_at,
        version=connection.cluster_version,
    )
    if checked.version_error:
        found.append(checked.version_error)
    return ConnectRead(
        success=True,
        environment_url=connection.environment_url,
        version=connection.cluster_version,
        scopes=connection.token_scopes,
        missing_scopes=_missing(connection.token_scopes),
        token_expires_at=connection.token_expires_at,
        warnings=found,
        connected_at=connection.connected_at,
    )


def _status(connection: Connection | None) -> dict[str, Any]:
    """Every status field, set explicitly (the route leaves out only what was never set)."""
    fields: dict[str, Any] = {
        "connected": False,
        "environment_url": None,
        "version": None,
        "scopes": [],
        "missing_scopes": [],
        "token_expires_at": None,
        "warnings": [],
        "connected_at": None,
        "disconnected_at": None,
        "last_webhook_at": None,
        "last_test_notification_at": None,
        "last_test_notification": None,
        "webhook_configured": False,
        "webhook_installed": False,
        "webhook_install": None,
    }
    if connection is None:
        return fields
    if connection.notification_object_id:
        fields.update(webhook_installed=True, webhook_install=_installed_read(connection))
    fields.update(
        environment_url=connection.environment_url,
        disconnected_at=connection.disconnected_at,
        last_webhook_at=connection.last_webhook_at,
        last_test_notification_at=connection.last_test_notification_at,
        last_test_notification=connection.last_test_report,
        webhook_configured=bool(connection.last_webhook_at or connection.last_test_notification_at),
    )
    if connection.connected:
        scopes = list(connection.token_scopes or [])
        fields.update(
            connected=True,
            version=connection.cluster_version,
            scopes=scopes,
            missing_scopes=_missing(scopes),
            token_expires_at=connection.token_expires_at,
            warnings=service.warnings(
                scopes=scopes, expires_at=connection.token_expires_at, version=connection.cluster_version
            ),
            connected_at=connection.connected_at,
        )
    return fields


@router.get("/status", response_model=VerifiedStatusRead, response_model_exclude_unset=True)
def status(
    caller: CurrentCaller,
    db_session: DbSession,
    settings: AppSettings,
    secret_box: Secrets,
    verify: bool = False,
) -> StatusRead:
    """The connection, its token's scopes and expiry, and the last webhook and test notification.

    With ``verify=true`` the token is checked live: ``tokenValid`` is true or false, or null when
    Dynatrace could not be asked; ``tokenError`` says why.
    """
    connection = service.get(db_session=db_session, workspace_id=caller.workspace_id)
    extra = sync_service.status_fields(
        db_session=db_session, workspace_id=caller.workspace_id, connection=connection
    )
    extra["write_back"] = _write_back(caller.workspace, connection)
    if not verify:
        return StatusRead(**_status(connection), **extra)
    db_session.close()  # no transaction held while Dynatrace answers
    if connection is None or not connection.connected:
        return VerifiedStatusRead(
            **_status(connection),
            **extra,
            token_valid=False,
            token_error="Dynatrace is not connected; connect with POST /dynatrace/connect",
        )
    check = service.verify(connection=connection, settings=settings, secret_box=secret_box)
    fields = _status(connection)
    if check.info is not None:
        scopes = sorted(set(check.info.scopes))
        fields.update(
            scopes=scopes,
            missing_scopes=_missing(scopes),
            token_expires_at=check.info.expires_at,
            warnings=service.warnings(
                scopes=scopes, expires_at=check.info.expires_at, version=connection.cluster_version
            ),
        )
    return VerifiedStatusRead(
        **fields,
        **extra,
        token_valid=check.valid,
        token_error=check.error.message if check.error else None,
    )


def _installed_read(connection: Connection) -> InstalledNotificationRead:
    profile = None
    if connection.notification_profile_id:
        profile = AlertingProfileRead(
            id=connection.notification_profile_id,
            name=connection.notification_profile_name or connection.notification_profile_id,
        )
    return InstalledNotificationRead(
        object_id=connection.notification_object_id or "",
        display_name=notifications.DISPLAY_NAME,
        alerting_profile=profile,
        installed_at=connection.notification_installed_at,
    )


@router.delete("/disconnect", response_model=DisconnectRead, response_model_exclude_none=True)
def disconnect(
    caller: Owner, db_session: DbSession, settings: AppSettings, secret_box: Secrets
) -> DisconnectRead:
    """Forget the stored token. Idempotent; problems, incidents and the webhook URL stay. A problem
    notification Borealis installed is removed from Dynatrace first when the token allows it;
    ``webhookRemoval`` says what happened (the disconnect never fails because of it)."""
    _, removal = install.disconnect(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=settings,
        secret_box=secret_box,
        actor=caller.actor,
    )
    db_session.commit()
    return DisconnectRead(
        success=True,
        connected=False,
        webhook_removal=(
            WebhookRemovalRead(removed=removal.removed, object_id=removal.object_id, message=removal.message)
            if removal
            else None
        ),
    )


def _webhook_read(
    request: Request, connection: Connection, settings: AppSettings, secret_box: Secrets
) -> WebhookUrlRead:
    base = service.webhook_base(settings=settings, request_base=str(request.base_url))
    url = service.webhook_url(connection=connection, secret_box=secret_box, base=base)
    plain_url = base + service.webhook_path(connection=connection)
    secret = service.webhook_secret(connection=connection, secret_box=secret_box)
    return WebhookUrlRead(
        webhook_url=url,
        suggested_payload=SUGGESTED_PAYLOAD,
        instructions=service.webhook_instructions(
            environment_url=connection.environment_url or None, url=url, plain_url=plain_url
        ),
        headers={"Authorization": f"Bearer {secret}"},
    )


@router.get("/webhook-url", response_model=WebhookUrlRead, responses=error_responses(409))
def get_webhook_url(
    request: Request, caller: Owner, db_session: DbSession, settings: AppSettings, secret_box: Secrets
) -> WebhookUrlRead:
    """The secret webhook URL to paste into a Dynatrace Custom Integration, with the payload template and
    the steps. 409 until a Dynatrace environment has been connected."""
    connection = service.require(db_session=db_session, workspace_id=caller.workspace_id)
    return _webhook_read(request, connection, settings, secret_box)


@router.post("/webhook-url/rotate", response_model=WebhookUrlRead, responses=error_responses(409))
def rotate_webhook_url(
    request: Request, caller: Owner, db_session: DbSession, settings: AppSettings, secret_box: Secrets
) -> WebhookUrlRead:
    """Issue a new webhook secret: the old URL stops working now; paste the new one into Dynatrace. A
    notification Borealis installed gets the new secret (``installedNotification`` says how it went)."""
    outcome = install.rotate(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=settings,
        secret_box=secret_box,
        request_base=str(request.base_url),
        actor=caller.actor,
    )
    db_session.commit()
    connection = service.require(db_session=db_session, workspace_id=caller.workspace_id)
    read = _webhook_read(request, connection, settings, secret_box)
    read.installed_notification = outcome.message if outcome else None
    return read


@router.get(
    "/alerting-profiles", response_model=AlertingProfilesRead, responses=error_responses(409, 502, 503, 504)
)
def get_alerting_profiles(
    request: Request, caller: Owner, db_session: DbSession, settings: AppSettings, secret_box: Secrets
) -> AlertingProfilesRead:
    """The environment's alerting profiles (Settings 2.0 ``builtin:alerting.profile``); ``default``
    marks the one an install uses when it names none. Needs ``settings.read``."""
    profiles, default = install.alerting_profiles(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=settings,
        secret_box=secret_box,
        request_base=str(request.base_url),
    )
    return AlertingProfilesRead(
        alerting_profiles=[
            AlertingProfileRead(id=profile.id, name=profile.name, default=profile == default)
            for profile in profiles
        ]
    )


@router.post(
    "/webhook/install",
    response_model=WebhookInstallRead,
    responses=error_responses(400, 409, 502, 503, 504),
)
def install_webhook(
    request: Request,
    caller: Owner,
    db_session: DbSession,
    settings: AppSettings,
    secret_box: Secrets,
    install_in: WebhookInstallIn | None = None,
) -> WebhookInstallRead:
    """Create or update the problem notification 'Borealis' in Dynatrace (Settings 2.0): a WEBHOOK to
    this connection's webhook URL with the secret in a secret ``Authorization`` header, the suggested
    payload, closed problems and merges on. Idempotent: found again by its name and webhook URL, never
    duplicated. ``alertingProfile`` defaults to the profile named Default (else the first). Without
    ``settings.read`` and ``settings.write`` the answer (422) names the missing scope and gives the
    manual steps."""
    outcome = install.install(
        db_session=db_session,
        workspace_id=caller.workspace_id,
        settings=settings,
        secret_box=secret_box,
        request_base=str(request.base_url),
        alerting_profile=install_in.alerting_profile if install_in else None,
        actor=caller.actor,
    )
    db_session.commit()
    installed = outcome.installed
    return WebhookInstallRead(
        installed=True,
        action="created" if installed.created else "updated",
        object_id=installed.object_id,
        display_name=notifications.DISPLAY_NAME,
        webhook_url=outcome.webhook_url,
        secret_header=notifications.SECRET_HEADER,
        alerting_profile=AlertingProfileRead(
            id=installed.profile.profile.id,
            name=installed.profile.profile.name,
            default=installed.profile.is_default,
        ),
        alerting_profile_choice=installed.profile.how,
        removed_duplicates=installed.removed_duplicates,
        message=outcome.message,
        warnings=outcome.warnings,
    )
