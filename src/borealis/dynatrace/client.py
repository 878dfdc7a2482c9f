"""The Dynatrace Environment API client.

Synchronous httpx: used from request threads and background workers alike. It authenticates with
``Authorization: Api-Token``, backs off on 429 as Dynatrace asks, pages with ``nextPageKey``, and turns
every failure into a ``DynatraceError`` whose message says what to fix. The token is never logged and
never appears in an error.

Adding an API (events, logs, metrics): a method that calls ``self.get_json`` or ``self.paged`` with the
path, the scope it needs and the metric label of the endpoint.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from borealis.config import Settings
from borealis.dynatrace.errors import (
    DynatraceError,
    EnvironmentNotFound,
    RateLimited,
    ResourceNotFound,
    ScopeMissing,
    TlsFailure,
    TokenDisabled,
    TokenRejected,
    Unreachable,
    UpstreamError,
)
from borealis.dynatrace.errors import Timeout as DynatraceTimeout
from borealis.dynatrace.urls import Resolver, check_destination, needs_managed_path, system_resolver

logger = logging.getLogger("borealis.dynatrace")

DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT = 30.0
MAX_PAGES = 1000
PROBLEM_DETAIL_FIELDS = ("evidenceDetails", "impactAnalysis", "recentComments")
SETTINGS_OBJECTS = "/api/v2/settings/objects"
SETTINGS_LIST_FIELDS = ("objectId", "value")
_MISSING_SCOPE = re.compile(r"Use one of:\s*([A-Za-z0-9_.]+)")

QueryValue = str | int | None
ApiCallRecorder = Callable[[str, "int | str"], None]
_recorder: ApiCallRecorder | None = None


def set_api_call_recorder(recorder: ApiCallRecorder | None) -> None:
    """Install the metrics sink for ``record_api_call`` (None: calls are not recorded)."""
    global _recorder
    _recorder = recorder


def record_api_call(endpoint: str, status: int | str) -> None:
    """Count one Dynatrace call: ``endpoint`` like ``GET /api/v2/problems``, ``status`` the HTTP status
    or the failure kind (``timeout``, ``unreachable``, ``tls``, ``error``). A no-op until a recorder is set."""
    recorder = _recorder
    if recorder is None:
        return
    try:
        recorder(endpoint, status)
    except Exception:  # metrics must never break a call
        logger.debug("api call recorder failed", exc_info=True)


@dataclass(frozen=True)
class TokenInfo:
    """What ``POST /api/v2/apiTokens/lookup`` says about a token (never the token itself)."""

    id: str | None
    name: str | None
    enabled: bool
    scopes: list[str] = field(default_factory=list)
    expires_at: datetime | None = None
    owner: str | None = None
    personal: bool = False

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


def parse_dynatrace_time(value: object) -> datetime | None:
    """ISO 8601 (``2020-11-12T08:15:30.144Z``) or UTC milliseconds, as Dynatrace writes them."""
    if value in (None, "", -1):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def to_query_time(value: datetime | int | str) -> str:
    """A timeframe bound in a form the API accepts (datetimes become UTC milliseconds)."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given as a Dynatrace timeframe")
        return str(int(value.timestamp() * 1000))
    return str(value)


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


class DynatraceClient:
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
    def from_settings(
        cls, environment_url: str, token: str, settings: Settings, **kwargs: Any
    ) -> DynatraceClient:
        """A client configured by the settings (timeout, CA bundle, private hosts)."""
        return cls(
            environment_url,
            token,
            timeout=settings.dynatrace_timeout,
            ca_bundle=settings.dynatrace_ca_bundle,
            allow_private=settings.allow_private_dynatrace,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"DynatraceClient({self.environment_url!r})"

    def __enter__(self) -> DynatraceClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- API methods ------------------------------------------------------------------------------

    def lookup_token(self) -> TokenInfo:
        """The token's own metadata: scopes, enabled, expiry. TokenRejected if the environment does not
        know it."""
        body = self.request_json(
            "POST",
            "/api/v2/apiTokens/lookup",
            endpoint="POST /api/v2/apiTokens/lookup",
            json_body={"token": self._token},
            not_found=lambda _message: TokenRejected(),
        )
        if not isinstance(body, dict):
            raise self._not_an_api("answers the token lookup with something that is not a token")
        scopes = body.get("scopes")
        return TokenInfo(
            id=_str_or_none(body.get("id")),
            name=_str_or_none(body.get("name")),
            enabled=body.get("enabled") is not False,
            scopes=[scope for scope in scopes if isinstance(scope, str)] if isinstance(scopes, list) else [],
            expires_at=parse_dynatrace_time(body.get("expirationDate")),
            owner=_str_or_none(body.get("owner")),
            personal=body.get("personalAccessToken") is True,
        )

    def cluster_version(self) -> str | None:
        """The cluster's version, or None when the token lacks ``DataExport`` (the version is optional)."""
        try:
            body = self.get_json(
                "/api/v1/config/clusterversion",
                scope="DataExport",
                endpoint="GET /api/v1/config/clusterversion",
            )
        except ScopeMissing:
            return None
        version = body.get("version") if isinstance(body, dict) else None
        return version if isinstance(version, str) else None

    def list_problems(
        self,
        from_: datetime | int | str,
        to: datetime | int | str | None = None,
        fields: Sequence[str] | str | None = None,
        problem_selector: str | None = None,
        *,
        page_size: int = 500,
    ) -> list[dict[str, Any]]:
        """Every problem in the timeframe (all pages), newest first as Dynatrace orders them."""
        params: dict[str, QueryValue] = {
            "from": to_query_time(from_),
            "to": to_query_time(to) if to is not None else None,
            "fields": _fields(fields),
            "problemSelector": problem_selector,
            "pageSize": page_size,
        }
        return list(
            self.paged(
                "/api/v2/problems",
                "problems",
                params=params,
                scope="problems.read",
                endpoint="GET /api/v2/problems",
            )
        )

    def get_problem(
        self, problem_id: str, fields: Sequence[str] | str | None = PROBLEM_DETAIL_FIELDS
    ) -> dict[str, Any]:
        """One problem by its internal id (the webhook's PID), with evidence and impact by default."""
        body = self.get_json(
            f"/api/v2/problems/{quote(problem_id, safe='')}",
            params={"fields": _fields(fields)},
            scope="problems.read",
            endpoint="GET /api/v2/problems/{problemId}",
        )
        return _object(body, "problem")

    def get_entity(self, entity_id: str, fields: Sequence[str] | str | None = None) -> dict[str, Any]:
        """One monitored entity with its properties and relationships."""
        body = self.get_json(
            f"/api/v2/entities/{quote(entity_id, safe='')}",
            params={"fields": _fields(fields, plus=True)},
            scope="entities.read",
            endpoint="GET /api/v2/entities/{entityId}",
        )
        return _object(body, "entity")

    def list_entities(
        self, entity_selector: str, fields: Sequence[str] | str | None = None, *, page_size: int = 500
    ) -> list[dict[str, Any]]:
        """Every entity the selector matches (all pages), with the extra ``fields`` asked for."""
        params: dict[str, QueryValue] = {
            "entitySelector": entity_selector,
            "fields": _fields(fields, plus=True),
            "pageSize": page_size,
        }
        return list(
            self.paged(
                "/api/v2/entities",
                "entities",
                params=params,
                scope="entities.read",
                endpoint="GET /api/v2/entities",
            )
        )

    def list_events(
        self,
        from_: datetime | int | str,
        to: datetime | int | str | None = None,
        *,
        entity_selector: str | None = None,
        event_selector: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        """Events in the timeframe (deployments, configuration changes, restarts, anomalies), at most
        ``limit`` of them across pages. An entity selector's ids must share one type (the API's rule)."""
        params: dict[str, QueryValue] = {
            "from": to_query_time(from_),
            "to": to_query_time(to) if to is not None else None,
            "entitySelector": entity_selector,
            "eventSelector": event_selector,
            "pageSize": min(max(limit, 1), 1000),
        }
        items = self.paged(
            "/api/v2/events", "events", params=params, scope="events.read", endpoint="GET /api/v2/events"
        )
        return list(itertools.islice(items, limit))

    def search_logs(
        self,
        query: str,
        from_: datetime | int | str,
        to: datetime | int | str | None = None,
        *,
        limit: int = 100,
        sort: str = "-timestamp",
    ) -> list[dict[str, Any]]:
        """Log records matching ``query`` (Dynatrace's log search language), newest first by default.
        Only the first slice is read: ``limit`` bounds the answer anyway."""
        body = self.get_json(
            "/api/v2/logs/search",
            params={
                "query": query,
                "from": to_query_time(from_),
                "to": to_query_time(to) if to is not None else None,
                "limit": min(max(limit, 1), 1000),
                "sort": sort,
            },
            scope="logs.read",
            endpoint="GET /api/v2/logs/search",
        )
        results = _object(body, "log search result").get("results")
        return (
            [record for record in results if isinstance(record, dict)][:limit]
            if isinstance(results, list)
            else []
        )

    def query_metrics(
        self,
        metric_selector: str,
        from_: datetime | int | str,
        to: datetime | int | str | None = None,
        *,
        entity_selector: str | None = None,
        resolution: str | None = None,
    ) -> dict[str, Any]:
        """Data points of up to 10 metrics (``metricSelector``), as Dynatrace's MetricData object."""
        body = self.get_json(
            "/api/v2/metrics/query",
            params={
                "metricSelector": metric_selector,
                "from": to_query_time(from_),
                "to": to_query_time(to) if to is not None else None,
                "entitySelector": entity_selector,
                "resolution": resolution,
            },
            scope="metrics.read",
            endpoint="GET /api/v2/metrics/query",
        )
        return _object(body, "metric query result")

    # ---- Settings 2.0 ------------------------------------------------------------------------------

    def list_settings_objects(
        self,
        schema_ids: Sequence[str] | str,
        *,
        scopes: Sequence[str] | str | None = None,
        fields: Sequence[str] | str | None = SETTINGS_LIST_FIELDS,
        filter: str | None = None,
        page_size: int = 100,
    ) -> list[dict[str, Any]]:
        """Every persisted settings object of the schemas (all pages). ``filter`` is passed through for
        clusters that understand it (newer than the 1.254 spec); callers that must work everywhere match
        the values themselves."""
        params: dict[str, QueryValue] = {
            "schemaIds": _csv(schema_ids),
            "scopes": _csv(scopes) if scopes is not None else None,
            "fields": _csv(fields) if fields is not None else None,
            "filter": filter,
            "pageSize": min(max(page_size, 1), 500),
        }
        return list(
            self.paged(
                SETTINGS_OBJECTS,
                "items",
                params=params,
                scope="settings.read",
                endpoint="GET /api/v2/settings/objects",
            )
        )

    def get_settings_object(self, object_id: str) -> dict[str, Any]:
        """One settings object; Dynatrace masks its secret values."""
        body = self.get_json(
            _settings_object_path(object_id),
            scope="settings.read",
            endpoint="GET /api/v2/settings/objects/{objectId}",
        )
        return _object(body, "settings object")

    def create_settings_object(
        self,
        schema_id: str,
        value: Mapping[str, Any],
        *,
        scope: str = "environment",
        external_id: str | None = None,
    ) -> str:
        """Create one settings object and return its objectId. Dynatrace answers per object (200, or
        207 when a batch is mixed); an object-level error becomes a DynatraceError."""
        item: dict[str, Any] = {"schemaId": schema_id, "scope": scope, "value": dict(value)}
        if external_id is not None:
            item["externalId"] = external_id
        body = self.request_json(
            "POST",
            SETTINGS_OBJECTS,
            json_body=[item],
            scope="settings.write",
            endpoint="POST /api/v2/settings/objects",
        )
        answers = body if isinstance(body, list) else []
        return _settings_object_id(answers[0] if answers else None, verb="create")

    def update_settings_object(
        self, object_id: str, value: Mapping[str, Any], *, update_token: str | None = None
    ) -> str:
        """Replace a settings object's value (the whole value: secrets are sent again, since reads mask
        them) and return its objectId. With ``update_token``, a concurrent change answers 409."""
        payload: dict[str, Any] = {"value": dict(value)}
        if update_token is not None:
            payload["updateToken"] = update_token
        body = self.request_json(
            "PUT",
            _settings_object_path(object_id),
            json_body=payload,
            scope="settings.write",
            endpoint="PUT /api/v2/settings/objects/{objectId}",
        )
        return _settings_object_id(body, verb="update", fallback=object_id)

    def delete_settings_object(self, object_id: str, *, update_token: str | None = None) -> None:
        """Delete a settings object (204). ResourceNotFound when it is already gone."""
        self.request_json(
            "DELETE",
            _settings_object_path(object_id),
            params={"updateToken": update_token},
            scope="settings.write",
            endpoint="DELETE /api/v2/settings/objects/{objectId}",
        )

    # ---- generic helpers --------------------------------------------------------------------------

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
        if response.status_code == 204:
            return None
        if response.is_success:
            return self._decode(response)
        raise self._error_for(response, scope=scope, not_found=not_found)

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
            raise self._timeout(exc) from None
        except httpx.HTTPError as exc:
            kind, error = self._transport_error(exc)
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
            raise self._not_an_api(
                f"answers with {_describe_content(content_type)} instead of JSON"
                if content_type
                else "answers without content"
            )
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise self._not_an_api("answers with malformed JSON") from None

    def _error_for(
        self,
        response: httpx.Response,
        *,
        scope: str | None,
        not_found: Callable[[str], DynatraceError] | None,
    ) -> DynatraceError:
        status = response.status_code
        message = _envelope_message(response)
        if response.is_redirect:
            location = response.headers.get("location", "elsewhere")
            return self._not_an_api(f"redirects to {location} (a sign-in page or the web UI)")
        if status == 401:
            if message is None:
                return UpstreamError(
                    f"{self._host} asked for credentials (401) without a Dynatrace error: a proxy in front of "
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
                    f"{self._host} refused the request (403) without a Dynatrace error: a proxy or firewall "
                    "may be in the way; check that outbound HTTPS to Dynatrace is allowed"
                )
            found = _MISSING_SCOPE.search(message)
            return ScopeMissing(found.group(1) if found else (scope or "unknown"))
        if status == 404:
            if message is None:
                return self._not_an_api("answers 404 Not Found")
            return not_found(message) if not_found else ResourceNotFound(f"Dynatrace: {message}")
        if status >= 500:
            detail = f" ({message})" if message else ""
            return UpstreamError(
                f"Dynatrace at {self._host} answered {status}{detail}; this is on the Dynatrace side, try "
                "again later"
            )
        if message is None and status in (400, 405):
            return self._not_an_api(f"answers {status}")
        return UpstreamError(f"Dynatrace refused the request ({status}): {message or 'no details'}")

    @property
    def _host(self) -> str:
        return urlsplit(self.environment_url).netloc

    def _not_an_api(self, what: str) -> EnvironmentNotFound:
        return EnvironmentNotFound(
            self.environment_url, what=what, suggest_managed_path=needs_managed_path(self.environment_url)
        )

    def _timeout(self, exc: httpx.TimeoutException) -> DynatraceTimeout:
        if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
            return DynatraceTimeout(
                f"connecting to {self._host} timed out after {self.timeout:g} s; check network connectivity "
                "and that firewall rules allow outbound HTTPS to Dynatrace (for Managed: is the cluster "
                "reachable from this server?)"
            )
        return DynatraceTimeout(
            f"Dynatrace at {self._host} did not answer within {self.timeout:g} s; try again, or raise "
            "BOREALIS_DYNATRACE_TIMEOUT if the environment is slow"
        )

    def _transport_error(self, exc: httpx.HTTPError) -> tuple[str, DynatraceError]:
        text = " ".join(str(item) for item in _exception_chain(exc)).lower()
        chain = _exception_chain(exc)
        if any(isinstance(item, ssl.SSLError) for item in chain) or "ssl" in text or "certificate" in text:
            reason = "certificate not trusted" if "certificate" in text else "handshake failed"
            return "tls", TlsFailure(self._host, reason)
        if any(isinstance(item, ConnectionRefusedError) for item in chain) or "refused" in text:
            return "unreachable", Unreachable(
                f"{self._host} refused the connection; check the port in environmentUrl and, for Managed, "
                "that the cluster is reachable from this server"
            )
        if (
            "name or service not known" in text
            or "nodename nor servname" in text
            or "name resolution" in text
        ):
            return "unreachable", Unreachable(
                f"the host name in environmentUrl ({self._host}) cannot be resolved (DNS); check its spelling"
            )
        if isinstance(exc, httpx.ConnectError | httpx.NetworkError):
            return "unreachable", Unreachable(
                f"cannot connect to {self._host}; check network connectivity and that firewall rules allow "
                "outbound HTTPS to Dynatrace"
            )
        return "error", UpstreamError(
            f"the connection to {self._host} failed ({type(exc).__name__}); try again later"
        )


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


def _envelope_message(response: httpx.Response) -> str | None:
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
    violations = error.get("constraintViolations")
    text = message if isinstance(message, str) else ""
    if isinstance(violations, list):
        details = [
            f"{item.get('path')}: {item.get('message')}" for item in violations if isinstance(item, dict)
        ]
        if details:
            text = f"{text} ({'; '.join(details)})" if text else "; ".join(details)
    return text or "no message"


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe_content(content_type: str) -> str:
    return "a web page" if "html" in content_type.lower() else f"'{content_type.split(';')[0]}'"


def _fields(fields: Sequence[str] | str | None, *, plus: bool = False) -> str | None:
    """The ``fields`` parameter: problems take bare names, entities want a leading ``+`` on each."""
    if fields is None:
        return None
    if isinstance(fields, str):
        return fields or None
    prefix = "+" if plus else ""
    return ",".join(prefix + name.lstrip("+") for name in fields) or None


def _csv(values: Sequence[str] | str) -> str | None:
    if isinstance(values, str):
        return values or None
    return ",".join(values) or None


def _settings_object_path(object_id: str) -> str:
    return f"{SETTINGS_OBJECTS}/{quote(object_id, safe='')}"


def _settings_object_id(answer: Any, *, verb: str, fallback: str | None = None) -> str:
    """The objectId of a SettingsObjectResponse, or the DynatraceError its ``code`` and ``error`` mean.

    Never reads ``invalidValue``: it echoes what was sent, secrets included."""
    if not isinstance(answer, dict):
        raise UpstreamError(f"Dynatrace answered the settings {verb} with something that is not a result")
    code = answer.get("code")
    if isinstance(code, int) and code >= 400:
        error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
        message = error.get("message") if isinstance(error.get("message"), str) else "no details"
        violations = error.get("constraintViolations")
        if isinstance(violations, list):
            details = [
                f"{item.get('path')}: {item.get('message')}" for item in violations if isinstance(item, dict)
            ]
            if details:
                message = f"{message} ({'; '.join(details)})"
        if code == 404:
            raise ResourceNotFound(f"Dynatrace: {message}")
        raise UpstreamError(f"Dynatrace refused the settings {verb} ({code}): {message}")
    object_id = answer.get("objectId")
    if isinstance(object_id, str) and object_id:
        return object_id
    if fallback is not None:
        return fallback
    raise UpstreamError(f"Dynatrace answered the settings {verb} without an objectId")


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise UpstreamError(f"Dynatrace answered with something that is not a {what}")
    return body


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
