"""Anomaly scoring: one metric series judged against its own baseline.

A point is anomalous only when three tests agree: a robust score (its distance from the baseline's median
in units of the baseline's median absolute deviation), a relative change, and an absolute floor, so that
neither a quiet series (0 % → 0.4 % failure rate is no incident) nor a noisy one (a latency that always
jumps around) raises a false alarm. A series is anomalous when its points stay anomalous for a sustained
run; the first point of that run is the onset. Pure: no database, no network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from statistics import median, pstdev
from typing import Any


class Direction(StrEnum):
    UP = "up"  # trouble is a rise (latency, errors, CPU)
    DOWN = "down"  # trouble is a fall (traffic)


class Kind(StrEnum):
    """What a series measures, which says how its trouble travels along the dependency edges."""

    LATENCY = "latency"
    ERRORS = "errors"
    TRAFFIC = "traffic"
    SATURATION = "saturation"


@dataclass(frozen=True)
class Rule:
    """What makes one metric anomalous: robust score, relative change and absolute floor together."""

    label: str
    kind: Kind
    unit: str
    min_score: float = 4.0
    # A rise: value >= baseline * (1 + rise) and value - baseline >= floor.
    rise: float = 0.2
    floor: float = 0.0
    # Traffic only: a fall to at most (1 - fall) of the baseline also counts.
    fall: float | None = None
    # The smallest spread assumed for the baseline, relative to its median: a perfectly flat baseline
    # would otherwise make any wobble a "huge" score.
    min_spread: float = 0.02
    # When set, the floor is at most this share of the baseline: a response time is read in
    # microseconds as Dynatrace reports it, but an environment that reports milliseconds still gets a
    # floor that means something (10 ms of a 40 ms baseline either way).
    floor_share: float | None = None

    def floor_for(self, baseline: float) -> float:
        if self.floor_share is None:
            return self.floor
        return min(self.floor, self.floor_share * abs(baseline))


# Dynatrace reports service response time in microseconds and failure rate in percent.
RULES: dict[str, Rule] = {
    "builtin:service.response.time": Rule(
        "response time", Kind.LATENCY, "µs", rise=0.2, floor=10_000, floor_share=0.25
    ),
    "builtin:service.errors.total.rate": Rule("failure rate", Kind.ERRORS, "%", rise=0.5, floor=1.0),
    "builtin:service.requestCount.total": Rule(
        "request count", Kind.TRAFFIC, "/min", rise=2.0, floor=1.5, fall=0.5, min_spread=0.05
    ),
    "builtin:host.cpu.usage": Rule("CPU usage", Kind.SATURATION, "%", rise=0.3, floor=15.0),
    "builtin:host.mem.usage": Rule("memory usage", Kind.SATURATION, "%", rise=0.1, floor=10.0),
    "builtin:tech.generic.cpu.usage": Rule("CPU usage", Kind.SATURATION, "%", rise=0.3, floor=15.0),
    "builtin:tech.generic.mem.workingSetSize": Rule(
        "memory (working set)", Kind.SATURATION, "B", rise=0.3, floor=50 * 1024 * 1024
    ),
}
# Consecutive anomalous points that make a sustained run, and the fewest baseline points judged with
# full confidence (fewer: judged all the same, with less confidence).
SUSTAINED_POINTS = 3
FULL_BASELINE_POINTS = 20
SHORT_BASELINE_POINTS = 8
# The fewest points after the onset for a level shift of a noisy series.
LEVEL_SHIFT_POINTS = 5
# Baseline points kept beside the window when dating a change.
CHANGE_POINT_CONTEXT = 30
MAD_TO_SIGMA = 1.4826
TENTH_TO_SIGMA = 1.2816
# The cause goes wrong minutes before Dynatrace opens a problem on the symptom: the baseline ends this
# long before the start, so the cause's first anomalous points are judged rather than averaged in.
ONSET_LEAD = timedelta(minutes=15)


@dataclass(frozen=True)
class Judgement:
    """The verdict on one series: the baseline, how far the incident window strayed, and since when."""

    anomalous: bool
    direction: Direction | None
    baseline: float
    low: float
    high: float
    peak: float
    # The typical value once the trouble began (median from the onset on): steadier than the peak.
    level: float
    # Relative change of ``level`` against the baseline (+1.0: doubled; -0.8: fell by 80 %).
    change: float
    # Robust score of ``level``: distance from the baseline in baseline spreads.
    score: float
    onset: int | None
    baseline_points: int
    window_points: int
    # The rise measured against the baseline or, when the baseline is near nothing (0 % errors), against
    # the rule's floor: 0 % → 9 % failure rate is a large rise, not an infinite one.
    relative_rise: float = 0.0

    @property
    def delta(self) -> float:
        """The absolute change, in the series' own unit."""
        return self.level - self.baseline

    @property
    def confidence(self) -> float:
        """1.0 with a full baseline; less when the entity is new and the baseline short."""
        return min(1.0, self.baseline_points / FULL_BASELINE_POINTS)

    @property
    def magnitude(self) -> float:
        """A size comparable across metrics and entities: the doubling count of the change, capped."""
        if not self.anomalous:
            return 0.0
        if self.direction is Direction.DOWN:
            return min(5.0, -math.log2(max(1.0 + self.change, 1 / 32)))
        return min(5.0, math.log2(1.0 + max(self.relative_rise, 0.0)))


def _numbers(timestamps: Sequence[Any], values: Sequence[Any]) -> list[tuple[int, float]]:
    points = []
    for stamp, value in zip(timestamps, values, strict=False):
        if value is None:
            continue
        try:
            number, moment = float(value), int(stamp)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            points.append((moment, number))
    return points


def judge(
    rule: Rule,
    timestamps: Sequence[Any],
    values: Sequence[Any],
    *,
    baseline_end: datetime,
    start: datetime | None = None,
) -> Judgement | None:
    """Judge the points from ``baseline_end`` on against the points before it; None without data on
    both sides. When the series began too late for a baseline that ends there (a new entity, a short
    history), the baseline ends later, two thirds of the way from the first point to ``start``."""
    pivot = int(baseline_end.timestamp() * 1000)
    points = _numbers(timestamps, values)
    if start is not None and points and sum(1 for t, _ in points if t < pivot) < SHORT_BASELINE_POINTS:
        first, limit = points[0][0], int(start.timestamp() * 1000)
        if first < limit:
            pivot = max(pivot, first + (limit - first) * 2 // 3)
    before = [v for t, v in points if t < pivot]
    after = [(t, v) for t, v in points if t >= pivot]
    if not before or not after:
        return None
    base = _Baseline(rule, before)
    direction, onset_index, by_level = None, None, False
    for way in (Direction.UP, Direction.DOWN):
        index, level_shift = _first_run(after, lambda v, w=way: base.point_strays(v, w)), False
        if index is None:
            index, level_shift = _level_shift(after, base, way), True
        if index is not None and (onset_index is None or index < onset_index):
            direction, onset_index, by_level = way, index, level_shift
    low, high = base.centre - 3 * base.spread[Direction.DOWN], base.centre + 3 * base.spread[Direction.UP]
    if direction is None or onset_index is None:
        extreme = max(after, key=lambda p: abs(p[1] - base.centre))[1]
        return Judgement(
            anomalous=False,
            direction=None,
            baseline=base.centre,
            low=low,
            high=high,
            peak=extreme,
            level=median(v for _, v in after),
            change=0.0,
            score=0.0,
            onset=None,
            baseline_points=len(before),
            window_points=len(after),
        )
    onset_index = _dated(before, after, base, direction, onset_index, by_level)
    troubled = [v for _, v in after[onset_index:]]
    # The level as the test that found the trouble sees it: the median of a steady series, the mean of
    # a noisy one (for which only the mean shifted), carried onto the baseline's median.
    level = base.centre + (trimmed_mean(troubled) - base.mean) if by_level else median(troubled)
    peak = max(troubled) if direction is Direction.UP else min(troubled)
    centre = base.centre
    return Judgement(
        anomalous=True,
        direction=direction,
        baseline=centre,
        low=low,
        high=high,
        peak=peak,
        level=level,
        change=(level - centre) / abs(centre) if centre else (math.inf if level > 0 else 0.0),
        score=abs(level - centre) / base.spread[direction],
        relative_rise=_relative_rise(rule, centre, level),
        onset=after[onset_index][0],
        baseline_points=len(before),
        window_points=len(after),
    )


class _Baseline:
    """What normal looks like for one series, and the two tests against it: one point, or the mean of
    many (which averages a noisy series' noise out)."""

    def __init__(self, rule: Rule, before: Sequence[float]) -> None:
        self.rule = rule
        self.centre = median(before)
        self.mean = trimmed_mean(before)
        mad = MAD_TO_SIGMA * median(abs(v - self.centre) for v in before)
        self.floor = rule.floor_for(self.centre)
        least = max(mad, rule.min_spread * abs(self.centre), self.floor / 4, 1e-9)
        # A baseline that is flat most of the time but spiky (a few errors among few requests) has a
        # median deviation of nothing; counts and rates are skewed, so the upper tenth judges rises and
        # the lower tenth falls.
        ordered = sorted(before)
        upper = ordered[int(0.9 * (len(ordered) - 1))] - self.centre
        lower = self.centre - ordered[int(0.1 * (len(ordered) - 1))]
        self.spread = {
            Direction.UP: max(least, upper / TENTH_TO_SIGMA),
            Direction.DOWN: max(least, lower / TENTH_TO_SIGMA),
        }
        # For means that rise: the plain standard deviation, rare spikes included (a series that is 0 in
        # most minutes and one error in a few has no spread in its tenths, but it has noise). A fall is
        # judged by the lower tenth alone: upward spikes do not hide a drop.
        deviation = pstdev(before) if len(before) > 1 else 0.0
        self.deviation = {
            Direction.UP: max(deviation, self.spread[Direction.UP]),
            Direction.DOWN: self.spread[Direction.DOWN],
        }

    def _strays(self, delta: float, reference: float, noise: float, way: Direction) -> bool:
        rule = self.rule
        if way is Direction.DOWN and rule.fall is None:
            return False
        share = rule.rise if way is Direction.UP else rule.fall
        assert share is not None
        return delta >= self.floor and delta >= share * abs(reference) and delta / noise >= rule.min_score

    def point_strays(self, value: float, way: Direction, points: int = 1) -> bool:
        """One point (or the median of ``points`` of them) strays from the baseline's median."""
        delta = value - self.centre if way is Direction.UP else self.centre - value
        return self._strays(delta, self.centre, self.spread[way] / math.sqrt(points), way)

    def level_strays(self, values: Sequence[float], way: Direction) -> bool:
        shift = trimmed_mean(values) - self.mean
        delta = shift if way is Direction.UP else -shift
        noise = self.deviation[way] / math.sqrt(len(values))
        return self._strays(delta, self.mean, noise, way)


def trimmed_mean(values: Sequence[float]) -> float:
    """The mean without the lowest and highest tenth: a lone spike does not move it."""
    ordered = sorted(values)
    cut = len(ordered) // 10
    kept = ordered[cut : len(ordered) - cut] or ordered
    return sum(kept) / len(kept)


def _level_shift(points: Sequence[tuple[int, float]], base: _Baseline, way: Direction) -> int | None:
    """Where a noisy series (few requests a minute) shifted for good: the first point from which the
    mean of the rest strays from the baseline's mean by more than that many points' noise, while the
    point itself already passes the floor and the relative change. Means and not medians: a series that is 0 or one error in most
    minutes has a median that flips on a small change of proportion."""
    values = [value for _, value in points]
    for first in range(len(values) - LEVEL_SHIFT_POINTS + 1):
        if base.point_strays(values[first], way, len(values) - first) and base.level_strays(
            values[first:], way
        ):
            return first
    return None


def _dated(
    before: Sequence[float],
    after: Sequence[tuple[int, float]],
    base: _Baseline,
    way: Direction,
    detected: int,
    by_level: bool,
) -> int:
    """The onset at the change point, as long as the trouble still shows from there on (a pulse that
    ended would not). Lone spikes would pull the split towards them: values are held within the band of
    the baseline and of the troubled level first."""
    troubled = [v for _, v in after[detected:]]
    provisional = trimmed_mean(troubled) if by_level else median(troubled)
    lowest = min(base.centre, provisional) - 3 * base.spread[Direction.DOWN]
    highest = max(base.centre, provisional) + 3 * base.spread[Direction.UP]
    dated = _change_point(
        [min(max(v, lowest), highest) for v in before],
        [min(max(v, lowest), highest) for _, v in after],
        detected,
    )
    rest = [v for _, v in after[dated:]]
    if not rest:
        return detected
    holds = base.level_strays(rest, way) if by_level else base.point_strays(median(rest), way, len(rest))
    return dated if holds else detected


def _relative_rise(rule: Rule, centre: float, level: float) -> float:
    """How big a rise is: against the baseline, or against the floor when the baseline is near nothing;
    a percentage of capacity (CPU, memory) against the headroom it had, so 64 % → 96 % counts as most of
    the way to full."""
    if rule.kind is Kind.SATURATION and rule.unit == "%":
        return 3 * (level - centre) / max(100.0 - centre, rule.floor)
    return (level - centre) / max(abs(centre), rule.floor_for(centre), 1e-9)


def _change_point(before: Sequence[float], after: Sequence[float], detected: int) -> int:
    """Where the series changed: the split of the window that leaves the least squared error on either
    side. Thresholds catch a big change early and a slow ramp late, and a noisy series may pass them
    before it really changed; the split dates all of them the same way, so onsets compare across series.
    ``detected`` (where the thresholds first held) is kept when no split beats it."""
    tail = list(before[-CHANGE_POINT_CONTEXT:])
    series = tail + list(after)
    count = len(series)
    sums, squares = [0.0], [0.0]
    for value in series:
        sums.append(sums[-1] + value)
        squares.append(squares[-1] + value * value)

    def cost(first: int, last: int) -> float:
        size = last - first
        total = sums[last] - sums[first]
        return squares[last] - squares[first] - total * total / size if size else 0.0

    best, best_cost = detected, math.inf
    for index in range(0, len(after)):
        split = len(tail) + index
        if split <= 0 or split >= count:
            continue
        value = cost(0, split) + cost(split, count)
        if value < best_cost:
            best, best_cost = index, value
    return best


def _first_run(points: Sequence[tuple[int, float]], test: Any) -> int | None:
    """Index of the first point that starts a sustained run of anomalous points after which the trouble
    persists (at least half the points from there on are anomalous); a shorter run that reaches the end
    of the series counts too: the trouble is still going on."""
    flags = [bool(test(value)) for _, value in points]
    count = len(flags)
    need = min(SUSTAINED_POINTS, count)
    # run[i]: anomalous points in a row from i; later[i]: anomalous points from i to the end.
    run, later = [0] * (count + 1), [0] * (count + 1)
    for index in range(count - 1, -1, -1):
        run[index] = run[index + 1] + 1 if flags[index] else 0
        later[index] = later[index + 1] + flags[index]
    for start in range(count):
        length = run[start]
        reaches_end = start + length == count and length >= max(2, need - 1)
        if (length >= need or reaches_end) and later[start] * 2 >= count - start:
            return start
    return None


def resolution_for(span: timedelta, points: int = 240) -> str:
    """A Dynatrace resolution (``Nm``/``Nh``) that gives at most about ``points`` points over ``span``."""
    minutes = max(1, math.ceil(span.total_seconds() / 60 / points))
    if minutes >= 60 and minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"
