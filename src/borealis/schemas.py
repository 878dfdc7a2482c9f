"""Base for API schemas: snake_case in Python, camelCase on the wire (the seed's field names)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from borealis.errors import InvalidInput

# The largest id or offset the database holds (a signed 64-bit integer): past it, a 422 that says so
# instead of an overflow in the database driver.
MAX_BIGINT = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
Offset = Annotated[int, Query(ge=0, le=MAX_BIGINT)]
# Workspace and user ids (UUIDs): anything else is a 422 before it reaches a query.
ID_PATTERN = r"^[0-9A-Za-z-]{1,36}$"
UuidId = Annotated[str, Path(pattern=ID_PATTERN, description="a workspace or user id")]


def checked_id(value: str, *, field: str) -> str:
    """A workspace or user id as given in a form or body; ``InvalidInput`` naming the field otherwise."""
    if not re.fullmatch(ID_PATTERN, value):
        raise InvalidInput(
            f"{field} is not an id (letters, digits and '-', at most 36)", details={"field": field}
        )
    return value


def storable(value: str, *, field: str) -> str:
    """The text, if a database can keep it as text: no NUL character (PostgreSQL refuses it) and no
    unpaired surrogate (no UTF-8 for it). Raises ``InvalidInput`` naming the field otherwise."""
    if "\x00" in value:
        raise InvalidInput(f"{field} contains a NUL character (\\u0000); remove it", details={"field": field})
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field} contains an unpaired surrogate (a broken \\ud800-\\udfff escape); send valid Unicode",
            details={"field": field},
        ) from None
    return value


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


class ErrorBody(CamelModel):
    code: str
    message: str
    # The request's id, as in the X-Request-ID header and the server's log.
    request_id: str | None = None
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    error: ErrorBody


# What each error status means, for the OpenAPI document; every one is answered as ErrorResponse.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body cannot be read (it is not UTF-8 text, for example).",
    401: "No API key or signed-in session, or an unknown or revoked key.",
    403: "The caller's role in the workspace does not allow this (viewer < responder < owner), or a web "
    "form came without its CSRF token.",
    404: "Nothing of that id in the caller's workspace (another workspace's is as unknown as a missing one).",
    409: "The state does not allow it: Dynatrace is not connected, or the incident was merged away.",
    413: "The request body is larger than the server's limit.",
    422: "The input is invalid; the message names the field and what to fix.",
    500: "An unexpected error; the answer carries the request id to find it in the log.",
    502: "Dynatrace could not be reached, or answered with an error.",
    503: "Not now: Dynatrace is rate limiting, the work is still queued, or the database is not reachable; "
    "try again shortly.",
    504: "Dynatrace did not answer in time.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route (or router) for the errors it answers, each in the ErrorResponse shape
    (it also replaces FastAPI's default 422 schema, which is not the shape this API answers with)."""
    return {
        status: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[status]} for status in statuses
    }


# Every API route: authentication, the body limit, input validation, the unexpected-error handler.
API_ERRORS = error_responses(401, 403, 413, 422, 500)
