"""The simulated ``/api/v2/metrics/query``: metric selectors, resolutions, and slot averages.

Metrics are averaged into slots of the requested resolution, stamped at the end of each slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from borealis.simulation.api import optional_matcher, timeframe
from borealis.simulation.selectors import EntityMatcher, SelectorError
from borealis.simulation.server import dt_error, endpoint, selector_error

if TYPE_CHECKING:
    from borealis.simulation.store import FakeDynatrace


@endpoint("GET", "/api/v2/metrics/query", scope="metrics.read")
def query_metrics(fake: FakeDynatrace, request: Request) -> Response:
    """Data points per series, aggregated into slots of the resolution (average of the values in a slot,
    null when it has none), stamped with the end of each slot as Dynatrace does.

    The spec deprecates paging here (``nextPageKey`` is always null), so every matching series comes at once.
    """
    params = request.query_params
    selector = params.get("metricSelector")
    if not selector:
        return dt_error(400, "metricSelector must not be empty")
    try:
        keys = metric_keys(selector)
    except SelectorError as exc:
        return selector_error(exc, "metricSelector")
    if len(keys) > 10:
        return dt_error(400, "Up to 10 metrics can be selected in one query")
    frame = timeframe(params)
    if isinstance(frame, Response):
        return frame
    start, end = frame
    if start >= end:
        return dt_error(400, "The start of the timeframe must be before its end")
    slots = _slots(params.get("resolution"), start, end)
    if isinstance(slots, Response):
        return slots
    try:
        matcher = optional_matcher(fake, params.get("entitySelector"))
    except SelectorError as exc:
        return selector_error(exc)
    with fake.lock:
        stored = {key: list(fake.metrics.get(key, [])) for key in keys}
    result = []
    entities: set[tuple[str, ...]] = set()
    try:
        for key in keys:
            data = [slots.aggregate(series) for series in stored[key] if _series_selected(series, matcher)]
            data = [series for series in data if series is not None]
            entities.update(tuple(series["dimensions"]) for series in data)
            result.append(
                {
                    "metricId": key,
                    "dataPointCountRatio": round(len(data) * len(slots.ends) / 10_000_000, 7),
                    "dimensionCountRatio": round(len(data) / 1_000_000, 7),
                    "data": data,
                }
            )
    except SelectorError as exc:
        return selector_error(exc)
    return JSONResponse(
        {"totalCount": len(entities), "nextPageKey": None, "resolution": slots.label, "result": result}
    )


def metric_keys(selector: str) -> list[str]:
    """The metric keys of a metricSelector: comma-separated, ``prefix.(a,b)`` for siblings, quoted keys."""
    keys: list[str] = []
    depth, quoted, current = 0, False, []
    for char in selector:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"Unbalanced parentheses in metricSelector: {selector}")
        if char == "," and depth == 0 and not quoted:
            keys.extend(_expand_key("".join(current)))
            current = []
        else:
            current.append(char)
    if depth or quoted:
        raise SelectorError(f"Unbalanced parentheses or quotes in metricSelector: {selector}")
    keys.extend(_expand_key("".join(current)))
    return [key for key in keys if key]


def _expand_key(text: str) -> list[str]:
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return [text[1:-1].replace('~"', '"').replace("~~", "~")]
    if text.endswith(")") and ".(" in text:
        prefix, _, names = text[:-1].partition(".(")
        return [f"{prefix}.{name.strip()}" for name in names.split(",") if name.strip()]
    return [text] if text else []


_RESOLUTION = re.compile(r"^(\d+)([mhdwMy])$")
_RESOLUTION_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080, "M": 43200, "y": 525600}
DEFAULT_METRIC_POINTS = 120
MINUTE_MS = 60_000


@dataclass(frozen=True)
class Slots:
    """The time slots of a metric query: (end - step, end] for each end; ``step`` None is ``Inf``."""

    ends: list[int]
    step: int | None
    label: str
    start: int

    def slot_of(self, stamp: int) -> int | None:
        if self.step is None:
            return 0 if self.start <= stamp <= self.ends[0] else None
        index = (-(-stamp // self.step) * self.step - self.ends[0]) // self.step
        return index if 0 <= index < len(self.ends) else None

    def aggregate(self, series: dict[str, Any]) -> dict[str, Any] | None:
        """The series over the slots; None when it has no data point in the timeframe (Dynatrace leaves
        such a series out)."""
        sums = [0.0] * len(self.ends)
        counts = [0] * len(self.ends)
        for stamp, value in zip(series["timestamps"], series["values"], strict=True):
            index = self.slot_of(int(stamp))
            if index is None or value is None:
                continue
            sums[index] += float(value)
            counts[index] += 1
        if not any(counts):
            return None
        return {
            "dimensionMap": dict(series["dimensionMap"]),
            "dimensions": list(series["dimensions"]),
            "timestamps": list(self.ends),
            "values": [total / count if count else None for total, count in zip(sums, counts, strict=True)],
        }


def _slots(raw: str | None, start: int, end: int) -> Slots | Response:
    """Slots aligned to the resolution from the slot holding ``from`` to the one holding ``to``: the last
    timestamp can lie after ``to``, as the Dynatrace documentation describes."""
    if raw == "Inf":
        return Slots(ends=[end], step=None, label="Inf", start=start)
    minutes = _resolution_minutes(raw, end - start)
    if minutes is None:
        return dt_error(400, f"Invalid resolution: {raw}")
    step = minutes * MINUTE_MS
    first = start // step
    last = -(-end // step) - 1
    ends = [(index + 1) * step for index in range(first, max(first, last) + 1)]
    label = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
    if minutes % 1440 == 0:
        label = f"{minutes // 1440}d"
    return Slots(ends=ends, step=step, label=label, start=start)


def _resolution_minutes(raw: str | None, span_ms: int) -> int | None:
    """A timespan (``5m``, ``1h``) or a number of points (the default: 120), as whole minutes."""
    if not raw or raw.isdigit():
        points = int(raw) if raw else DEFAULT_METRIC_POINTS
        if points < 1:
            return None
        return max(1, -(-span_ms // (points * MINUTE_MS)))
    match = _RESOLUTION.match(raw)
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    return amount * _RESOLUTION_MINUTES[unit] if amount >= 1 else None


def _series_selected(series: dict[str, Any], matcher: EntityMatcher | None) -> bool:
    """A series belongs to the selected entities when one of its entity dimensions is selected."""
    if matcher is None:
        return True
    return any(
        matcher.matches_id(str(value))
        for key, value in series["dimensionMap"].items()
        if key.startswith("dt.entity.") and value
    )
