"""The problem notification Borealis installs in Dynatrace (Settings 2.0), and alerting profiles.

Dynatrace side only: no database here. The notification is a settings object of schema
``builtin:problem.notifications`` (type WEBHOOK) named ``Borealis``. It is found again by its objectId, or
by that name together with this connection's webhook path, so installing twice updates it, a
notification made by hand from ``/webhook-url`` is adopted, and another workspace's ``Borealis`` (a different
webhook path) is left alone.

The secret travels only in a secret header (``Authorization: Bearer …``), never in the URL: Dynatrace
keeps secret header values masked in its UI and in every settings read, while the URL is shown in plain
text to anyone who can read settings. Rotating the secret then touches the header alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from borealis.dynatrace.client import DynatraceClient
from borealis.dynatrace.errors import ResourceNotFound
from borealis.dynatrace.template import SUGGESTED_PAYLOAD
from borealis.errors import Conflict, InvalidInput

NOTIFICATION_SCHEMA = "builtin:problem.notifications"
ALERTING_PROFILE_SCHEMA = "builtin:alerting.profile"
DISPLAY_NAME = "Borealis"
DEFAULT_PROFILE_NAME = "Default"
SECRET_HEADER = "Authorization"
# Listing needs the first, creating, updating and deleting the second.
INSTALL_SCOPES = ("settings.read", "settings.write")


@dataclass(frozen=True)
class AlertingProfile:
    id: str
    name: str


@dataclass(frozen=True)
class ChosenProfile:
    profile: AlertingProfile
    # "requested" (the caller named it), "default" (the profile named Default) or "first" (no Default).
    how: str
    # The profile is the one used when none is named (true for "default" and "first").
    is_default: bool = True

    def describe(self) -> str:
        if self.how == "requested":
            return f"alerting profile '{self.profile.name}'"
        if self.how == "default":
            return f"alerting profile '{self.profile.name}' (the environment's default; none was given)"
        return (
            f"alerting profile '{self.profile.name}' (the environment has no profile named "
            f"'{DEFAULT_PROFILE_NAME}', so the first one; none was given)"
        )


@dataclass(frozen=True)
class Installed:
    """What installing did in Dynatrace."""

    object_id: str
    created: bool
    profile: ChosenProfile
    # Other objects that were this connection's notification too, deleted so exactly one remains.
    removed_duplicates: list[str] = field(default_factory=list)


def alerting_profiles(client: DynatraceClient) -> list[AlertingProfile]:
    """The environment's alerting profiles, in Dynatrace's order."""
    found: list[AlertingProfile] = []
    for item in client.list_settings_objects(ALERTING_PROFILE_SCHEMA, scopes="environment"):
        object_id = item.get("objectId")
        value = item.get("value") if isinstance(item.get("value"), dict) else {}
        name = value.get("name")
        if isinstance(object_id, str) and object_id:
            found.append(AlertingProfile(id=object_id, name=name if isinstance(name, str) else object_id))
    return found


def default_profile(profiles: list[AlertingProfile]) -> AlertingProfile | None:
    """The profile named Default (every environment starts with one), else the first."""
    named = [profile for profile in profiles if profile.name == DEFAULT_PROFILE_NAME]
    return (named or profiles or [None])[0]


def choose_profile(profiles: list[AlertingProfile], requested: str | None) -> ChosenProfile:
    """The requested profile (by objectId), or the default one when none was requested."""
    fallback = default_profile(profiles)
    if requested:
        for profile in profiles:
            if profile.id == requested:
                return ChosenProfile(profile, "requested", is_default=profile == fallback)
        raise InvalidInput(
            f"alertingProfile: this environment has no alerting profile with the id '{requested}'; "
            "GET /dynatrace/alerting-profiles lists the ids, or leave it out to use the default profile",
            details={"field": "alertingProfile"},
        )
    profile = fallback
    if profile is None:
        raise Conflict(
            "the Dynatrace environment has no alerting profile to attach the notification to; create one "
            "in Dynatrace (Settings > Alerting > Problem alerting profiles) and install again"
        )
    return ChosenProfile(profile, "default" if profile.name == DEFAULT_PROFILE_NAME else "first")


def notification_value(
    *, url: str, secret: str, alerting_profile: str, enabled: bool = True
) -> dict[str, Any]:
    """The ``builtin:problem.notifications`` value: a WEBHOOK to ``url`` with the secret header and the
    suggested payload, for closed problems and merges too."""
    return {
        "enabled": enabled,
        "displayName": DISPLAY_NAME,
        "type": "WEBHOOK",
        "alertingProfile": alerting_profile,
        "webHookNotification": {
            "url": url,
            "acceptAnyCertificate": False,
            "notifyClosedProblems": True,
            "notifyEventMergesEnabled": True,
            "headers": [{"name": SECRET_HEADER, "secret": True, "secretValue": f"Bearer {secret}"}],
            "payload": SUGGESTED_PAYLOAD,
        },
    }


def webhook_url_of(item: dict[str, Any]) -> str | None:
    value = item.get("value") if isinstance(item.get("value"), dict) else {}
    webhook = value.get("webHookNotification") if isinstance(value.get("webHookNotification"), dict) else {}
    url = webhook.get("url")
    return url if isinstance(url, str) else None


def is_ours(item: dict[str, Any], *, webhook_path: str, object_id: str | None) -> bool:
    """This connection's notification: the recorded object, or one named Borealis that calls our path."""
    if object_id is not None and item.get("objectId") == object_id:
        return True
    value = item.get("value") if isinstance(item.get("value"), dict) else {}
    url = webhook_url_of(item)
    return (
        value.get("displayName") == DISPLAY_NAME
        and value.get("type") == "WEBHOOK"
        and url is not None
        and urlsplit(url).path.rstrip("/") == webhook_path.rstrip("/")
    )


def _ranked(items: Iterable[dict[str, Any]], object_id: str | None) -> list[dict[str, Any]]:
    """The one to keep first: the recorded object, then the oldest. Every installer ranks alike, so
    concurrent installs that each created one agree on which survives."""

    def key(item: dict[str, Any]) -> tuple[int, int, str]:
        created = item.get("created")
        return (
            0 if object_id is not None and item.get("objectId") == object_id else 1,
            created if isinstance(created, int) else 0,
            str(item.get("objectId")),
        )

    return sorted(items, key=key)


def _ours(client: DynatraceClient, *, webhook_path: str, object_id: str | None) -> list[dict[str, Any]]:
    items = client.list_settings_objects(
        NOTIFICATION_SCHEMA, fields=("objectId", "value", "created"), scopes="environment"
    )
    return _ranked(
        (item for item in items if is_ours(item, webhook_path=webhook_path, object_id=object_id)), object_id
    )


def _delete_quietly(client: DynatraceClient, object_id: str) -> None:
    with contextlib.suppress(ResourceNotFound):  # another installer removed it first
        client.delete_settings_object(object_id)


def install(
    client: DynatraceClient,
    *,
    url: str,
    secret: str,
    webhook_path: str,
    object_id: str | None,
    alerting_profile: str | None,
) -> Installed:
    """Create or update this connection's notification so that exactly one exists, and return it.

    Without a lock: after creating, the list is read again and every duplicate but the best-ranked is
    deleted, so two installs racing each other still end with one notification."""
    chosen = choose_profile(alerting_profiles(client), alerting_profile)
    value = notification_value(url=url, secret=secret, alerting_profile=chosen.profile.id)
    existing = _ours(client, webhook_path=webhook_path, object_id=object_id)
    if existing:
        keep = str(existing[0]["objectId"])
        try:
            client.update_settings_object(keep, value)
        except ResourceNotFound:  # deleted in Dynatrace since the list: create it anew
            existing = []
    created = not existing
    if created:
        new_id = client.create_settings_object(NOTIFICATION_SCHEMA, value)
        existing = _ours(client, webhook_path=webhook_path, object_id=object_id) or [{"objectId": new_id}]
        keep = str(existing[0]["objectId"])
        if keep != new_id:
            # A concurrent install created the one that survives; make sure it carries this value.
            client.update_settings_object(keep, value)
    removed = [str(item["objectId"]) for item in existing[1:]]
    for duplicate in removed:
        _delete_quietly(client, duplicate)
    return Installed(object_id=keep, created=created, profile=chosen, removed_duplicates=removed)


def update_secret(client: DynatraceClient, *, object_id: str, url: str, secret: str) -> None:
    """Send a new secret (and URL) to the installed notification, keeping the alerting profile and the
    enabled switch the workspace may have changed in Dynatrace. ResourceNotFound when it was deleted."""
    current = client.get_settings_object(object_id)
    value = current.get("value") if isinstance(current.get("value"), dict) else {}
    profile = value.get("alertingProfile")
    if not isinstance(profile, str) or not profile:
        profile = choose_profile(alerting_profiles(client), None).profile.id
    enabled = value.get("enabled") is not False
    client.update_settings_object(
        object_id, notification_value(url=url, secret=secret, alerting_profile=profile, enabled=enabled)
    )


def remove(client: DynatraceClient, *, object_id: str) -> bool:
    """Delete the installed notification; False when it was already gone."""
    try:
        client.delete_settings_object(object_id)
    except ResourceNotFound:
        return False
    return True
