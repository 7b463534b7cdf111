from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.domain import labs
from aromatrack.schemas.events import ANALYTE_UNITS, parse_event


def lab_event(analyte, value, unit, **extra):
    return parse_event({"type": "lab.result", "athlete_id": "a", "time": "2025-03-01T07:00:00Z",
                        "analyte": analyte, "value": value, "unit": unit, **extra})


@pytest.mark.parametrize("analyte,unit", [(a, u) for a, units in ANALYTE_UNITS.items() for u in units])
def test_every_contract_unit_converts(analyte, unit):
    assert labs.conversion_factor(analyte, unit) > 0


@pytest.mark.parametrize("analyte,value,unit,expected", [
    ("estradiol", 73.42, "pmol/L", 20.0),
    ("testosterone_total", 20.0, "nmol/L", 576.84),
    ("testosterone_free", 347.0, "pmol/L", 100.08),
    ("testosterone_free", 10.0, "ng/dL", 100.0),
    ("hs_crp", 0.3, "mg/dL", 3.0),
    ("hematocrit", 0.45, "L/L", 45.0),
    ("hdl", 1.0, "mmol/L", 38.67),
])
def test_known_conversions(analyte, value, unit, expected):
    assert labs.to_canonical(analyte, value, unit) == pytest.approx(expected, rel=1e-3)


def test_testosterone_conversion_matches_domain_factor():
    # DOMAIN.md: T nmol/L = ng/dL x 0.03467
    assert labs.to_canonical("testosterone_total", 1.0, "nmol/L") * 0.03467 == pytest.approx(1.0, rel=1e-3)


def test_unknown_unit_is_an_error_not_a_guess():
    with pytest.raises(labs.UnitError, match="unit: cannot convert 'ng/mL' for estradiol"):
        labs.conversion_factor("estradiol", "ng/mL")


def test_censored_value_stays_censored_and_converts_its_limit():
    lab = labs.normalise(lab_event("estradiol", 88.1, "pmol/L", comparator="<", method="immunoassay"))
    assert lab.censored and lab.comparator == "<" and lab.method == "immunoassay"
    assert lab.value == pytest.approx(24.0, rel=1e-3)
    assert lab.surely_below(24.5) and not lab.surely_below(20)  # "<24" is not known to be under 20


def test_reference_range_is_converted_too():
    lab = labs.normalise(lab_event("estradiol", 100, "pmol/L", reference_low=40, reference_high=160))
    assert (lab.reference_low, lab.reference_high) == pytest.approx((40 / 3.671, 160 / 3.671))


@given(st.sampled_from([(a, u) for a, us in ANALYTE_UNITS.items() for u in us]), st.floats(0.001, 1e5))
def test_conversion_is_linear_and_positive(analyte_unit, value):
    analyte, unit = analyte_unit
    converted = labs.to_canonical(analyte, value, unit)
    assert converted > 0
    assert labs.to_canonical(analyte, 2 * value, unit) == pytest.approx(2 * converted)
    assert labs.to_canonical(analyte, converted, labs.CANONICAL_UNITS[analyte]) == converted
