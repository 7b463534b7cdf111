"""The alert chart: weekly sums keep every unit of load, and the PNG renders with or without data."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.services.chart import Evidence, render, weekly_sums

moments = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(timezone.utc))


@given(st.lists(st.tuples(moments, st.floats(0, 1000)), max_size=60))
def test_weekly_sums_keep_the_total_and_start_on_mondays(daily) -> None:
    weeks = weekly_sums(daily)
    assert sum(v for _, v in weeks) == pytest.approx(sum(v for _, v in daily))
    assert all(week.weekday() == 0 and week.hour == 0 for week, _ in weeks)
    assert [w for w, _ in weeks] == sorted({w for w, _ in weeks})


@pytest.mark.parametrize("evidence", [
    Evidence(),
    Evidence(e2_pg_ml=[(datetime(2026, 1, 5, tzinfo=timezone.utc), 25.0)],
             weekly_mg_by_drug={"anastrozole": [(datetime(2026, 1, 1, tzinfo=timezone.utc), 1.0)],
                                "testosterone_cypionate": [(datetime(2026, 1, 1, tzinfo=timezone.utc), 140.0)]}),
])
def test_the_chart_is_a_png_with_or_without_data(evidence: Evidence) -> None:
    png = render(evidence, "dose_review", datetime(2026, 2, 1, tzinfo=timezone.utc) + timedelta(hours=1))
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and int.from_bytes(png[16:20], "big") > 400  # width in px
