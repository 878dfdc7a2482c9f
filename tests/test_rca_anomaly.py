"""Anomaly scoring: a robust score, a relative change and an absolute floor, sustained, with its onset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from borealis.rca.anomaly import RULES, Direction, judge, resolution_for

START = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MINUTE = 60_000
RT, ERRORS, REQUESTS = (
    RULES["builtin:service.response.time"],
    RULES["builtin:service.errors.total.rate"],
    RULES["builtin:service.requestCount.total"],
)


def minutes(values_before: list[float], values_after: list[float]) -> tuple[list[int], list[float]]:
    """One point a minute: ``values_before`` end at the start, ``values_after`` begin there."""
    first = int(START.timestamp() * 1000) - len(values_before) * MINUTE
    stamps = [first + i * MINUTE for i in range(len(values_before) + len(values_after))]
    return stamps, values_before + values_after


def wobble(level: float, count: int, spread: float = 0.05) -> list[float]:
    """A steady series with a deterministic wobble of about ``spread`` around ``level``."""
    pattern = [0.0, 1.0, -1.0, 0.5, -0.5, 0.8, -0.8, 0.2]
    return [level * (1 + spread * pattern[i % len(pattern)]) for i in range(count)]


def test_a_latency_rise_has_its_baseline_level_and_onset():
    stamps, values = minutes(wobble(38_000, 100), wobble(38_000, 3) + wobble(410_000, 20))
    judgement = judge(RT, stamps, values, baseline_end=START - timedelta(minutes=15))
    assert judgement is not None
    assert judgement.anomalous
    assert judgement.direction is Direction.UP
    assert judgement.baseline == pytest.approx(38_000, rel=0.02)
    assert judgement.level == pytest.approx(410_000, rel=0.05)
    assert judgement.onset == stamps[103]
    assert judgement.magnitude > 3
    assert judgement.confidence == 1.0


def test_a_rise_that_begins_before_the_start_is_dated_there():
    stamps, values = minutes(wobble(50_000, 100) + wobble(200_000, 8), wobble(200_000, 10))
    judgement = judge(RT, stamps, values, baseline_end=START - timedelta(minutes=15))
    assert judgement is not None
    assert judgement.anomalous
    assert judgement.onset == stamps[100]
    assert judgement.onset < int(START.timestamp() * 1000)


def test_a_small_relative_rise_is_not_an_anomaly_however_flat_the_baseline():
    stamps, values = minutes([100_000.0] * 100, [115_000.0] * 20)
    judgement = judge(RT, stamps, values, baseline_end=START)
    assert judgement is not None
    assert not judgement.anomalous


def test_the_absolute_floor_keeps_a_quiet_series_quiet():
    stamps, values = minutes([0.0] * 100, [0.4] * 20)
    assert not judge(ERRORS, stamps, values, baseline_end=START).anomalous
    stamps, values = minutes([0.2] * 100, [3.0] * 20)
    assert judge(ERRORS, stamps, values, baseline_end=START).anomalous


def test_the_latency_floor_is_ten_milliseconds_or_a_quarter_of_the_baseline():
    def judged(before: float, after: float) -> bool:
        stamps, values = minutes(wobble(before, 100, 0.01), wobble(after, 20, 0.01))
        return judge(RT, stamps, values, baseline_end=START).anomalous

    assert not judged(40_000, 48_000)  # +8 ms of 40 ms: under the 10 ms floor
    assert judged(40_000, 52_000)
    assert not judged(2_000, 2_400)  # a 2 ms service: the floor is a quarter of its baseline
    assert judged(2_000, 3_000)
    # An environment that reports milliseconds still gets a floor that means something.
    assert judged(40, 400)
    assert not judged(40, 44)


def test_a_noisy_series_that_keeps_its_level_is_not_an_anomaly_whatever_its_spikes():
    noisy = [100_000 * (1 + 0.6 * ((i * 7919) % 11 - 5) / 5) for i in range(120)]
    noisy[105] = noisy[111] = 400_000
    stamps, values = minutes(noisy[:100], noisy[100:])
    assert not judge(RT, stamps, values, baseline_end=START).anomalous


def test_a_lasting_shift_of_a_noisy_low_traffic_series_is_found_and_dated_where_it_began():
    # A few requests a minute: the failure rate is 0 % or a lone error's 20-50 %, then errors settle in.
    quiet = [0.0] * 100
    for index in (7, 31, 58, 77):
        quiet[index] = 25.0
    lone = [0.0, 0.0, 33.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    settled = [20.0, 0.0, 25.0, 33.0, 0.0, 40.0, 25.0, 20.0, 0.0, 33.0]
    errors = [*lone, *settled]
    stamps, values = minutes(quiet, errors)
    judgement = judge(ERRORS, stamps, values, baseline_end=START)
    assert judgement is not None
    assert judgement.anomalous
    # Dated where the errors settled in (within two minutes), not at the lone error before.
    assert stamps[108] <= judgement.onset <= stamps[110]


def test_a_single_spike_is_not_sustained():
    stamps, values = minutes(wobble(40_000, 100), [40_000.0] * 5 + [900_000.0] + [40_000.0] * 14)
    assert not judge(RT, stamps, values, baseline_end=START).anomalous


def test_trouble_still_going_on_at_the_last_two_points_counts():
    stamps, values = minutes(wobble(40_000, 100), [40_000.0] * 8 + [400_000.0] * 2)
    judgement = judge(RT, stamps, values, baseline_end=START)
    assert judgement.anomalous
    assert judgement.onset == stamps[-2]


def test_a_traffic_drop_counts_and_a_mere_doubling_does_not():
    stamps, values = minutes(wobble(1_000, 100), wobble(300, 20))
    drop = judge(REQUESTS, stamps, values, baseline_end=START)
    assert drop.anomalous
    assert drop.direction is Direction.DOWN
    assert drop.change == pytest.approx(-0.7, abs=0.02)
    stamps, values = minutes(wobble(1_000, 100), wobble(2_000, 20))
    assert not judge(REQUESTS, stamps, values, baseline_end=START).anomalous
    stamps, values = minutes(wobble(1_000, 100), wobble(4_000, 20))
    assert judge(REQUESTS, stamps, values, baseline_end=START).direction is Direction.UP


def test_a_new_entity_with_few_points_is_judged_with_less_confidence():
    stamps, values = minutes(wobble(30_000, 5), wobble(300_000, 10))
    judgement = judge(RT, stamps, values, baseline_end=START)
    assert judgement.anomalous
    assert judgement.confidence == pytest.approx(5 / 20)


def test_without_points_on_both_sides_there_is_no_judgement():
    stamps, values = minutes([], [1.0, 2.0, 3.0])
    assert judge(RT, stamps, values, baseline_end=START) is None
    stamps, values = minutes([None] * 10, [None] * 10)  # type: ignore[list-item]
    assert judge(RT, stamps, values, baseline_end=START) is None


def test_resolution_keeps_the_point_count_bounded():
    assert resolution_for(timedelta(hours=2, minutes=30)) == "1m"
    assert resolution_for(timedelta(hours=26)) == "7m"
    assert resolution_for(timedelta(days=10)) == "1h"


def test_a_short_history_moves_the_baseline_closer_to_the_start():
    # Ten minutes of history before the start: a baseline ending 15 minutes before it would be empty.
    stamps, values = minutes(wobble(30_000, 7) + wobble(300_000, 3), wobble(300_000, 10))
    assert judge(RT, stamps, values, baseline_end=START - timedelta(minutes=15)) is None
    judgement = judge(RT, stamps, values, baseline_end=START - timedelta(minutes=15), start=START)
    assert judgement is not None
    assert judgement.anomalous
    assert judgement.baseline_points == 7
    assert judgement.onset == stamps[7]
