"""What can go wrong talking to Dynatrace, each with the message a user can act on.

Every concrete error is in one of two groups, named after what the caller does next: ``NeedsUserAction``
(nothing changes until the user fixes the token, its scopes, the URL or the CA bundle, so retrying is
pointless) and ``Transient`` (it may pass on its own: retry later). A caller catches a group once; it
names a single class only where that class has handling of its own (a 429's wait, a missing scope's name).

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
    """Base of every error from the Dynatrace side; never raised itself, only its groups' members."""

    status_code = 502
    code = "dynatrace_error"


class NeedsUserAction(DynatraceError):
    """Retrying cannot help: the token, its scopes, the URL, the TLS setup or the object asked for must
    change first. Each message says what to change."""


class Transient(DynatraceError):
    """Dynatrace or the network may recover on its own (rate limit, timeout, outage, 5xx): retry later."""


class InvalidEnvironmentUrl(NeedsUserAction):
    """The environment URL cannot be used as given (format, scheme, credentials, private address)."""

    status_code = 422
    code = "invalid_environment_url"

    def __init__(self, message: str, *, field: str = "environmentUrl") -> None:
        super().__init__(f"{field}: {message}", details={"field": field})


class TokenRejected(NeedsUserAction):
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


class TokenDisabled(NeedsUserAction):
    """The token exists but is disabled or past its expiry date."""

    status_code = 422
    code = "dynatrace_token_disabled"

    def __init__(self, reason: str = "disabled or expired") -> None:
        super().__init__(
            f"apiToken: the token is {reason}; enable it or generate a new one in Dynatrace under "
            "Access tokens, then connect again",
            details={"field": "apiToken"},
        )


class ScopeMissing(NeedsUserAction):
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


class EnvironmentNotFound(NeedsUserAction):
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


class ResourceNotFound(NeedsUserAction):
    """The environment answered 404 for one object (a problem, an entity): asking again finds nothing."""

    status_code = 404
    code = "dynatrace_resource_not_found"


class Unreachable(Transient):
    """No connection: DNS failure, connection refused, network unreachable.

    Transient although a mistyped host or port also lands here: connecting checks the URL live, so a
    stored connection that stops answering is far more often an outage or a network change than a typo,
    and the message still names the host to check."""

    status_code = 502
    code = "dynatrace_unreachable"


class TlsFailure(NeedsUserAction):
    """The TLS handshake or certificate check failed: the URL points at something else, or the cluster's
    certificate authority must be configured; neither fixes itself."""

    status_code = 502
    code = "dynatrace_tls_failure"

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(
            f"TLS with {host} failed ({reason}); check that the URL is the Dynatrace API address; "
            f"{CA_BUNDLE_HINT}"
        )


class Timeout(Transient):
    """Dynatrace did not answer in time."""

    status_code = 504
    code = "dynatrace_timeout"


class RateLimited(Transient):
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


class UpstreamError(Transient):
    """Dynatrace answered with an error we cannot attribute to the user's input (5xx, bad JSON, 400)."""

    status_code = 502
    code = "dynatrace_upstream_error"


class NotConnected(Conflict):
    """The user has no Dynatrace connection (or it was disconnected) and the operation needs one. A state of
    ours, not an answer from Dynatrace, so it is a ``Conflict`` outside the ``DynatraceError`` tree."""

    code = "dynatrace_not_connected"
