"""Connections: validate and store a workspace's Dynatrace environment and token, report on them, and hand
out clients and the webhook URL. Callers own the transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from borealis import crypto, jobstore
from borealis.audit import service as audit
from borealis.audit.models import Actor
from borealis.config import Settings
from borealis.crypto import SecretBox
from borealis.db import utcnow
from borealis.dynatrace.client import DynatraceClient, TokenInfo
from borealis.dynatrace.errors import DynatraceError, NotConnected, TokenDisabled, TokenRejected
from borealis.dynatrace.models import Connection
from borealis.dynatrace.urls import check_destination, normalize_environment_url
from borealis.errors import Conflict, InvalidInput
from borealis.workspaces.models import Workspace

# The scopes Borealis uses, each with what it enables (shown for every missing one).
SCOPES: dict[str, str] = {
    "problems.read": "reconcile problems with the API (catching missed notifications) and read their root "
    "cause and evidence",
    "entities.read": "read entities and their topology, to group related problems and for root-cause analysis",
    "events.read": "find deployments, configuration changes and restarts for root-cause analysis",
    "logs.read": "read error logs of the suspected entities for root-cause analysis",
    "metrics.read": "read key metrics of the suspected entities for root-cause analysis",
    "settings.read": "check the problem-notification webhook installed in Dynatrace",
    "settings.write": "install the problem-notification webhook in Dynatrace for you",
    "problems.write": "write each root-cause analysis onto the Dynatrace problems as a comment",
}
# Optional: only the cluster version needs it.
VERSION_SCOPE = "DataExport"
EXPIRY_WARNING = timedelta(days=14)
WEBHOOK_SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 1000
# Background work that follows a connection (handlers in borealis/sync/tasks.py): a backfill on connect,
# then a reconciliation every BOREALIS_SYNC_INTERVAL seconds, both keyed to the connection.
BACKFILL_JOB = "dynatrace.backfill"
SYNC_JOB = "dynatrace.sync"
# Writing an incident's RCA onto its Dynatrace problems, and closing them (borealis/writeback/tasks.py),
# keyed to the incident.
WRITE_BACK_JOB = "dynatrace.write_back"
WRITE_SCOPE = "problems.write"
CLOSE_JOB = "dynatrace.close_problems"
# The context of Borealis's comments on Dynatrace problems.
CONTEXT = "Borealis"


def writes_back(*, workspace: Workspace | None, connection: Connection | None) -> bool:
    """Whether RCAs are written onto the Dynatrace problems: the workspace wants it (the default) and
    the token may write problems."""
    return bool(
        workspace is not None
        and workspace.write_back
        and connection is not None
        and connection.connected
        and WRITE_SCOPE in (connection.token_scopes or [])
    )


def write_back_reason(*, workspace: Workspace | None, connection: Connection | None) -> str:
    """Why RCAs are or are not written back, in words that say what to change."""
    if workspace is None or not workspace.write_back:
        return 'switched off for this workspace: PUT /dynatrace/write-back {"enabled": true} switches it on'
    if connection is None or not connection.connected:
        return "Dynatrace is not connected"
    if WRITE_SCOPE not in (connection.token_scopes or []):
        return (
            f"the token lacks {WRITE_SCOPE}: with it, Borealis would {SCOPES[WRITE_SCOPE]}; "
            "grant it and connect again"
        )
    return f"each finished RCA is written onto the incident's Dynatrace problems as one comment (context {CONTEXT!r})"


def job_key(connection: Connection) -> str:
    """The key of a connection's jobs and schedule: its backfill and syncs never run at once."""
    return f"connection:{connection.id}"


@dataclass(frozen=True)
class MissingScope:
    scope: str
    enables: str


@dataclass(frozen=True)
class CheckedToken:
    """What connecting learned from Dynatrace, before anything is stored."""

    environment_url: str
    token: str = field(repr=False)
    info: TokenInfo
    version: str | None
    # Why the (optional) cluster version could not be read, when the scope was there.
    version_error: str | None = None


@dataclass(frozen=True)
class TokenCheck:
    """A live check of a stored token: valid (True/False), or None when Dynatrace could not be asked."""

    valid: bool | None
    error: DynatraceError | None = None
    info: TokenInfo | None = None


def get(*, db_session: Session, workspace_id: str) -> Connection | None:
    """The workspace's connection row (connected or not), or None if they never connected."""
    return db_session.scalar(sa.select(Connection).where(Connection.workspace_id == workspace_id))


def clean_token(api_token: str) -> str:
    """The token as Dynatrace expects it; a pasted ``Api-Token`` header prefix is dropped."""
    token = api_token.strip()
    if token.lower().startswith("api-token "):
        token = token[len("api-token ") :].strip()
    if not token:
        raise InvalidInput("apiToken: is required; generate one in Dynatrace under Access tokens")
    # Printable ASCII only: it goes into an HTTP header, and no Dynatrace token has anything else.
    if len(token) > MAX_TOKEN_LENGTH or not all("!" <= char <= "~" for char in token):
        raise InvalidInput(
            "apiToken: is not a Dynatrace token (it contains spaces or characters other than printable "
            "ASCII, or is too long); copy the whole token, which looks like dt0c01.ABC….XYZ…"
        )
    return token


def ensure_usable(info: TokenInfo) -> None:
    """Raise TokenDisabled for a disabled or expired token."""
    if not info.enabled:
        raise TokenDisabled("disabled")
    if info.expired and info.expires_at is not None:
        raise TokenDisabled(f"expired (since {info.expires_at:%Y-%m-%d %H:%M} UTC)")


def check_token(
    *,
    environment_url: str,
    api_token: str,
    settings: Settings,
    client_factory: type[DynatraceClient] = DynatraceClient,
) -> CheckedToken:
    """Normalize the URL and validate the token against the environment; no database work, so no lock is
    held while Dynatrace answers."""
    # Everything that needs no network first, so input mistakes are reported as such.
    allow_private = settings.allow_private_dynatrace
    url = normalize_environment_url(environment_url, allow_http=allow_private)
    token = clean_token(api_token)
    check_destination(url, allow_private=allow_private)
    with client_factory.from_settings(url, token, settings) as client:
        info = client.lookup_token()
        ensure_usable(info)
        version, version_error = None, None
        if VERSION_SCOPE in info.scopes:
            try:
                version = client.cluster_version()
            except DynatraceError as exc:
                version_error = f"the cluster version could not be read: {exc.message}"
    return CheckedToken(
        environment_url=url, token=token, info=info, version=version, version_error=version_error
    )


def save(
    *, db_session: Session, workspace_id: str, checked: CheckedToken, secret_box: SecretBox, actor: Actor
) -> Connection:
    """Store a checked token as the workspace's connection. Reconnecting replaces the URL and token but keeps
    the webhook secret already pasted into Dynatrace."""
    connection = db_session.scalar(
        sa.select(Connection).where(Connection.workspace_id == workspace_id).with_for_update()
    )
    now = utcnow()
    if connection is None:
        secret = crypto.new_secret(nbytes=WEBHOOK_SECRET_BYTES)
        connection = Connection(
            workspace_id=workspace_id,
            webhook_secret_ciphertext=secret_box.encrypt(secret),
            webhook_secret_hash=crypto.digest(secret),
        )
        db_session.add(connection)
    if connection.environment_url and connection.environment_url != checked.environment_url:
        connection.forget_notification()  # it stays in the previous environment, out of reach
    connection.environment_url = checked.environment_url
    connection.token_ciphertext = secret_box.encrypt(checked.token)
    connection.token_id = checked.info.id
    connection.token_name = checked.info.name
    connection.token_scopes = sorted(set(checked.info.scopes))
    connection.token_expires_at = checked.info.expires_at
    connection.cluster_version = checked.version
    connection.connected_at = now
    connection.disconnected_at = None
    try:
        db_session.flush()
    except IntegrityError:
        raise Conflict("another connect request for this workspace ran at the same time; try again") from None
    audit.record(
        db_session=db_session,
        workspace_id=workspace_id,
        actor=actor,
        action="connection.connected",
        target=connection.environment_url,
        details={"tokenName": connection.token_name, "scopes": connection.token_scopes},
    )
    # Recorded with the connection: the alerts list fills from the API before the first webhook.
    jobstore.enqueue(
        db_session=db_session,
        kind=BACKFILL_JOB,
        workspace_id=workspace_id,
        key=job_key(connection),
        payload={"connectionId": connection.id},
    )
    return connection


def disconnect(*, db_session: Session, workspace_id: str, actor: Actor) -> Connection | None:
    """Forget the stored token (idempotent). Problems, incidents and the webhook secret stay."""
    connection = get(db_session=db_session, workspace_id=workspace_id)
    if connection is None or connection.token_ciphertext is None:
        return connection
    audit.record(
        db_session=db_session,
        workspace_id=workspace_id,
        actor=actor,
        action="connection.disconnected",
        target=connection.environment_url,
    )
    connection.token_ciphertext = None
    connection.token_id = None
    connection.disconnected_at = utcnow()
    jobstore.remove_schedule(db_session=db_session, kind=SYNC_JOB, key=job_key(connection))
    db_session.flush()
    return connection


def missing_scopes(scopes: list[str]) -> list[MissingScope]:
    """The scopes Borealis uses that the token lacks, each with what it would enable."""
    granted = set(scopes)
    return [MissingScope(scope, enables) for scope, enables in SCOPES.items() if scope not in granted]


def warnings(
    *, scopes: list[str], expires_at: datetime | None, version: str | None, now: datetime | None = None
) -> list[str]:
    """What the workspace should fix soon, in words: expiry, missing scopes, no cluster version."""
    now = now or utcnow()
    found: list[str] = []
    if expires_at is not None:
        if expires_at <= now:
            found.append(f"the token expired on {expires_at:%Y-%m-%d}; generate a new one and connect again")
        elif expires_at - now <= EXPIRY_WARNING:
            days = max((expires_at - now).days, 0)
            found.append(
                f"the token expires on {expires_at:%Y-%m-%d} (in {days} day{'s' if days != 1 else ''}); "
                "generate a new one and connect again before then"
            )
    for missing in missing_scopes(scopes):
        found.append(f"the token lacks {missing.scope}: without it Borealis cannot {missing.enables}")
    if version is None and VERSION_SCOPE not in scopes:
        found.append(
            f"the cluster version is unknown: the token lacks the optional {VERSION_SCOPE} scope "
            "(Access problem and event feed, metrics, and topology)"
        )
    return found


def stored_token(*, connection: Connection, secret_box: SecretBox) -> str:
    """The decrypted token of a connected connection."""
    if connection.token_ciphertext is None:
        raise NotConnected("Dynatrace is not connected; connect with POST /dynatrace/connect first")
    try:
        return secret_box.decrypt(connection.token_ciphertext)
    except ValueError:
        raise Conflict(
            "the stored Dynatrace token cannot be decrypted because BOREALIS_SECRET_KEY (or the key file) "
            "changed; connect again with POST /dynatrace/connect"
        ) from None


def client_for(
    *,
    connection: Connection,
    settings: Settings,
    secret_box: SecretBox,
    client_factory: type[DynatraceClient] = DynatraceClient,
    **client_options: object,
) -> DynatraceClient:
    """A client for a stored connection (jobs, RCA); the caller closes it."""
    token = stored_token(connection=connection, secret_box=secret_box)
    return client_factory.from_settings(connection.environment_url, token, settings, **client_options)


def verify(
    *,
    connection: Connection,
    settings: Settings,
    secret_box: SecretBox,
    client_factory: type[DynatraceClient] = DynatraceClient,
) -> TokenCheck:
    """Ask Dynatrace whether the stored token still works."""
    try:
        with client_for(
            connection=connection, settings=settings, secret_box=secret_box, client_factory=client_factory
        ) as client:
            info = client.lookup_token()
            ensure_usable(info)
    except (TokenRejected, TokenDisabled) as exc:
        return TokenCheck(valid=False, error=exc)
    except DynatraceError as exc:
        return TokenCheck(valid=None, error=exc)
    return TokenCheck(valid=True, info=info)


def webhook_secret(*, connection: Connection, secret_box: SecretBox) -> str:
    """The connection's current webhook secret."""
    try:
        return secret_box.decrypt(connection.webhook_secret_ciphertext)
    except ValueError:
        raise Conflict(
            "the webhook secret cannot be decrypted because BOREALIS_SECRET_KEY (or the key file) changed; "
            "issue a new one with POST /dynatrace/webhook-url/rotate and paste the new URL into Dynatrace"
        ) from None


def webhook_base(*, settings: Settings, request_base: str) -> str:
    """Where Dynatrace reaches us: BOREALIS_PUBLIC_URL, else NGROK_URL, else the request's own base."""
    return (settings.public_base_url or request_base).rstrip("/")


def webhook_path(*, connection: Connection) -> str:
    return f"/dynatrace/webhook/{connection.workspace_id}"


def webhook_url(*, connection: Connection, secret_box: SecretBox, base: str) -> str:
    """``{base}/dynatrace/webhook/{workspace_id}?token={secret}``: pasted into Dynatrace as is."""
    secret = webhook_secret(connection=connection, secret_box=secret_box)
    return f"{base}{webhook_path(connection=connection)}?token={secret}"


def rotate_webhook_secret(
    *, db_session: Session, connection: Connection, secret_box: SecretBox, actor: Actor
) -> str:
    """Issue a new webhook secret (the old URL stops working at once) and return it."""
    secret = crypto.new_secret(nbytes=WEBHOOK_SECRET_BYTES)
    connection.webhook_secret_ciphertext = secret_box.encrypt(secret)
    connection.webhook_secret_hash = crypto.digest(secret)
    # The entry says that it changed, never what to.
    audit.record(
        db_session=db_session,
        workspace_id=connection.workspace_id,
        actor=actor,
        action="webhook_secret.rotated",
    )
    db_session.flush()
    return secret


def require(*, db_session: Session, workspace_id: str) -> Connection:
    """The workspace's connected connection; NotConnected (409) otherwise, since the webhook only accepts
    notifications for a connected environment."""
    connection = get(db_session=db_session, workspace_id=workspace_id)
    if connection is None or not connection.connected:
        raise NotConnected(
            "connect a Dynatrace environment first (POST /dynatrace/connect): the webhook URL belongs to "
            "the connection (after a disconnect, connecting again brings back the same URL)"
        )
    return connection


def webhook_instructions(*, environment_url: str | None, url: str, plain_url: str) -> list[str]:
    """The steps to create the Custom Integration in Dynatrace, with this workspace's values filled in."""
    settings_page = (
        f"{environment_url}/ui/settings/integration/notifications"
        if environment_url
        else "https://{env-id}.live.dynatrace.com/ui/settings/integration/notifications"
    )
    return [
        f"In Dynatrace, open Settings > Integration > Problem notifications (classic UI: {settings_page}).",
        "Click 'Add notification' and select 'Custom Integration'.",
        "Name: Borealis.",
        f"Webhook URL: paste {url}",
        "Custom payload: paste suggestedPayload exactly as given; {ImpactedEntities} and "
        "{ProblemDetailsJSONv2} stay without quotes because Dynatrace fills them with JSON.",
        "Turn on 'Call webhook if problem is closed' (so resolved problems reach Borealis) and 'Call webhook "
        "if new events merge into existing problems'.",
        "Pick the alerting profile whose problems Borealis should receive.",
        "Click 'Send test notification': Borealis records it (never as an incident) and "
        "GET /dynatrace/status shows the result under lastTestNotification, including any missing fields.",
        "Save the integration.",
        f"Alternative to the secret in the URL: use {plain_url} and add the HTTP header from 'headers' "
        "(Authorization: Bearer …) under 'Additional HTTP headers'.",
    ]
