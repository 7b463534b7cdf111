import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.domain.rules import RuleSettings
from aromatrack.domain.bodycomp import (
    DAY_S, BodyFatTrend, TrendSettings, WEEK_S, add_reading, slope_window, theil_sen_slope, trend_at,
)

SETTINGS = TrendSettings()


def trend_of(values, start=0.0, every_days=1.0):
    trend, rejected = BodyFatTrend(), []
    for i, value in enumerate(values):
        reason = add_reading(trend, start + i * every_days * DAY_S, value, SETTINGS)
        if reason:
            rejected.append((i, reason))
    return trend, rejected


def test_noise_of_half_a_point_is_smoothed_to_a_flat_trend():
    rng = random.Random(1)
    trend, rejected = trend_of([20 + rng.uniform(-0.5, 0.5) for _ in range(60)])
    assert rejected == []
    assert all(abs(v - 20) < 0.3 for _, v in trend.points[10:])
    assert abs(trend.slope_per_week) < RuleSettings().changing_slope_pct_per_week  # not "changing"


def test_steady_loss_gives_its_slope_per_week():
    rng = random.Random(2)
    trend, _ = trend_of([26 - 0.05 * d + rng.uniform(-0.5, 0.5) for d in range(90)])
    assert trend.slope_per_week == pytest.approx(-0.35, abs=0.1)


def test_impossible_jump_is_rejected_with_a_reason_and_ignored():
    trend, rejected = trend_of([22.0] * 10 + [11.0] + [22.0] * 3)
    assert [i for i, _ in rejected] == [10]
    assert "points from the trend" in rejected[0][1]
    assert trend.points[-1][1] == 22.0


def test_interpolates_between_points_and_carries_within_limit():
    trend, _ = trend_of([20.0, 18.0], every_days=10)
    assert trend_at(trend, 5 * DAY_S, SETTINGS) == pytest.approx(19.0)
    assert trend_at(trend, 20 * DAY_S, SETTINGS) == 18.0
    assert trend_at(trend, 100 * DAY_S, SETTINGS) is None


def test_old_points_are_dropped():
    trend, _ = trend_of([20.0] * 500)
    assert len(trend.points) <= SETTINGS.keep_days + 1


@settings(max_examples=50)
@given(st.lists(st.floats(10, 40), min_size=1, max_size=40))
def test_smoothed_value_stays_within_accepted_readings(values):
    trend, rejected = trend_of(values)
    bad = {i for i, _ in rejected}
    accepted = [v for i, v in enumerate(values) if i not in bad]
    assert all(min(accepted) <= v <= max(accepted) for _, v in trend.points)


def slope_computed_whole(trend: BodyFatTrend, trend_settings: TrendSettings) -> float | None:
    slope = theil_sen_slope(slope_window(trend.points, trend_settings))
    return None if slope is None else slope * WEEK_S


readings_in_time_order = st.lists(
    st.tuples(st.sampled_from([0.0, 0.0, 0.25, 1.0, 1.5, 3.0, 9.0, 40.0]), st.floats(15, 25)), min_size=1, max_size=80)


@settings(max_examples=200)
@given(readings_in_time_order, st.sampled_from([1.0, 7.0, 28.0]), st.sampled_from([3.0, 30.0, 400.0]))
def test_slid_slope_is_exactly_the_slope_recomputed_over_the_window(readings, slope_days, keep_days):
    """The slope kept as points come and go equals the Theil-Sen slope computed whole over the window's points
    after every reading (the same float, not nearly), whatever the gaps, repeated times and window lengths."""
    trend_settings = TrendSettings(slope_days=slope_days, keep_days=keep_days, max_jump_pct=100.0)
    trend, time_s = BodyFatTrend(), 0.0
    for gap_days, pct in readings:
        time_s += gap_days * DAY_S
        assert add_reading(trend, time_s, pct, trend_settings) is None
        assert trend.slope_per_week == slope_computed_whole(trend, trend_settings)
        assert trend.slopes == sorted(trend.slopes)


def test_a_reading_out_of_time_order_rebuilds_the_window():
    trend = BodyFatTrend()
    for time_s, pct in [(0.0, 20.0), (2 * DAY_S, 20.5), (4 * DAY_S, 21.0), (1 * DAY_S, 20.2), (5 * DAY_S, 21.1)]:
        add_reading(trend, time_s, pct, SETTINGS)
        assert trend.slope_per_week == slope_computed_whole(trend, SETTINGS)
