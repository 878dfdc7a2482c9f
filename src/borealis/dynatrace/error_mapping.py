"""What a failed Dynatrace call means, as the ``DynatraceError`` whose message says what to fix.

Kept apart from the transport: the transport decides when a call has failed, this module decides what
the failure tells the user (a token to fix, a scope to add, an address that is not an API, a network in
the way). Messages name the host, never the token.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from borealis.dynatrace.errors import (
    DynatraceError,
    EnvironmentNotFound,
    ResourceNotFound,
    ScopeMissing,
    TlsFailure,
    TokenDisabled,
    TokenRejected,
    Unreachable,
    UpstreamError,
)
from borealis.dynatrace.errors import Timeout as DynatraceTimeout
from borealis.dynatrace.urls import needs_managed_path

_MISSING_SCOPE = re.compile(r"Use one of:\s*([A-Za-z0-9_.]+)")


def host_of(environment_url: str) -> str:
    """The host (and port) an error message names."""
    return urlsplit(environment_url).netloc


def not_an_api(environment_url: str, what: str) -> EnvironmentNotFound:
    """The address answers, but not as a Dynatrace environment API would."""
    return EnvironmentNotFound(
        environment_url, what=what, suggest_managed_path=needs_managed_path(environment_url)
    )


def error_for_response(
    response: httpx.Response,
    *,
    environment_url: str,
    scope: str | None,
    not_found: Callable[[str], DynatraceError] | None,
) -> DynatraceError:
    """The error an unsuccessful answer means. A 401/403/404 without Dynatrace's error envelope came
    from something in front of Dynatrace (a proxy, a sign-in page), and is reported as such."""
    status = response.status_code
    host = host_of(environment_url)
    message = envelope_message(response)
    if response.is_redirect:
        location = response.headers.get("location", "elsewhere")
        return not_an_api(environment_url, f"redirects to {location} (a sign-in page or the web UI)")
    if status == 401:
        if message is None:
            return UpstreamError(
                f"{host} asked for credentials (401) without a Dynatrace error: a proxy in front of "
                "Dynatrace may require its own sign-in; use the Dynatrace API address directly"
            )
        lowered = message.lower()
        if "disabled" in lowered:
            return TokenDisabled("disabled")
        if "expired" in lowered:
            return TokenDisabled("expired")
        return TokenRejected()
    if status == 403:
        if message is None:
            return UpstreamError(
                f"{host} refused the request (403) without a Dynatrace error: a proxy or firewall "
                "may be in the way; check that outbound HTTPS to Dynatrace is allowed"
            )
        found = _MISSING_SCOPE.search(message)
        return ScopeMissing(found.group(1) if found else (scope or "unknown"))
    if status == 404:
        if message is None:
            return not_an_api(environment_url, "answers 404 Not Found")
        return not_found(message) if not_found else ResourceNotFound(f"Dynatrace: {message}")
    if status >= 500:
        detail = f" ({message})" if message else ""
        return UpstreamError(
            f"Dynatrace at {host} answered {status}{detail}; this is on the Dynatrace side, try again later"
        )
    if message is None and status in (400, 405):
        return not_an_api(environment_url, f"answers {status}")
    return UpstreamError(f"Dynatrace refused the request ({status}): {message or 'no details'}")


def not_json(environment_url: str, content_type: str) -> EnvironmentNotFound:
    """A successful answer that is not JSON: a web page or a proxy, not the API."""
    return not_an_api(
        environment_url,
        f"answers with {_describe_content(content_type)} instead of JSON"
        if content_type
        else "answers without content",
    )


def timeout_error(exc: httpx.TimeoutException, *, host: str, timeout: float) -> DynatraceTimeout:
    """A connect timeout points at the network; a read timeout at a slow environment."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return DynatraceTimeout(
            f"connecting to {host} timed out after {timeout:g} s; check network connectivity "
            "and that firewall rules allow outbound HTTPS to Dynatrace (for Managed: is the cluster "
            "reachable from this server?)"
        )
    return DynatraceTimeout(
        f"Dynatrace at {host} did not answer within {timeout:g} s; try again, or raise "
        "BOREALIS_DYNATRACE_TIMEOUT if the environment is slow"
    )


def transport_error(exc: httpx.HTTPError, *, host: str) -> tuple[str, DynatraceError]:
    """The failure kind for the call metrics (``tls``, ``unreachable``, ``error``) and the error, read
    from the whole exception chain: httpx wraps the socket and SSL errors that say what went wrong."""
    text = " ".join(str(item) for item in _exception_chain(exc)).lower()
    chain = _exception_chain(exc)
    if any(isinstance(item, ssl.SSLError) for item in chain) or "ssl" in text or "certificate" in text:
        reason = "certificate not trusted" if "certificate" in text else "handshake failed"
        return "tls", TlsFailure(host, reason)
    if any(isinstance(item, ConnectionRefusedError) for item in chain) or "refused" in text:
        return "unreachable", Unreachable(
            f"{host} refused the connection; check the port in environmentUrl and, for Managed, "
            "that the cluster is reachable from this server"
        )
    if "name or service not known" in text or "nodename nor servname" in text or "name resolution" in text:
        return "unreachable", Unreachable(
            f"the host name in environmentUrl ({host}) cannot be resolved (DNS); check its spelling"
        )
    if isinstance(exc, httpx.ConnectError | httpx.NetworkError):
        return "unreachable", Unreachable(
            f"cannot connect to {host}; check network connectivity and that firewall rules allow "
            "outbound HTTPS to Dynatrace"
        )
    return "error", UpstreamError(f"the connection to {host} failed ({type(exc).__name__}); try again later")


def envelope_message(response: httpx.Response) -> str | None:
    """Dynatrace's ``{"error": {"message"}}``, or None when the answer is not a Dynatrace error."""
    if "json" not in response.headers.get("content-type", "").lower():
        return None
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]  # Settings 2.0 answers a batch with one response per object
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    message = error.get("message")
    text = message if isinstance(message, str) else ""
    details = constraint_violations(error)
    if details:
        text = f"{text} ({details})" if text else details
    return text or "no message"


def constraint_violations(error: dict[str, Any]) -> str:
    """An error's ``constraintViolations`` as ``path: message; ...`` (empty when there are none)."""
    violations = error.get("constraintViolations")
    if not isinstance(violations, list):
        return ""
    return "; ".join(
        f"{item.get('path')}: {item.get('message')}" for item in violations if isinstance(item, dict)
    )


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe_content(content_type: str) -> str:
    return "a web page" if "html" in content_type.lower() else f"'{content_type.split(';')[0]}'"
