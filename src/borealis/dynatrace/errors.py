"""What can go wrong talking to Dynatrace, each with the message a user can act on.

Statuses: 422 when the user's input (URL, token, scopes) is the cause, 502/503/504 when Dynatrace or the
network between us is. The messages follow the seed's troubleshooting list.
"""

from __future__ import annotations

from typing import Any

from borealis.errors import BorealisError, Conflict

CA_BUNDLE_HINT = (
    "if the cluster uses its own certificate authority (Managed), point BOREALIS_DYNATRACE_CA_BUNDLE "
    "at its PEM file"
)


class DynatraceError(BorealisError):
    """Base of every error from the Dynatrace side."""

    status_code = 502
    code = "dynatrace_error"


class InvalidEnvironmentUrl(DynatraceError):
    """The environment URL cannot be used as given (format, scheme, credentials, private address)."""

    status_code = 422
    code = "invalid_environment_url"

    def __init__(self, message: str, *, field: str = "environmentUrl") -> None:
        super().__init__(f"{field}: {message}", details={"field": field})


class TokenRejected(DynatraceError):
    """The environment does not recognize the token."""

    status_code = 422
    code = "dynatrace_token_rejected"

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(
            message
            or (
                "apiToken: this Dynatrace environment does not recognize the token; check that you copied "
                "the whole token (dt0c01.…) and that it belongs to this environment"
            ),
            details={"field": "apiToken", **(details or {})},
        )


class TokenDisabled(DynatraceError):
    """The token exists but is disabled or past its expiry date."""

    status_code = 422
    code = "dynatrace_token_disabled"

    def __init__(self, reason: str = "disabled or expired") -> None:
        super().__init__(
            f"apiToken: the token is {reason}; enable it or generate a new one in Dynatrace under "
            "Access tokens, then connect again",
            details={"field": "apiToken"},
        )


class ScopeMissing(DynatraceError):
    """The token lacks a scope the call needs."""

    status_code = 422
    code = "dynatrace_scope_missing"

    def __init__(self, scope: str, *, purpose: str | None = None) -> None:
        self.scope = scope
        need = f" to {purpose}" if purpose else ""
        super().__init__(
            f"apiToken: the token lacks the scope '{scope}' needed{need}; add it to the token in Dynatrace "
            "(Access tokens > edit) or generate a new token with it",
            details={"field": "apiToken", "scope": scope},
        )


class EnvironmentNotFound(DynatraceError):
    """The URL answers, but not as a Dynatrace environment API (404, a web page, a redirect)."""

    status_code = 422
    code = "dynatrace_environment_not_found"

    def __init__(self, environment_url: str, *, what: str, suggest_managed_path: bool = False) -> None:
        hint = (
            "use the API domain https://{env-id}.live.dynatrace.com for SaaS, or "
            "https://{your-domain}/e/{environment-id} for Managed"
        )
        if suggest_managed_path:
            hint = (
                "this looks like a Managed cluster or custom domain: add /e/{environment-id} to the URL "
                f"(for example {environment_url}/e/abc12345)"
            )
        super().__init__(
            f"environmentUrl: {environment_url} {what}, so it is not a Dynatrace environment API; {hint}",
            details={"field": "environmentUrl"},
        )


class ResourceNotFound(DynatraceError):
    """The environment answered 404 for one object (a problem, an entity)."""

    status_code = 404
    code = "dynatrace_resource_not_found"


class Unreachable(DynatraceError):
    """No connection: DNS failure, connection refused, network unreachable."""

    status_code = 502
    code = "dynatrace_unreachable"


class TlsFailure(DynatraceError):
    """The TLS handshake or certificate check failed."""

    status_code = 502
    code = "dynatrace_tls_failure"

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(
            f"TLS with {host} failed ({reason}); check that the URL is the Dynatrace API address; "
            f"{CA_BUNDLE_HINT}"
        )


class Timeout(DynatraceError):
    """Dynatrace did not answer in time."""

    status_code = 504
    code = "dynatrace_timeout"


class RateLimited(DynatraceError):
    """Dynatrace kept answering 429 after our bounded retries."""

    status_code = 503
    code = "dynatrace_rate_limited"

    def __init__(self, retry_after: float | None) -> None:
        self.retry_after = retry_after
        wait = f" in about {round(retry_after)} s" if retry_after else " in a minute"
        super().__init__(
            f"Dynatrace is rate limiting requests with this token; try again{wait}",
            details={"retryAfterSeconds": round(retry_after) if retry_after else None},
        )


class UpstreamError(DynatraceError):
    """Dynatrace answered with an error we cannot attribute to the user's input (5xx, bad JSON, 400)."""

    status_code = 502
    code = "dynatrace_upstream_error"


class NotConnected(Conflict):
    """The user has no Dynatrace connection (or it was disconnected) and the operation needs one."""

    code = "dynatrace_not_connected"
