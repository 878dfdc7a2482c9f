"""The simulated Settings 2.0 API (``/api/v2/settings/objects``): the two schemas Borealis writes, the
problem notification (its webhook) and the alerting profile, validated and versioned as Dynatrace does."""

from __future__ import annotations

import copy
import json
import re
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from borealis.simulation.server import dt_error, endpoint, json_body
from borealis.simulation.store import ALERTING_PROFILE_SCHEMA, PROBLEM_NOTIFICATION_SCHEMA, SECRET_MASK

if TYPE_CHECKING:
    from borealis.simulation.store import FakeDynatrace

SETTINGS_FIELDS = (
    "objectId",
    "value",
    "created",
    "modified",
    "schemaId",
    "schemaVersion",
    "scope",
    "summary",
    "updateToken",
    "externalId",
    "author",
)
KNOWN_SCHEMAS = (PROBLEM_NOTIFICATION_SCHEMA, ALERTING_PROFILE_SCHEMA)


def _masked(value: Any) -> Any:
    """A value as the API shows it: secret header values masked, never echoed."""
    shown = copy.deepcopy(value)
    webhook = shown.get("webHookNotification") if isinstance(shown, dict) else None
    for header in (webhook or {}).get("headers") or []:
        if isinstance(header, dict) and header.get("secret"):
            header["secretValue"] = SECRET_MASK
    return shown


def _violation(path: str, message: str) -> dict[str, str]:
    return {"path": path, "message": message, "parameterLocation": "PAYLOAD_BODY"}


def _validate_settings_value(
    fake: FakeDynatrace, schema_id: str, value: Any, previous: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """The constraint violations of a value (only what the two schemas Borealis writes need)."""
    if not isinstance(value, dict):
        return [_violation("value", "must be an object")]
    problems: list[dict[str, str]] = []
    if schema_id == ALERTING_PROFILE_SCHEMA:
        if not isinstance(value.get("name"), str) or not value["name"]:
            problems.append(_violation("name", "must not be empty"))
        return problems
    if schema_id != PROBLEM_NOTIFICATION_SCHEMA:
        return problems
    if not isinstance(value.get("displayName"), str) or not value["displayName"].strip():
        problems.append(_violation("displayName", "must not be empty"))
    if value.get("type") not in ("EMAIL", "WEBHOOK", "SLACK", "PAGER_DUTY", "OPS_GENIE", "JIRA", "XMATTERS"):
        problems.append(_violation("type", "unknown notification type"))
    profiles = {item["objectId"] for item in fake.settings_of(ALERTING_PROFILE_SCHEMA)}
    if value.get("alertingProfile") not in profiles:
        problems.append(_violation("alertingProfile", "must reference an existing alerting profile"))
    if value.get("type") == "WEBHOOK":
        webhook = value.get("webHookNotification")
        if not isinstance(webhook, dict):
            return [*problems, _violation("webHookNotification", "must be set for type WEBHOOK")]
        url = webhook.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s/]+", url):
            problems.append(_violation("webHookNotification.url", "must be a valid http(s) URL"))
        if not isinstance(webhook.get("payload"), str) or not webhook["payload"].strip():
            problems.append(_violation("webHookNotification.payload", "must not be empty"))
        for index, header in enumerate(webhook.get("headers") or []):
            where = f"webHookNotification.headers[{index}]"
            if not isinstance(header, dict) or not header.get("name"):
                problems.append(_violation(f"{where}.name", "must not be empty"))
                continue
            key = "secretValue" if header.get("secret") else "value"
            if not isinstance(header.get(key), str) or not header[key]:
                problems.append(_violation(f"{where}.{key}", "must not be empty"))
            elif header.get("secret") and header[key] == SECRET_MASK:
                # The masked value sent back keeps the stored secret, as Dynatrace does.
                old = _header_secret(previous, header["name"])
                if old is None:
                    problems.append(
                        _violation(f"{where}.secretValue", "masked value without a stored secret")
                    )
                else:
                    header[key] = old
    return problems


def _header_secret(previous: dict[str, Any] | None, name: str) -> str | None:
    webhook = (previous or {}).get("webHookNotification") or {}
    for header in webhook.get("headers") or []:
        if header.get("name") == name and header.get("secret"):
            return header.get("secretValue")
    return None


def _object_error(code: int, message: str, violations: list[dict[str, str]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if violations:
        error["constraintViolations"] = violations
    return {"code": code, "error": error}


@endpoint("GET", "/api/v2/settings/objects", scope="settings.read")
def list_settings_objects(fake: FakeDynatrace, request: Request) -> Response:
    params = request.query_params
    if "nextPageKey" in params:
        return fake.page(request, [], "items", default_size=100)
    schema_ids = [item for item in (params.get("schemaIds") or "").split(",") if item]
    scopes = [item for item in (params.get("scopes") or "").split(",") if item]
    if not schema_ids and not scopes:
        return dt_error(
            400,
            "Constraints violated.",
            constraintViolations=[
                {
                    "path": "schemaIds",
                    "message": "schemaIds or scopes is required when nextPageKey is not set",
                    "parameterLocation": "QUERY",
                }
            ],
        )
    known = set(KNOWN_SCHEMAS) | {item["schemaId"] for item in fake.settings_objects.values()}
    unknown = [schema for schema in schema_ids if schema not in known]
    if unknown:
        return dt_error(404, f"The specified schema or scope is not found: {unknown[0]}")
    fields = [name.strip() for name in (params.get("fields") or "objectId,value").split(",") if name.strip()]
    wrong = [name for name in fields if name not in SETTINGS_FIELDS]
    if wrong:
        return dt_error(400, f"Unknown field '{wrong[0]}'")
    with fake.lock:
        stored = list(fake.settings_objects.values())
    found = [
        {name: (_masked(item[name]) if name == "value" else item.get(name)) for name in fields}
        for item in stored
        if (not schema_ids or item["schemaId"] in schema_ids) and (not scopes or item["scope"] in scopes)
    ]
    return fake.page(request, found, "items", default_size=100)


@endpoint("GET", "/api/v2/settings/objects/{objectId}", scope="settings.read")
def get_settings_object(fake: FakeDynatrace, request: Request) -> Response:
    object_id = request.path_params["objectId"]
    item = fake.settings_objects.get(object_id)
    if item is None:
        return dt_error(404, f"No object available for the given objectId {object_id}")
    return JSONResponse({**item, "value": _masked(item["value"])})


@endpoint("POST", "/api/v2/settings/objects", scope="settings.write")
async def create_settings_objects(fake: FakeDynatrace, request: Request) -> Response:
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        return dt_error(400, "Could not map JSON at '' near line 1 column 1")
    if not isinstance(body, list) or not body:
        return dt_error(400, "The request body must be a non-empty array of settings objects")
    validate_only = request.query_params.get("validateOnly", "false").lower() == "true"
    answers: list[dict[str, Any]] = []
    for item in body:
        if not isinstance(item, dict) or not isinstance(item.get("schemaId"), str):
            answers.append(
                _object_error(400, "Constraints violated.", [_violation("schemaId", "must be set")])
            )
            continue
        schema_id = item["schemaId"]
        if schema_id not in KNOWN_SCHEMAS:
            answers.append(_object_error(404, f"Schema '{schema_id}' not found"))
            continue
        value = copy.deepcopy(item.get("value"))
        violations = _validate_settings_value(fake, schema_id, value)
        if violations:
            answers.append({**_object_error(400, "Constraints violated.", violations), "invalidValue": value})
            continue
        if validate_only:
            answers.append({"code": 200})
            continue
        with fake.lock:
            object_id = fake.store_settings_object(
                schema_id, item.get("scope") or "environment", value, author=request.state.token.id
            )
            if item.get("externalId"):
                fake.settings_objects[object_id]["externalId"] = item["externalId"]
        answers.append({"code": 200, "objectId": object_id})
    codes = {answer["code"] for answer in answers}
    status = 200 if codes == {200} else (207 if 200 in codes else answers[0]["code"])
    return JSONResponse(answers, status_code=status)


@endpoint("PUT", "/api/v2/settings/objects/{objectId}", scope="settings.write")
async def update_settings_object(fake: FakeDynatrace, request: Request) -> Response:
    object_id = request.path_params["objectId"]
    body = await json_body(request)
    if isinstance(body, Response):
        return body
    item = fake.settings_objects.get(object_id)
    if item is None:
        return JSONResponse(
            _object_error(404, f"Settings not found for objectId {object_id}"), status_code=404
        )
    token = body.get("updateToken")
    if token is not None and token != item["updateToken"]:
        return JSONResponse(
            _object_error(409, "The object was modified since the updateToken was issued"), status_code=409
        )
    value = copy.deepcopy(body.get("value"))
    violations = _validate_settings_value(fake, item["schemaId"], value, previous=item["value"])
    if violations:
        return JSONResponse(
            {**_object_error(400, "Constraints violated.", violations), "invalidValue": value},
            status_code=400,
        )
    with fake.lock:
        fake.store_settings_object(
            item["schemaId"], item["scope"], value, author=request.state.token.id, object_id=object_id
        )
    return JSONResponse({"code": 200, "objectId": object_id})


@endpoint("DELETE", "/api/v2/settings/objects/{objectId}", scope="settings.write")
def delete_settings_object(fake: FakeDynatrace, request: Request) -> Response:
    object_id = request.path_params["objectId"]
    item = fake.settings_objects.get(object_id)
    if item is None:
        return JSONResponse(
            _object_error(404, f"Settings not found for objectId {object_id}"), status_code=404
        )
    token = request.query_params.get("updateToken")
    if token is not None and token != item["updateToken"]:
        return JSONResponse(
            _object_error(409, "The object was modified since the updateToken was issued"), status_code=409
        )
    with fake.lock:
        fake.settings_objects.pop(object_id, None)
    return Response(status_code=204)
