"""Robust body-fat trend from smart-scale readings.

Scale body-fat readings jitter by +/-0.5 points from hydration and foot contact, and now and then a reading is
plainly wrong (someone else on the scale, wet feet). So the trend is the median of the readings in a trailing
window (a median ignores one wild reading, a mean would not), the slope is the Theil-Sen estimate over the
recent trend (robust too), and a reading far from the current trend is rejected with a reason rather than
averaged in. Times are epoch seconds; everything here is pure and causal (it only looks back), so folding
events in time order gives the same trend in the CLI and in the stream.
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass, field

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


@dataclass(frozen=True)
class TrendSettings:
    smoothing_days: float = 10.0  # trailing window for the median
    slope_days: float = 28.0  # trailing window for the Theil-Sen slope
    keep_days: float = 400.0  # trend points older than this are dropped (bounded memory)
    max_jump_pct: float = 4.0  # a reading this far from the trend is rejected...
    max_rate_pct_per_week: float = 1.5  # ...plus this much per week since the last accepted reading
    max_carry_days: float = 30.0  # how long the last trend value stands in for a missing reading


@dataclass
class BodyFatTrend:
    """Accepted readings in the smoothing window, the smoothed trend points (time_s, pct) and the recent slope.

    The slope is kept with the points it comes from, and so are the points of its window (`slope_window`) and
    their pairwise slopes, sorted (`slopes`): the engine reads the slope on every event, and a Theil-Sen estimate
    is quadratic in the window's points. Recomputed whole at each reading, it was the largest cost of a backfill,
    and then still a fifth of a fold; slid by one point, each reading adds and drops only that point's pairs."""

    readings: list[tuple[float, float]] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    slope_per_week: float | None = None
    slope_window: list[tuple[float, float]] = field(default_factory=list)
    slopes: list[float] = field(default_factory=list)


def rejection_reason(trend: BodyFatTrend, time_s: float, pct: float, settings: TrendSettings) -> str | None:
    """Why a reading is impossible given the trend so far, or None if it is plausible."""
    if not trend.points:
        return None
    last_time, last_value = trend.points[-1]
    weeks = max(0.0, time_s - last_time) / WEEK_S
    allowed = settings.max_jump_pct + settings.max_rate_pct_per_week * weeks
    jump = pct - last_value
    if abs(jump) > allowed:
        return (
            f"body_fat_pct: {jump:+.1f} points from the trend ({last_value:.1f}%) after {weeks * 7:.0f} days "
            f"exceeds the plausible {allowed:.1f} points"
        )
    return None


def add_reading(trend: BodyFatTrend, time_s: float, pct: float, settings: TrendSettings) -> str | None:
    """Add a reading (in time order) and update the trend; returns the rejection reason instead if impossible."""
    reason = rejection_reason(trend, time_s, pct, settings)
    if reason is not None:
        return reason
    window_start = time_s - settings.smoothing_days * DAY_S
    trend.readings = [r for r in trend.readings if r[0] > window_start] + [(time_s, pct)]
    smoothed = statistics.median(value for _, value in trend.readings)
    keep_start = time_s - settings.keep_days * DAY_S
    del trend.points[: bisect.bisect_right(trend.points, (keep_start, float("inf")))]
    trend.points.append((time_s, smoothed))
    _slide_slope_window(trend, settings)
    return None


def _pair_slopes(points: list[tuple[float, float]]) -> list[float]:
    """The slopes of every pair of points at distinct times (value per second), earlier point first. The sliding
    window (`_slide_slope_window`) computes each pair's slope with this same expression, inline (a call per pair
    was a quarter of its time), so the slope it removes is the very float it added."""
    return [(v2 - v1) / (t2 - t1) for i, (t1, v1) in enumerate(points) for t2, v2 in points[i + 1:] if t2 != t1]


def _median_of_sorted(values: list[float]) -> float | None:
    """`statistics.median` of an already sorted list (the same value, without sorting it again)."""
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def theil_sen_slope(points: list[tuple[float, float]]) -> float | None:
    """Median of pairwise slopes (value per second); None with fewer than two distinct times."""
    return _median_of_sorted(sorted(_pair_slopes(points)))


def slope_window(points: list[tuple[float, float]], settings: TrendSettings) -> list[tuple[float, float]]:
    """The trend points the slope is taken over: those of the last `slope_days`."""
    if not points:
        return []
    start = points[-1][0] - settings.slope_days * DAY_S
    return points[bisect.bisect_left(points, (start, float("-inf"))):]


def _slide_slope_window(trend: BodyFatTrend, settings: TrendSettings) -> None:
    """Update the slope for the trend point just appended: the window's points that left it (older than
    `slope_days`, or dropped from the trend) take their pairs' slopes out of the sorted list and the new point
    brings its pairs', so the slope is exactly `theil_sen_slope` over `slope_window` of the trend's points. A point
    earlier than the window's last (readings out of time order) rebuilds the window whole."""
    newest = trend.points[-1]
    window, slopes = trend.slope_window, trend.slopes
    if window and newest[0] < window[-1][0]:
        trend.slope_window = window = slope_window(trend.points, settings)
        trend.slopes = slopes = sorted(_pair_slopes(window))
    else:
        start = newest[0] - settings.slope_days * DAY_S
        first_kept = trend.points[0][0]
        leaving = 0
        while leaving < len(window) and (window[leaving][0] < start or window[leaving][0] < first_kept):
            leaving += 1
        for index in range(leaving):
            t1, v1 = window[index]
            for t2, v2 in window[index + 1:]:
                if t2 != t1:
                    del slopes[bisect.bisect_left(slopes, (v2 - v1) / (t2 - t1))]
        del window[:leaving]
        t2, v2 = newest
        for t1, v1 in window:
            if t1 != t2:
                bisect.insort(slopes, (v2 - v1) / (t2 - t1))
        window.append(newest)
    slope = _median_of_sorted(slopes)
    trend.slope_per_week = None if slope is None else slope * WEEK_S


def trend_at(trend: BodyFatTrend, time_s: float, settings: TrendSettings) -> float | None:
    """Smoothed body fat at a time: interpolated between trend points, else the nearest one within
    `max_carry_days`, else None."""
    points = trend.points
    if not points:
        return None
    for (t1, v1), (t2, v2) in zip(points, points[1:]):
        if t1 <= time_s <= t2:
            return v1 if t2 == t1 else v1 + (v2 - v1) * (time_s - t1) / (t2 - t1)
    nearest_time, nearest_value = points[-1] if time_s > points[-1][0] else points[0]
    if abs(time_s - nearest_time) <= settings.max_carry_days * DAY_S:
        return nearest_value
    return None
