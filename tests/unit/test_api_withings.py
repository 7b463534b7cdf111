"""The Withings getmeas mapping: value x 10^unit, fat from mass when the ratio is missing, clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.schemas.events import parse_event
from aromatrack.services.withings import WithingsError, scale_readings


def document(*groups: dict) -> dict:
    return {"status": 0, "body": {"measuregrps": list(groups)}}


def group(measures: list[tuple[int, int, int]], **extra) -> dict:
    return {"grpid": 1, "date": 1777622400, "category": 1,
            "measures": [{"type": t, "value": v, "unit": u} for t, v, u in measures], **extra}


@given(
    weight_g=st.integers(40_000, 200_000),
    fat_fraction=st.floats(0.05, 0.5),
    unit=st.integers(-5, -1),
)
def test_scaled_values_and_fat_mass_become_a_valid_reading(weight_g: int, fat_fraction: float, unit: int) -> None:
    scale = 10 ** (-unit)
    weight_value = weight_g * scale // 1000
    fat_mass_value = int(weight_value * fat_fraction)
    [reading], skipped = scale_readings(document(group([(1, weight_value, unit), (8, fat_mass_value, unit)])), "a-1")
    weight = weight_value / scale
    assert skipped == []
    assert reading["weight_kg"] == pytest.approx(weight, abs=1e-3)
    assert reading["body_fat_pct"] == pytest.approx(fat_mass_value / weight_value * 100, abs=0.01)
    assert parse_event(reading).event_id == "withings-1"


def test_optional_masses_and_hydration_percent() -> None:
    measures = [(1, 80000, -3), (6, 150, -1), (76, 6500, -2), (88, 33, -1), (77, 4800, -2), (5, 68, 0)]
    [reading], _ = scale_readings(document(group(measures)), "a-1")
    assert reading["muscle_mass_kg"] == 65.0 and reading["bone_mass_kg"] == 3.3 and reading["lean_mass_kg"] == 68
    assert reading["hydration_pct"] == 60.0


def test_goals_and_weight_only_groups_are_skipped_with_a_reason() -> None:
    readings, skipped = scale_readings(
        document(group([(1, 80, 0), (6, 15, 0)], category=2), group([(1, 80, 0)], grpid=2)), "a-1"
    )
    assert readings == [] and [s.grpid for s in skipped] == [1, 2] and "goal" in skipped[0].reason


@pytest.mark.parametrize(("bad", "field"), [
    ([], "body: must be a JSON object"),
    ({"body": {}}, "body.measuregrps"),
    (document({"date": "today", "measures": []}), "body.measuregrps[0].date"),
    (document({"date": 1, "measures": [{"type": 1, "value": 1.5, "unit": 0}]}), "body.measuregrps[0].measures[0]"),
])
def test_malformed_documents_name_the_field(bad, field: str) -> None:
    with pytest.raises(WithingsError, match=field.replace("[", r"\[").replace("]", r"\]")):
        scale_readings(bad, "a-1")
