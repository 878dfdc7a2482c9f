"""The HTTP side of the Dynatrace Environment API: one environment, one token, calls that fail clearly.

Synchronous httpx: used from request threads and background workers alike. It authenticates with
``Authorization: Api-Token``, refuses non-public addresses unless allowed, backs off on 429 as Dynatrace
asks, pages with ``nextPageKey``, and turns every failure into a ``DynatraceError`` (``error_mapping``).
The token is never logged and never appears in an error. The API calls themselves are in ``client``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from pathlib import Path
from typing import Any, Self

import httpx

from borealis.config import Settings
from borealis.dynatrace.error_mapping import (
    error_for_response,
    host_of,
    not_an_api,
    not_json,
    timeout_error,
    transport_error,
)
from borealis.dynatrace.errors import DynatraceError, EnvironmentNotFound, RateLimited, UpstreamError
from borealis.dynatrace.urls import Resolver, check_destination, system_resolver
from borealis.observability import record_dynatrace_call

logger = logging.getLogger("borealis.dynatrace")

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT = 30.0
MAX_PAGES = 1000

QueryValue = str | int | None
ApiCallRecorder = Callable[[str, "int | str"], None]
_recorder: ApiCallRecorder | None = record_dynatrace_call


def set_api_call_recorder(recorder: ApiCallRecorder | None) -> None:
    """Install the metrics sink for ``record_api_call`` (None: calls are not recorded)."""
    global _recorder
    _recorder = recorder


def record_api_call(endpoint: str, status: int | str) -> None:
    """Count one Dynatrace call: ``endpoint`` like ``GET /api/v2/problems``, ``status`` the HTTP status
    or the failure kind (``timeout``, ``unreachable``, ``tls``, ``error``). Recorded as a metric unless another recorder is set."""
    recorder = _recorder
    if recorder is None:
        return
    try:
        recorder(endpoint, status)
    except Exception:  # metrics must never break a call
        logger.debug("api call recorder failed", exc_info=True)


class _PublicOnlyTransport(httpx.BaseTransport):
    """Resolve, refuse non-public addresses, and connect to the address that was checked.

    Pinning the checked address (with the original Host header and TLS server name) closes the gap in
    which DNS could answer differently between the check and the connection.
    """

    def __init__(self, inner: httpx.BaseTransport, resolver: Resolver) -> None:
        self._inner = inner
        self._resolver = resolver

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        origin = f"{request.url.scheme}://{host}" + (f":{request.url.port}" if request.url.port else "")
        addresses = check_destination(origin, allow_private=False, resolver=self._resolver)
        request.url = request.url.copy_with(host=str(addresses[0]))
        request.extensions = {**request.extensions, "sni_hostname": host}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _ssl_context(ca_bundle: Path | str | None) -> ssl.SSLContext:
    """The system's trust store, plus the operator's CA bundle for Managed clusters with their own CA."""
    context = ssl.create_default_context()
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


class EnvironmentTransport:
    """One environment, one token. Close it (or use ``with``) to release connections."""

    def __init__(
        self,
        environment_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ca_bundle: Path | str | None = None,
        allow_private: bool = False,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        transport: httpx.BaseTransport | None = None,
        resolver: Resolver = system_resolver,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.environment_url = environment_url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._token = token
        self._sleep = sleep
        if transport is None:
            transport = httpx.HTTPTransport(verify=_ssl_context(ca_bundle))
        if not allow_private:
            transport = _PublicOnlyTransport(transport, resolver)
        self._http = httpx.Client(
            base_url=self.environment_url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            # Proxies from the environment would bypass the address check; Dynatrace is called directly.
            trust_env=False,
            headers={"Accept": "application/json", "User-Agent": "borealis"},
        )

    @classmethod
    def from_settings(cls, environment_url: str, token: str, settings: Settings, **kwargs: Any) -> Self:
        """A client configured by the settings (timeout, CA bundle, private hosts)."""
        return cls(
            environment_url,
            token,
            timeout=settings.dynatrace_timeout,
            ca_bundle=settings.dynatrace_ca_bundle,
            allow_private=settings.allow_private_dynatrace,
            **kwargs,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- requests ---------------------------------------------------------------------------------

    def get_json(
        self,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        scope: str | None = None,
        endpoint: str | None = None,
    ) -> Any:
        """GET ``path`` (relative to the environment URL) and return the decoded JSON."""
        return self.request_json("GET", path, params=params, scope=scope, endpoint=endpoint)

    def paged(
        self,
        path: str,
        items_key: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        scope: str | None = None,
        endpoint: str | None = None,
        max_pages: int = MAX_PAGES,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list. The next page is asked for with ``nextPageKey`` alone (Dynatrace
        refuses other parameters beside it), and "more pages" is decided by ``nextPageKey`` alone:
        ``totalCount`` can disagree, and the string ``"null"`` means there is none."""
        query: dict[str, QueryValue] = dict(params or {})
        seen: set[str] = set()
        for _ in range(max_pages):
            body = self.get_json(path, params=query, scope=scope, endpoint=endpoint)
            if not isinstance(body, dict):
                raise self._not_an_api(f"answers {path} with something that is not a list")
            items = body.get(items_key)
            if isinstance(items, list):
                yield from (item for item in items if isinstance(item, dict))
            next_key = body.get("nextPageKey")
            if not isinstance(next_key, str) or next_key in ("", "null") or next_key in seen:
                return
            seen.add(next_key)
            query = {"nextPageKey": next_key}
        raise UpstreamError(f"Dynatrace returned more than {max_pages} pages for {path}; narrow the query")

    def request_json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None = None,
        json_body: Any = None,
        scope: str | None = None,
        endpoint: str | None = None,
        not_found: Callable[[str], DynatraceError] | None = None,
    ) -> Any:
        """Send one request (retrying 429s) and return its JSON, or raise the matching DynatraceError."""
        label = endpoint or f"{method} {path}"
        response = self._send_with_backoff(method, path, params=params, json_body=json_body, label=label)
        if response.status_code == 204 or (response.is_success and not response.content):
            # No content (a 204, or a 201 that creates without describing what it made).
            return None
        if response.is_success:
            return self._decode(response)
        raise error_for_response(
            response, environment_url=self.environment_url, scope=scope, not_found=not_found
        )

    # ---- internals --------------------------------------------------------------------------------

    def _send_with_backoff(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, QueryValue] | None,
        json_body: Any,
        label: str,
    ) -> httpx.Response:
        clean = {name: value for name, value in (params or {}).items() if value is not None}
        wait: float | None = None
        for attempt in range(self.max_retries + 1):
            response = self._send(method, path, params=clean, json_body=json_body, label=label)
            if response.status_code != 429:
                return response
            wait = retry_wait(response.headers, attempt=attempt, max_wait=self.max_retry_wait)
            if attempt < self.max_retries:
                logger.info("Dynatrace rate limit on %s; retrying in %.1f s", label, wait)
                self._sleep(wait)
        raise RateLimited(wait)

    def _send(
        self, method: str, path: str, *, params: Mapping[str, QueryValue], json_body: Any, label: str
    ) -> httpx.Response:
        headers = {"Authorization": f"Api-Token {self._token}"}
        try:
            response = self._http.request(method, path, params=params, json=json_body, headers=headers)
        except httpx.TimeoutException as exc:
            record_api_call(label, "timeout")
            raise timeout_error(exc, host=self._host, timeout=self.timeout) from None
        except httpx.HTTPError as exc:
            kind, error = transport_error(exc, host=self._host)
            record_api_call(label, kind)
            raise error from None
        except DynatraceError:
            record_api_call(label, "refused")
            raise
        record_api_call(label, response.status_code)
        return response

    def _decode(self, response: httpx.Response) -> Any:
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type.lower():
            raise not_json(self.environment_url, content_type)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self._not_an_api("answers with malformed JSON") from None

    @property
    def _host(self) -> str:
        return host_of(self.environment_url)

    def _not_an_api(self, what: str) -> EnvironmentNotFound:
        return not_an_api(self.environment_url, what)


def retry_wait(
    headers: Mapping[str, str], *, attempt: int, max_wait: float, now: float | None = None
) -> float:
    """Seconds to wait after a 429: ``Retry-After``, else ``X-RateLimit-Reset``, else exponential.

    ``X-RateLimit-Reset`` is an epoch timestamp whose unit differs between Dynatrace's own clients
    (microseconds, milliseconds or seconds); the magnitude tells them apart. The wait is clamped to
    [0.1, max_wait].
    """
    now = time.time() if now is None else now
    wait = _retry_after(headers.get("retry-after"), now)
    if wait is None:
        wait = _rate_limit_reset(headers.get("x-ratelimit-reset"), now)
    if wait is None:
        wait = float(2**attempt)
    return min(max(wait, 0.1), max_wait)


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() - now


def _rate_limit_reset(value: str | None, now: float) -> float | None:
    if not value:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if number > 1e14:  # epoch microseconds
        return number / 1e6 - now
    if number > 1e11:  # epoch milliseconds
        return number / 1e3 - now
    if number > 1e9:  # epoch seconds
        return number - now
    return number  # already a delay in seconds
