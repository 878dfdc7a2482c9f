"""The state of a simulated Dynatrace environment: a real HTTP server speaking the Environment API
(spec 1.254.47).

Tests and the demo edit ``FakeDynatrace`` directly: tokens (scopes, enabled, expiry), problems, entities,
events, metric series, settings objects, and failures per path. Every endpoint authenticates like
Dynatrace (``Authorization: Api-Token ...``) and answers errors in Dynatrace's envelope
``{"error": {"code", "message"}}``; paged lists use ``fake.page(request, items, "events")``, which
implements nextPageKey as Dynatrace does. The routes are in ``server.py``, the handlers in ``api*.py``, the
selector language in ``selectors.py``.

The environment is served both at the root (SaaS: ``https://{id}.live.dynatrace.com``) and under
``/e/{environment_id}`` (Managed). With ``managed = True`` only the ``/e/{id}`` form answers; the root
answers 404 with a web page, as a Managed cluster's UI would.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import secrets
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from borealis.simulation.selectors import to_millis
from borealis.simulation.server import RecordedRequest, build_app, dt_error, serving

DEFAULT_CLUSTER_VERSION = "1.254.47.20221025-144524"
DEFAULT_ENVIRONMENT_ID = "abc12345"
DEFAULT_PAGE_SIZE = 50
PROBLEM_NOTIFICATION_SCHEMA = "builtin:problem.notifications"
ALERTING_PROFILE_SCHEMA = "builtin:alerting.profile"
DEFAULT_ALERTING_PROFILE = "Default"
SECRET_MASK = "*" * 10
MAX_PAGE_SIZE = 500
SCOPE_TITLES = {
    "problems.read": "Read problems",
    "entities.read": "Read entities",
    "events.read": "Read events",
    "logs.read": "Read logs",
    "metrics.read": "Read metrics",
    "settings.read": "Read settings",
    "settings.write": "Write settings",
    "problems.write": "Write problems",
    "DataExport": "Access problem and event feed, metrics, and topology",
    "apiTokens.read": "Read API tokens",
    "ReadConfig": "Read configuration",
}
ALL_SCOPES = (
    "problems.read",
    "entities.read",
    "events.read",
    "logs.read",
    "metrics.read",
    "settings.read",
    "settings.write",
    "problems.write",
    "DataExport",
)


@dataclass
class FakeToken:
    secret: str
    scopes: list[str]
    enabled: bool = True
    expires_at: datetime | None = None
    name: str = "borealis"
    owner: str = "sre@example.com"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC) - timedelta(days=1))

    @property
    def id(self) -> str:
        """Prefix and public part, as Dynatrace shows it; never the secret part."""
        return ".".join(self.secret.split(".")[:2])

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


@dataclass
class Failure:
    """What one matching request gets instead of the normal answer."""

    pattern: str
    method: str | None = None
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    html: bool = False
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return fnmatch.fnmatchcase(path, self.pattern)


def new_token_secret() -> str:
    """A token in Dynatrace's format: ``dt0c01.<24>.<64>``."""
    alphabet = string.ascii_uppercase + string.digits
    public = "".join(secrets.choice(alphabet) for _ in range(24))
    private = "".join(secrets.choice(alphabet) for _ in range(64))
    return f"dt0c01.{public}.{private}"


_UNSET = object()


class FakeDynatrace:
    """The state of one fake environment and the ASGI app that serves it."""

    def __init__(self) -> None:
        self.url = ""
        self.lock = threading.Lock()
        self.app = build_app(self)
        self.reset()

    # ---- state ------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything tests added: a fresh environment with no tokens."""
        with self.lock:
            self.environment_id = DEFAULT_ENVIRONMENT_ID
            self.managed = False
            self.cluster_version = DEFAULT_CLUSTER_VERSION
            self.tokens: dict[str, FakeToken] = {}
            self.problems: dict[str, dict[str, Any]] = {}
            # problemId -> its comments (the v2 ``Comment`` shape), oldest first.
            self.comments: dict[str, list[dict[str, Any]]] = {}
            self.entities: dict[str, dict[str, Any]] = {}
            self.failures: list[Failure] = []
            self.requests: list[RecordedRequest] = []
            # How the last page says "no more": "absent", "null" (JSON null) or "string-null" ("null").
            self.last_page_key = "absent"
            # Lie about totalCount (Dynatrace's can disagree with the pages); None: the true count.
            self.total_count_override: int | None = None
            self._pages: dict[str, tuple[str, list[dict[str, Any]], int, int]] = {}
            # Events (v2 shape), log records (with entity attributes in additionalColumns), and metric
            # series per metric key: {"dimensionMap", "dimensions", "timestamps", "values"}.
            self.events: list[dict[str, Any]] = []
            self.logs: list[dict[str, Any]] = []
            self.metrics: dict[str, list[dict[str, Any]]] = {}
            # Settings 2.0 objects by objectId (SettingsObject shape, secrets stored in clear); every
            # environment starts with the alerting profile named Default.
            self.settings_objects: dict[str, dict[str, Any]] = {}
            self._settings_clock = 0
        self.default_alerting_profile = self.add_alerting_profile(DEFAULT_ALERTING_PROFILE)

    @property
    def environment_url(self) -> str:
        """The URL a user would paste: the root (SaaS form) or ``/e/{id}`` when managed."""
        return f"{self.url}/e/{self.environment_id}" if self.managed else self.url

    def add_token(
        self,
        scopes: list[str] | tuple[str, ...] = ALL_SCOPES,
        *,
        enabled: bool = True,
        expires_at: datetime | None = None,
        name: str = "borealis",
    ) -> str:
        """Create a token and return its secret."""
        secret = new_token_secret()
        with self.lock:
            self.tokens[secret] = FakeToken(
                secret=secret, scopes=list(scopes), enabled=enabled, expires_at=expires_at, name=name
            )
        return secret

    def token(self, secret: str) -> FakeToken:
        return self.tokens[secret]

    def add_problem(self, **fields: Any) -> dict[str, Any]:
        """Store a problem in the v2 API shape; unspecified fields get plausible values."""
        now = datetime.now(UTC)
        number = len(self.problems) + 1
        problem: dict[str, Any] = {
            "problemId": f"-{1000000000000000000 + number}_{to_millis(now)}V2",
            "displayId": f"P-{24000 + number}",
            "title": f"Problem {number}",
            "impactLevel": "SERVICES",
            "severityLevel": "ERROR",
            "status": "OPEN",
            "affectedEntities": [],
            "impactedEntities": [],
            "rootCauseEntity": None,
            "managementZones": [],
            "entityTags": [],
            "problemFilters": [],
            "startTime": to_millis(now - timedelta(minutes=5)),
            "endTime": -1,
        }
        problem.update(fields)
        with self.lock:
            self.problems[problem["problemId"]] = problem
        return problem

    def add_comment(
        self, problem_id: str, message: str, *, context: str | None, author: str
    ) -> dict[str, Any]:
        """A comment on the problem, as Dynatrace stores one posted through the API."""
        with self.lock:
            comments = self.comments.setdefault(problem_id, [])
            created = max([to_millis(datetime.now(UTC)), *(c["createdAtTimestamp"] + 1 for c in comments)])
            comment = {
                "id": secrets.token_hex(8),
                "createdAtTimestamp": created,
                "authorName": author,
                "context": context,
                "content": message,
            }
            comments.append(comment)
        return comment

    def comments_of(self, problem_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.comments.get(problem_id, []))

    def comment(self, problem_id: str, comment_id: str) -> dict[str, Any] | None:
        with self.lock:
            return next((c for c in self.comments.get(problem_id, []) if c["id"] == comment_id), None)

    def add_entity(self, entity_id: str, display_name: str | None = None, **fields: Any) -> dict[str, Any]:
        """Store a monitored entity (v2 shape); relationships go in fromRelationships/toRelationships."""
        entity: dict[str, Any] = {
            "entityId": entity_id,
            "type": entity_id.split("-")[0],
            "displayName": display_name or entity_id,
            "firstSeenTms": to_millis(datetime.now(UTC) - timedelta(days=7)),
            "lastSeenTms": to_millis(datetime.now(UTC)),
            "properties": {},
            "tags": [],
            "managementZones": [],
            "fromRelationships": {},
            "toRelationships": {},
        }
        entity.update(fields)
        with self.lock:
            self.entities[entity_id] = entity
        return entity

    def add_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """Store an event in the v2 shape (``eventId``, ``eventType``, ``startTime``, ``entityId``...)."""
        with self.lock:
            self.events.append(event)
        return event

    def add_log(self, record: dict[str, Any]) -> dict[str, Any]:
        """Store a log record; entity attributes (``dt.entity.service``...) go in ``additionalColumns``."""
        with self.lock:
            self.logs.append(record)
        return record

    def add_metric_series(
        self, metric_id: str, entity_id: str, timestamps: list[int], values: list[float | None]
    ) -> None:
        """Store the data points of one metric for one entity."""
        dimension = "dt.entity." + entity_id.rsplit("-", 1)[0].lower()
        series = {
            "dimensionMap": {dimension: entity_id},
            "dimensions": [entity_id],
            "timestamps": list(timestamps),
            "values": list(values),
        }
        with self.lock:
            self.metrics.setdefault(metric_id, []).append(series)

    def add_settings_object(
        self, schema_id: str, value: dict[str, Any], *, scope: str = "environment", author: str = "admin"
    ) -> str:
        """Store a settings object as if created in the Dynatrace UI; returns its objectId."""
        with self.lock:
            return self.store_settings_object(schema_id, scope, value, author=author)

    def add_alerting_profile(self, name: str) -> str:
        """An alerting profile (schema ``builtin:alerting.profile``); returns its objectId."""
        return self.add_settings_object(
            ALERTING_PROFILE_SCHEMA,
            {"name": name, "managementZone": None, "severityRules": [], "eventFilters": []},
        )

    def settings_of(self, schema_id: str) -> list[dict[str, Any]]:
        """The stored objects of a schema, oldest first, secrets in clear."""
        with self.lock:
            return [item for item in self.settings_objects.values() if item["schemaId"] == schema_id]

    def problem_notifications(self) -> list[dict[str, Any]]:
        return self.settings_of(PROBLEM_NOTIFICATION_SCHEMA)

    def store_settings_object(
        self, schema_id: str, scope: str, value: dict[str, Any], *, author: str, object_id: str | None = None
    ) -> str:
        # Milliseconds, strictly increasing, so "created" orders objects as Dynatrace's does.
        stamp = self._settings_clock = max(to_millis(datetime.now(UTC)), self._settings_clock + 1)
        if object_id is None:
            raw = f"{schema_id}|{scope}|{secrets.token_hex(12)}".encode()
            object_id = base64.urlsafe_b64encode(
                b"\xbe\xefT\xde" + raw
            ).decode()  # '=' padding, like real ids
            self.settings_objects[object_id] = {
                "objectId": object_id,
                "schemaId": schema_id,
                "schemaVersion": "1.0.0",
                "scope": scope,
                "created": stamp,
                "author": author,
                "externalId": None,
            }
        stored = self.settings_objects[object_id]
        stored.update(
            value=json.loads(json.dumps(value)),
            modified=stamp,
            updateToken=base64.b64encode(f"{object_id}:{stamp}".encode()).decode(),
            summary=str(value.get("displayName") or value.get("name") or schema_id),
        )
        return object_id

    def fail(
        self,
        pattern: str,
        status: int | object | None = _UNSET,
        *,
        method: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        html: bool = False,
        times: int | None = None,
        retry_after: int | str | None = None,
    ) -> Failure:
        """Make requests whose path (without ``/e/{id}``) matches the glob ``pattern`` fail.

        ``status=None`` with ``delay``: answer normally, late. ``html=True``: a web page instead of JSON
        (with status 200 unless given). ``times``: only the next N matching requests.
        """
        if status is _UNSET:
            status = 200 if html else 500
        headers = dict(headers or {})
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        failure = Failure(
            pattern=pattern,
            method=method,
            status=status,  # type: ignore[arg-type]
            body=body,
            headers=headers,
            delay=delay,
            html=html,
            times=times,
        )
        with self.lock:
            self.failures.append(failure)
        return failure

    def slow(self, pattern: str, seconds: float, *, times: int | None = None) -> Failure:
        """Answer normally after ``seconds``."""
        return self.fail(pattern, None, delay=seconds, times=times)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [recorded for recorded in self.requests if recorded.path == path]

    # ---- helpers for handlers ---------------------------------------------------------------------

    def page(
        self,
        request: Request,
        items: list[dict[str, Any]],
        key: str,
        *,
        default_size: int = DEFAULT_PAGE_SIZE,
        max_size: int = MAX_PAGE_SIZE,
    ) -> Response:
        """One page of ``items`` under ``key``, or the page a ``nextPageKey`` points at.

        As Dynatrace: with nextPageKey every other query parameter must be absent (400 otherwise).
        ``max_size`` is the route's largest pageSize (the spec: 500 for problems, 1000 for events).
        """
        params = request.query_params
        route = request.scope["fake_path"]
        page_key = params.get("nextPageKey")
        if page_key is not None:
            others = sorted(name for name in params if name != "nextPageKey")
            if others:
                return dt_error(
                    400,
                    "Constraints violated.",
                    constraintViolations=[
                        {
                            "path": name,
                            "message": "must be omitted when nextPageKey is set",
                            "parameterLocation": "QUERY",
                        }
                        for name in others
                    ],
                )
            with self.lock:
                stored = self._pages.pop(page_key, None)
            if stored is None or stored[0] != route:
                return dt_error(400, f"The nextPageKey '{page_key}' is invalid or expired.")
            _, items, offset, size = stored
        else:
            raw_size = params.get("pageSize")
            try:
                size = int(raw_size) if raw_size else default_size
            except ValueError:
                return dt_error(400, "pageSize must be a number")
            if not 1 <= size <= max_size:
                return dt_error(400, f"pageSize must be between 1 and {max_size}")
            offset = 0
        chunk = items[offset : offset + size]
        body: dict[str, Any] = {
            "totalCount": len(items) if self.total_count_override is None else self.total_count_override,
            "pageSize": size,
            key: chunk,
        }
        if offset + size < len(items):
            next_key = secrets.token_urlsafe(12)
            with self.lock:
                self._pages[next_key] = (route, items, offset + size, size)
            body["nextPageKey"] = next_key
        elif self.last_page_key == "null":
            body["nextPageKey"] = None
        elif self.last_page_key == "string-null":
            body["nextPageKey"] = "null"
        return JSONResponse(body)

    # ---- serving ----------------------------------------------------------------------------------

    def authenticate(self, request: Request, scope: str | None) -> Response | FakeToken:
        header = request.headers.get("authorization", "")
        kind, _, secret = header.partition(" ")
        if not header:
            return dt_error(401, "Missing authorization parameter.")
        if kind != "Api-Token" or not secret:
            return dt_error(401, "Token Authentication failed")
        token = self.tokens.get(secret.strip())
        if token is None:
            return dt_error(401, "Token Authentication failed")
        if not token.enabled:
            return dt_error(401, "Token is disabled")
        if token.expired:
            return dt_error(401, "Token is expired")
        if scope is not None and scope not in token.scopes:
            title = SCOPE_TITLES.get(scope, scope)
            return dt_error(403, f"Token is missing required scope. Use one of: {scope} ({title})")
        return token

    def take_failure(self, method: str, path: str) -> Failure | None:
        with self.lock:
            for failure in self.failures:
                if failure.matches(method, path):
                    if failure.times is not None:
                        failure.times -= 1
                        if failure.times <= 0:
                            self.failures.remove(failure)
                    return failure
        return None


@contextmanager
def running_fake_dynatrace() -> Iterator[FakeDynatrace]:
    """A fake environment on a loopback port until the block ends."""
    fake = FakeDynatrace()
    with serving(fake.app) as url:
        fake.url = url
        yield fake
