"""Installing the webhook in Dynatrace for a stored connection: the flows behind
``POST /dynatrace/webhook/install``, ``GET /dynatrace/alerting-profiles``, and what disconnecting and
rotating the secret do to an installed notification (API and web UI alike).

Every flow calls Dynatrace, and no transaction (SQLite's write lock) is held while Dynatrace answers: a
flow reads what it needs, ends that read with a rollback, calls Dynatrace, and records the outcome in a
new transaction that the caller commits, as with any service function.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from borealis.audit import service as audit
from borealis.audit.models import Actor
from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import utcnow
from borealis.dynatrace import notifications, service
from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.errors import DynatraceError, ResourceNotFound, ScopeMissing
from borealis.dynatrace.models import Connection
from borealis.dynatrace.notifications import AlertingProfile, Installed
from borealis.dynatrace.template import SUGGESTED_PAYLOAD
from borealis.errors import BorealisError

logger = logging.getLogger("borealis.dynatrace")

MANUAL_URL_HINT = "the webhookUrl that GET /dynatrace/webhook-url returns"


class ManualSetupRequired(ScopeMissing):
    """The token cannot manage settings: the answer carries the manual set-up steps instead."""

    def __init__(
        self, scope: str, *, purpose: str, missing: list[str], instructions: list[str], plain_url: str
    ) -> None:
        super().__init__(scope, purpose=purpose)
        self.message = (
            f"{self.message}; or set the webhook up by hand with the steps in details.instructions "
            "(the same as GET /dynatrace/webhook-url)"
        )
        self.details.update(
            missingScopes=missing,
            instructions=instructions,
            suggestedPayload=SUGGESTED_PAYLOAD,
            webhookUrlWithoutSecret=plain_url,
        )


@dataclass(frozen=True)
class InstallOutcome:
    installed: Installed
    webhook_url: str
    message: str
    warnings: list[str]


@dataclass(frozen=True)
class Removal:
    """What disconnecting did to the installed notification."""

    removed: bool
    object_id: str
    message: str


@dataclass(frozen=True)
class SecretUpdate:
    """What a rotation did to the installed notification."""

    updated: bool
    message: str


@dataclass(frozen=True)
class _Target:
    """What a flow needs from the connection, read before its transaction ends and Dynatrace is called."""

    client: DynatraceClient
    environment_url: str
    scopes: list[str]
    base: str
    path: str
    secret: str
    secret_hash: str
    object_id: str | None

    @property
    def url(self) -> str:
        return self.base + self.path

    def manual_setup(self, missing: list[str], purpose: str) -> ManualSetupRequired:
        """The error that names the missing scope and gives the manual steps (no secret in them)."""
        return ManualSetupRequired(
            missing[0],
            purpose=purpose,
            missing=missing,
            instructions=service.webhook_instructions(
                environment_url=self.environment_url or None, url=MANUAL_URL_HINT, plain_url=self.url
            ),
            plain_url=self.url,
        )


def publicly_reachable(base: str) -> bool:
    """False for loopback and private addresses, which Dynatrace SaaS cannot call."""
    host = urlsplit(base).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return ipaddress.ip_address(host).is_global
    except ValueError:
        return True


def _target(
    *, connection: Connection, settings: Settings, secret_box: SecretBox, request_base: str
) -> _Target:
    return _Target(
        client=service.client_for(
            connection=connection, settings=settings, secret_box=secret_box, max_retries=1
        ),
        environment_url=connection.environment_url,
        scopes=list(connection.token_scopes or []),
        base=service.webhook_base(settings=settings, request_base=request_base),
        path=service.webhook_path(connection=connection),
        secret=service.webhook_secret(connection=connection, secret_box=secret_box),
        secret_hash=connection.webhook_secret_hash,
        object_id=connection.notification_object_id,
    )


def _lacking(scopes: list[str] | None, needed: tuple[str, ...]) -> list[str]:
    granted = set(scopes or [])
    return [scope for scope in needed if scope not in granted]


def _granted_now(client: DynatraceClient, needed: tuple[str, ...]) -> list[str] | None:
    """The token's live scopes when they include ``needed`` (the token was edited since connecting)."""
    try:
        info = client.lookup_token()
    except DynatraceError:
        return None
    return sorted(set(info.scopes)) if not _lacking(info.scopes, needed) else None


def _prepare(
    *,
    db_session: Session,
    workspace_id: str,
    settings: Settings,
    secret_box: SecretBox,
    request_base: str,
    needed: tuple[str, ...],
    purpose: str,
) -> tuple[_Target, list[str] | None]:
    """Read the connection, end the transaction, and make sure the token has ``needed`` (asking Dynatrace
    when the scopes recorded at connect time lack them). Returns the live scopes when they changed."""
    connection = service.require(db_session=db_session, workspace_id=workspace_id)
    target = _target(
        connection=connection, settings=settings, secret_box=secret_box, request_base=request_base
    )
    db_session.rollback()  # no transaction held while Dynatrace answers
    lacking = _lacking(target.scopes, needed)
    refreshed = None
    if lacking:
        refreshed = _granted_now(target.client, needed)
        if refreshed is None:
            target.client.close()
            raise target.manual_setup(lacking, purpose)
    return target, refreshed


def alerting_profiles(
    *, db_session: Session, workspace_id: str, settings: Settings, secret_box: SecretBox, request_base: str
) -> tuple[list[AlertingProfile], AlertingProfile | None]:
    """The environment's alerting profiles and the one an install uses when none is named."""
    purpose = "list the alerting profiles"
    target, _ = _prepare(
        db_session=db_session,
        workspace_id=workspace_id,
        settings=settings,
        secret_box=secret_box,
        request_base=request_base,
        needed=("settings.read",),
        purpose=purpose,
    )
    with target.client as client:
        try:
            profiles = notifications.alerting_profiles(client)
        except ScopeMissing as exc:
            raise target.manual_setup([exc.scope], purpose) from None
    return profiles, notifications.default_profile(profiles)


def install(
    *,
    db_session: Session,
    workspace_id: str,
    settings: Settings,
    secret_box: SecretBox,
    request_base: str,
    alerting_profile: str | None,
    actor: Actor,
) -> InstallOutcome:
    """Create or update the connection's problem notification in Dynatrace and record it."""
    purpose = "install the problem notification in Dynatrace for you"
    target, refreshed = _prepare(
        db_session=db_session,
        workspace_id=workspace_id,
        settings=settings,
        secret_box=secret_box,
        request_base=request_base,
        needed=notifications.INSTALL_SCOPES,
        purpose=purpose,
    )
    with target.client as client:
        try:
            installed = notifications.install(
                client,
                url=target.url,
                secret=target.secret,
                webhook_path=target.path,
                object_id=target.object_id,
                alerting_profile=alerting_profile,
            )
            # A rotation that committed meanwhile sent its secret before ours landed: send the newest.
            for _ in range(3):
                current = service.get(db_session=db_session, workspace_id=workspace_id)
                if current is None or current.webhook_secret_hash == target.secret_hash:
                    break
                secret = service.webhook_secret(connection=current, secret_box=secret_box)
                target = replace(target, secret=secret, secret_hash=current.webhook_secret_hash)
                db_session.rollback()
                notifications.update_secret(
                    client, object_id=installed.object_id, url=target.url, secret=secret
                )
        except ScopeMissing as exc:
            raise target.manual_setup([exc.scope], purpose) from None
    current = service.get(db_session=db_session, workspace_id=workspace_id)
    if current is not None:
        current.notification_object_id = installed.object_id
        current.notification_profile_id = installed.profile.profile.id
        current.notification_profile_name = installed.profile.profile.name
        current.notification_installed_at = utcnow()
        if refreshed is not None:
            current.token_scopes = refreshed
        audit.record(
            db_session=db_session,
            workspace_id=workspace_id,
            actor=actor,
            action="webhook.installed",
            target=installed.object_id,
            details={"alertingProfile": installed.profile.profile.name, "created": installed.created},
        )
        db_session.flush()
    verb = "Created" if installed.created else "Updated"
    message = (
        f"{verb} the problem notification '{notifications.DISPLAY_NAME}' in Dynatrace for "
        f"{installed.profile.describe()}: it sends every problem, its closing and merges to {target.url} "
        f"with the secret in the {notifications.SECRET_HEADER} header."
    )
    if installed.removed_duplicates:
        message += f" Removed {len(installed.removed_duplicates)} duplicate notification(s)."
    warnings = []
    if not publicly_reachable(target.base):
        warnings.append(
            f"the webhook URL's base {target.base} is a local address that Dynatrace SaaS cannot reach: set "
            "BOREALIS_PUBLIC_URL (or NGROK_URL for development) and install again"
        )
    logger.info(
        "problem notification %s in Dynatrace (%s)",
        "created" if installed.created else "updated",
        workspace_id,
    )
    return InstallOutcome(installed=installed, webhook_url=target.url, message=message, warnings=warnings)


def _by_hand(what: str) -> str:
    return (
        f"{what}; delete the problem notification '{notifications.DISPLAY_NAME}' in Dynatrace by hand "
        "(Settings > Integration > Problem notifications)"
    )


def _remove(target: _Target, object_id: str) -> Removal:
    """Delete the notification; every failure becomes a message, never an error."""
    if _lacking(target.scopes, ("settings.write",)):
        target.client.close()
        return Removal(False, object_id, _by_hand("the token lacks settings.write, so it was not removed"))
    try:
        with target.client as client:
            existed = notifications.remove(client, object_id=object_id)
    except ScopeMissing as exc:
        return Removal(False, object_id, _by_hand(f"the token lacks {exc.scope}, so it was not removed"))
    except DynatraceError as exc:
        return Removal(False, object_id, _by_hand(f"it could not be removed ({exc.message})"))
    if not existed:
        return Removal(True, object_id, "the problem notification was already gone from Dynatrace")
    return Removal(
        True, object_id, f"removed the problem notification '{notifications.DISPLAY_NAME}' from Dynatrace"
    )


def disconnect(
    *, db_session: Session, workspace_id: str, settings: Settings, secret_box: SecretBox, actor: Actor
) -> tuple[Connection | None, Removal | None]:
    """Remove the installed notification while the token still allows it, then forget the token
    (``service.disconnect``). The disconnect happens whatever Dynatrace answers."""
    connection = service.get(db_session=db_session, workspace_id=workspace_id)
    removal = None
    if connection is not None and connection.connected and connection.notification_object_id:
        object_id = connection.notification_object_id
        try:
            target = _target(connection=connection, settings=settings, secret_box=secret_box, request_base="")
        except BorealisError as exc:  # the token or secret cannot be decrypted any more
            removal = Removal(False, object_id, _by_hand(exc.message))
        else:
            db_session.rollback()  # no transaction held while Dynatrace answers
            removal = _remove(target, object_id)
    connection = service.disconnect(db_session=db_session, workspace_id=workspace_id, actor=actor)
    if connection is not None and removal is not None and removal.removed:
        connection.forget_notification()
        db_session.flush()
    return connection, removal


def rotate(
    *,
    db_session: Session,
    workspace_id: str,
    settings: Settings,
    secret_box: SecretBox,
    request_base: str,
    actor: Actor,
) -> SecretUpdate | None:
    """Issue a new webhook secret and send it to the installed notification; returns what happened there,
    or None when nothing is installed. The one flow that commits on its own: the new secret is durable
    before Dynatrace hears of it. The caller commits what the update recorded."""
    connection = service.require(db_session=db_session, workspace_id=workspace_id)
    service.rotate_webhook_secret(
        db_session=db_session, connection=connection, secret_box=secret_box, actor=actor
    )
    db_session.commit()
    return _after_rotation(
        db_session=db_session,
        workspace_id=workspace_id,
        settings=settings,
        secret_box=secret_box,
        request_base=request_base,
    )


def _after_rotation(
    *, db_session: Session, workspace_id: str, settings: Settings, secret_box: SecretBox, request_base: str
) -> SecretUpdate | None:
    """Send the rotated secret to the installed notification (once the rotation is committed)."""
    connection = service.get(db_session=db_session, workspace_id=workspace_id)
    if connection is None or not connection.connected or not connection.notification_object_id:
        return None
    target = _target(
        connection=connection, settings=settings, secret_box=secret_box, request_base=request_base
    )
    object_id = connection.notification_object_id
    db_session.rollback()  # no transaction held while Dynatrace answers
    retry = "run POST /dynatrace/webhook/install (or paste the new URL into Dynatrace)"
    try:
        with target.client as client:
            notifications.update_secret(client, object_id=object_id, url=target.url, secret=target.secret)
    except ResourceNotFound:
        current = service.get(db_session=db_session, workspace_id=workspace_id)
        if current is not None and current.notification_object_id == object_id:
            current.forget_notification()
            db_session.flush()
        return SecretUpdate(
            False,
            f"the notification Borealis installed is gone from Dynatrace; to receive problems again, {retry}",
        )
    except DynatraceError as exc:
        return SecretUpdate(
            False,
            f"the notification installed in Dynatrace still sends the old secret, so Borealis refuses its "
            f"deliveries ({exc.message}); {retry}",
        )
    return SecretUpdate(True, "the notification installed in Dynatrace now sends the new secret")
