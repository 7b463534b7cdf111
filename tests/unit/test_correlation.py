import pytest
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.domain.correlation import CorrelationSettings, E2Pair, fitted_slope, predict_e2

SETTINGS = CorrelationSettings()


def pairs(fats, slope, intercept):
    return [E2Pair(i * 1e6, intercept + slope * fat, fat, f"e{i}") for i, fat in enumerate(fats)]


@given(st.floats(0.5, 5), st.floats(-20, 10), st.lists(st.floats(12, 30), min_size=4, max_size=12, unique=True))
def test_fit_recovers_a_linear_relation(slope, intercept, fats):
    if max(fats) - min(fats) < SETTINGS.min_fat_spread_pct:
        assert fitted_slope(pairs(fats, slope, intercept), SETTINGS) is None
    else:
        assert fitted_slope(pairs(fats, slope, intercept), SETTINGS) == pytest.approx(slope, rel=1e-6)


def test_too_few_pairs_fall_back_to_the_proportional_rule_of_thumb():
    history = pairs([25, 22], 2.0, -10)
    estimate = predict_e2(history, history[-1], 11.0, SETTINGS)
    assert estimate.slope_pg_ml_per_pct is None and estimate.method == "proportional_rule_of_thumb"
    assert estimate.predicted_e2_pg_ml == pytest.approx(34 * 11 / 22)


def test_enough_pairs_use_the_athletes_own_slope():
    history = pairs([26, 24, 22, 20], 2.5, -20)
    estimate = predict_e2(history, history[-1], 16.0, SETTINGS)
    assert estimate.method == "per_athlete_fit" and estimate.predicted_e2_pg_ml == pytest.approx(20.0)


def test_prediction_never_goes_negative():
    history = pairs([26, 24, 22, 20], 10.0, -180)
    assert predict_e2(history, history[-1], 2.0, SETTINGS).predicted_e2_pg_ml == 0.0
