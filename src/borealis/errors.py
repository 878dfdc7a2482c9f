"""The errors a user can see. Raised anywhere, turned into one JSON shape at the edge (``app.py``)."""

from __future__ import annotations

from typing import Any


class BorealisError(Exception):
    """Base: carries the HTTP status, a stable code and a message that says what to fix."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(BorealisError):
    status_code = 422
    code = "invalid_input"


class NotAuthenticated(BorealisError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(BorealisError):
    status_code = 403
    code = "forbidden"


class NotFound(BorealisError):
    status_code = 404
    code = "not_found"


class Conflict(BorealisError):
    status_code = 409
    code = "conflict"


class PayloadTooLarge(BorealisError):
    status_code = 413
    code = "payload_too_large"
