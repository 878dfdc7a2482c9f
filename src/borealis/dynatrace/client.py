"""The Dynatrace Environment API calls Borealis makes: token, problems, entities, events, logs, metrics
and Settings 2.0 objects.

Sending, paging, backing off and turning failures into ``DynatraceError`` are the transport's
(``transport.EnvironmentTransport``). Adding an API: a method that calls ``self.get_json`` or
``self.paged`` with the path, the scope it needs and the metric label of the endpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from borealis.dynatrace.error_mapping import constraint_violations
from borealis.dynatrace.errors import ResourceNotFound, ScopeMissing, TokenRejected, UpstreamError
from borealis.dynatrace.transport import EnvironmentTransport, QueryValue

PROBLEM_DETAIL_FIELDS = ("evidenceDetails", "impactAnalysis", "recentComments")
SETTINGS_OBJECTS = "/api/v2/settings/objects"
SETTINGS_LIST_FIELDS = ("objectId", "value")


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


class DynatraceClient(EnvironmentTransport):
    """The Environment API of one environment, called with one token."""

    def __repr__(self) -> str:
        return f"DynatraceClient({self.environment_url!r})"

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
            _problem_path(problem_id),
            params={"fields": _fields(fields)},
            scope="problems.read",
            endpoint="GET /api/v2/problems/{problemId}",
        )
        return _object(body, "problem")

    def list_comments(self, problem_id: str) -> list[dict[str, Any]]:
        """Every comment on the problem, newest first (``Comment``: id, content, context, ...)."""
        return list(
            self.paged(
                f"{_problem_path(problem_id)}/comments",
                "comments",
                params={"pageSize": 500},
                scope="problems.read",
                endpoint="GET /api/v2/problems/{problemId}/comments",
            )
        )

    def add_comment(self, problem_id: str, message: str, *, context: str) -> None:
        """Add a comment (201, no body: the new comment's id is learnt by listing the comments)."""
        self.request_json(
            "POST",
            f"{_problem_path(problem_id)}/comments",
            json_body={"message": message, "context": context},
            scope="problems.write",
            endpoint="POST /api/v2/problems/{problemId}/comments",
        )

    def update_comment(self, problem_id: str, comment_id: str, message: str, *, context: str) -> None:
        """Replace a comment's text (204). ResourceNotFound when someone deleted it."""
        self.request_json(
            "PUT",
            f"{_problem_path(problem_id)}/comments/{quote(comment_id, safe='')}",
            json_body={"message": message, "context": context},
            scope="problems.write",
            endpoint="PUT /api/v2/problems/{problemId}/comments/{commentId}",
        )

    def close_problem(self, problem_id: str, message: str) -> bool:
        """Close the problem with a closing comment; False when it was closed already (204)."""
        body = self.request_json(
            "POST",
            f"{_problem_path(problem_id)}/close",
            json_body={"message": message},
            scope="problems.write",
            endpoint="POST /api/v2/problems/{problemId}/close",
        )
        return bool(body)

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


def _problem_path(problem_id: str) -> str:
    return f"/api/v2/problems/{quote(problem_id, safe='')}"


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
        details = constraint_violations(error)
        if details:
            message = f"{message} ({details})"
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
