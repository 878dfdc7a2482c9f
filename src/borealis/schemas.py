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
