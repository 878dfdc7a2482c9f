"""Wire shapes of ``GET /insights`` (camelCase)."""

from __future__ import annotations

from datetime import date

from borealis.schemas import CamelModel


class DayCount(CamelModel):
    day: date
    incidents: int


class Spread(CamelModel):
    """Seconds: the median and the 90th percentile (nearest rank) of ``count`` incidents."""

    count: int
    median: float | None
    p90: float | None


class CauseCount(CamelModel):
    entity: str
    name: str | None
    incidents: int


class Precision(CamelModel):
    """The responders' marks on one verdict's reports; ``precision`` is right / marked."""

    verdict: str
    reports: int
    marked: int
    right: int
    partly_right: int
    wrong: int
    precision: float | None


class Insights(CamelModel):
    days: int
    since: date
    incidents: int
    incidents_per_day: list[DayCount]
    time_to_acknowledge: Spread
    time_to_resolve: Spread
    top_root_causes: list[CauseCount]
    verdicts: dict[str, int]
    precision: list[Precision]
    # Every marked report, whatever its verdict.
    overall_precision: Precision
