"""Base for API schemas: snake_case in Python, camelCase on the wire (the seed's field names)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

# The largest id or offset the database holds (a signed 64-bit integer): past it, a 422 that says so
# instead of an overflow in the database driver.
MAX_BIGINT = 2**63 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
Offset = Annotated[int, Query(ge=0, le=MAX_BIGINT)]


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
