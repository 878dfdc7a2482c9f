"""Environment URLs: the forms users paste, turned into the one API base we call, and SSRF checks.

SaaS ``https://{env-id}.live.dynatrace.com``, Managed ``https://{domain}/e/{env-id}``, Gov and other
custom domains as given. The ``.apps.`` UI domain is not the API domain, so it is rewritten to ``.live.``.
Hosts that resolve to loopback, private or link-local addresses are refused unless the operator allows
them (Managed clusters on a private network, tests); only then is plain ``http://`` accepted, and only to
such hosts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import SplitResult, urlsplit, urlunsplit

from borealis.dynatrace.errors import InvalidEnvironmentUrl, Unreachable

FIELD = "environmentUrl"
MAX_LENGTH = 2048
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# UI domain → API domain (the seed: ".apps.dynatrace.com URLs become .live.dynatrace.com").
_APPS_TO_LIVE = (
    (".apps.dynatrace.com", ".live.dynatrace.com"),
    (".apps.dynatracegov.com", ".live.dynatracegov.com"),
)
# Hosts whose root is the environment (no /e/{id} needed).
SAAS_SUFFIXES = (".live.dynatrace.com", ".live.dynatracegov.com", ".dynatracelabs.com")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_ENV_PATH = re.compile(r"^/e/([^/]*)(?:/.*)?$")
_ENV_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PREFIX_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
# Paths inside an environment that users copy from the browser or from API docs; the root is meant.
_ENVIRONMENT_SUBPATHS = re.compile(r"^/(api|ui|platform|rest|#)(/.*)?$")


def normalize_environment_url(raw: object, *, allow_http: bool = False) -> str:
    """The canonical API base for what the user typed, or InvalidEnvironmentUrl saying what to fix.

    Pure string work: no DNS. ``allow_http`` lets ``http://`` through for the address check to decide.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEnvironmentUrl(
            "is required, for example https://abc12345.live.dynatrace.com", field=FIELD
        )
    text = raw.strip()
    if len(text) > MAX_LENGTH:
        raise InvalidEnvironmentUrl(f"is longer than {MAX_LENGTH} characters", field=FIELD)
    if any(char.isspace() or ord(char) < 32 for char in text):
        raise InvalidEnvironmentUrl("must not contain spaces or control characters", field=FIELD)

    scheme_match = _SCHEME.match(text)
    if scheme_match is None:
        text = "https://" + text.lstrip("/")
    scheme = _SCHEME.match(text).group(1).lower()  # type: ignore[union-attr]
    if scheme == "http" and not allow_http:
        raise InvalidEnvironmentUrl(
            "must use https:// (Dynatrace APIs are served over HTTPS); plain http:// is only allowed "
            "for private-network hosts when BOREALIS_ALLOW_PRIVATE_DYNATRACE=true",
            field=FIELD,
        )
    if scheme not in ("http", "https"):
        raise InvalidEnvironmentUrl(f"must start with https://, not {scheme}://", field=FIELD)

    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidEnvironmentUrl(f"is not a valid URL ({exc})", field=FIELD) from None
    if parts.username is not None or parts.password is not None:
        raise InvalidEnvironmentUrl(
            "must not contain a user name or password; remove the part before '@' and put the API "
            "token in apiToken",
            field=FIELD,
        )
    host = _normalize_host(parts)
    for apps, live in _APPS_TO_LIVE:
        if host.endswith(apps):
            host = host[: -len(apps)] + live
    if (scheme, port) in (("https", 443), ("http", 80)):
        port = None
    netloc = _bracketed(host) + (f":{port}" if port is not None else "")
    path = _environment_path(parts.path, host)
    return urlunsplit((scheme, netloc, path, "", ""))


def _normalize_host(parts: SplitResult) -> str:
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidEnvironmentUrl(
            "has no host name; use https://{env-id}.live.dynatrace.com or https://{your-domain}/e/{env-id}",
            field=FIELD,
        )
    if _parse_ip(host) is not None:
        return host
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidEnvironmentUrl(f"has an invalid host name '{host}'", field=FIELD) from None
    if not all(_HOST_LABEL.match(label) for label in host.split(".")):
        raise InvalidEnvironmentUrl(f"has an invalid host name '{host}'", field=FIELD)
    return host


def _environment_path(path: str, host: str) -> str:
    """Keep ``/e/{env-id}``; drop paths inside the environment (UI pages, API paths) and trailing '/'."""
    path = re.sub(r"/{2,}", "/", path).rstrip("/")
    managed = _ENV_PATH.match(path + "/" if path == "/e" else path)
    if managed:
        environment_id = managed.group(1)
        if not environment_id:
            raise InvalidEnvironmentUrl(
                "ends in /e/ without an environment id; use https://{your-domain}/e/{environment-id}",
                field=FIELD,
            )
        if not _ENV_ID.match(environment_id):
            raise InvalidEnvironmentUrl(
                f"has an invalid environment id '{environment_id}' after /e/; it is letters, digits and "
                "dashes, as shown in the Managed cluster's URL",
                field=FIELD,
            )
        return f"/e/{environment_id}"
    if not path or is_saas_host(host) or _ENVIRONMENT_SUBPATHS.match(path):
        return ""
    # A custom domain with its own prefix (a reverse proxy): kept as given.
    if not _PREFIX_PATH.match(path) or any(segment in (".", "..") for segment in path.split("/")):
        raise InvalidEnvironmentUrl(f"has a path Borealis cannot use: '{path}'", field=FIELD)
    return path


def is_saas_host(host: str) -> bool:
    return host.endswith(SAAS_SUFFIXES)


def needs_managed_path(url: str) -> bool:
    """True for a custom domain without ``/e/{id}``: the likely fix when such a URL answers 404."""
    parts = urlsplit(url)
    return not is_saas_host(parts.hostname or "") and not _ENV_PATH.match(parts.path)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _parse_ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_public_address(address: IpAddress) -> bool:
    """Globally routable: not loopback, private, link-local, CGNAT, multicast, reserved or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (what a connection could use)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def resolve_host(host: str, port: int, *, resolver: Resolver = system_resolver) -> list[IpAddress]:
    """The host's addresses, or Unreachable when DNS has no answer."""
    literal = _parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        addresses = []
    parsed = [ip for ip in (_parse_ip(address.split("%")[0]) for address in addresses) if ip is not None]
    if not parsed:
        raise Unreachable(
            f"the host name {host} cannot be resolved (DNS); check the spelling of environmentUrl and that "
            "this server's DNS can see it (for Managed: is the cluster reachable from here?)",
            details={"field": FIELD},
        )
    return parsed


def check_destination(
    url: str, *, allow_private: bool, resolver: Resolver = system_resolver
) -> list[IpAddress]:
    """Refuse a URL whose host resolves to a non-public address (unless allowed); return the addresses.

    Plain ``http://`` passes only when private hosts are allowed and this host is private.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve_host(host, port, resolver=resolver)
    private = [address for address in addresses if not is_public_address(address)]
    if private and not allow_private:
        raise InvalidEnvironmentUrl(
            f"the host {host} resolves to a non-public address ({private[0]}); Borealis refuses loopback, "
            "private and link-local addresses unless the operator sets BOREALIS_ALLOW_PRIVATE_DYNATRACE=true "
            "(for Managed clusters on a private network)",
            field=FIELD,
        )
    if parts.scheme == "http" and not private:
        raise InvalidEnvironmentUrl(
            f"must use https:// for the public host {host}; plain http:// is only allowed for "
            "private-network hosts",
            field=FIELD,
        )
    return addresses


def validate_environment_url(
    raw: object, *, allow_private: bool, resolver: Resolver = system_resolver
) -> str:
    """Normalize what the user typed and check where it leads; the URL Borealis will call."""
    url = normalize_environment_url(raw, allow_http=allow_private)
    check_destination(url, allow_private=allow_private, resolver=resolver)
    return url
