"""Which database each point goes to: decided once in schemas.series, by audience."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, strategies as st

from aromatrack.schemas import series as S
from aromatrack.schemas.series import Audience, by_database

WHEN = datetime(2026, 1, 5, tzinfo=timezone.utc)


def point(series: S.Series, fields: dict) -> S.Point:
    return series.point(WHEN, {"athlete_id": "a"}, fields)


def test_labs_doses_symptoms_alerts_and_the_e2_correlation_are_clinical_training_and_scale_data_coaching():
    clinical = {s.measurement for s in S.ALL_SERIES if s.audience is Audience.CLINICAL}
    assert clinical == {"lab", "dose", "symptoms", "e2_correlation", "alerts"}
    assert S.BODY_FAT_TREND.fields_for(Audience.COACHING) == ("smoothed_pct", "slope_pct_per_week")
    assert S.BODY_FAT_TREND.fields_for(Audience.CLINICAL) == ("change_since_e2_pct",)
    assert S.LAB.fields_for(Audience.COACHING) == ()


def test_the_change_since_the_last_e2_draw_goes_to_the_clinical_database_only():
    routed = by_database([point(S.BODY_FAT_TREND, {"smoothed_pct": 20.0, "slope_pct_per_week": -0.1,
                                                   "change_since_e2_pct": -1.5})])
    assert routed[Audience.COACHING][0].fields == {"smoothed_pct": 20.0, "slope_pct_per_week": -0.1}
    assert routed[Audience.CLINICAL][0].fields == {"change_since_e2_pct": -1.5}
    assert routed[Audience.CLINICAL][0].measurement == "body_fat_trend"
    assert by_database([point(S.BODY_FAT_TREND, {"smoothed_pct": 20.0})]).keys() == {Audience.COACHING}


@given(st.lists(st.tuples(st.sampled_from(S.ALL_SERIES), st.data()), max_size=12), st.data())
def test_every_field_of_every_point_lands_exactly_once_in_a_database_its_audience_may_hold(picks, data):
    points = []
    for series, draw in picks:
        names = draw.draw(st.sets(st.sampled_from(series.fields), min_size=1))
        points.append(S.Point(series.measurement, {"athlete_id": "a"}, {n: 1.0 for n in names}, WHEN))
    routed = by_database(points)
    stored = [(audience, p.measurement, name) for audience, ps in routed.items() for p in ps for name in p.fields]
    assert sorted((m, n) for _, m, n in stored) == sorted((p.measurement, n) for p in points for n in p.fields)
    for audience, measurement, name in stored:
        assert name in S.SERIES_BY_MEASUREMENT[measurement].fields_for(audience)


def test_a_measurement_outside_the_contract_has_no_database():
    with pytest.raises(ValueError, match="not a measurement of the series contract"):
        by_database([S.Point("mystery", {}, {"x": 1.0}, WHEN)])


def test_a_series_cannot_name_a_clinical_field_it_does_not_have():
    with pytest.raises(ValueError, match="are not fields"):
        S.Series("m", ("athlete_id",), ("a",), Audience.COACHING, clinical_fields=("b",))
