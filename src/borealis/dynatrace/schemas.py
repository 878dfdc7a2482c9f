"""Wire shapes of the /dynatrace endpoints (seed field names, camelCase)."""

from __future__ import annotations

from pydantic import StrictBool

from borealis.schemas import CamelModel


class RcaSettings(CamelModel):
    rca_enabled: StrictBool
