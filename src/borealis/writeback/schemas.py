"""Wire shapes of the write-back actions (camelCase)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from borealis.schemas import CamelModel


class CloseRequest(CamelModel):
    model_config = ConfigDict(extra="forbid")

    message: str | None = Field(
        default=None, max_length=2000, description="the closing comment (default: 'Closed from Borealis')"
    )


class CloseRequested(CamelModel):
    incident_id: int
    # The job that closes them; follow it with GET /jobs/{id}, or on the incident's timeline.
    job_id: int
