import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.domain import labs
from aromatrack.schemas.fhir import LOINC_ANALYTES, UNITS, FhirError, bundle_to_events, observation_to_event


def observation(code="2243-4", value=25.0, unit="pg/mL", **extra):
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/ath-1"},
        "effectiveDateTime": "2025-03-01T07:30:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        **extra,
    }


def test_estradiol_observation_with_range_and_method():
    event = observation_to_event(observation(
        value=18, referenceRange=[{"low": {"value": 8}, "high": {"value": 35}}],
        method={"text": "LC/MS-MS"},
    ))
    assert (event.athlete_id, event.analyte, event.value, event.unit) == ("ath-1", "estradiol", 18, "pg/mL")
    assert (event.reference_low, event.reference_high, event.method, event.loinc) == (8, 35, "lc_msms", "2243-4")


def test_censored_immunoassay_keeps_its_comparator():
    obs = observation(value=24, method={"coding": [{"display": "Immunoassay"}]})
    obs["valueQuantity"]["comparator"] = "<"
    event = observation_to_event(obs)
    assert event.comparator == "<" and event.method == "immunoassay"


def test_molar_codes_map_with_ucum_units():
    event = observation_to_event(observation(code="14913-8", value=20, unit="nmol/L"))
    assert event.analyte == "testosterone_total" and labs.normalise(event).value == pytest.approx(576.84, rel=1e-3)
    assert observation_to_event(observation(code="10501-5", value=4, unit="[IU]/L")).unit == "IU/L"


@pytest.mark.parametrize("obs,message", [
    (observation(code="1234-5"), "unsupported LOINC code(s) '1234-5'"),
    (observation(unit="ng/mL"), "unknown unit 'ng/mL' for LOINC 2243-4"),
    (observation(code="2986-8", unit="pg/mL"), "unknown unit 'pg/mL' for testosterone_total"),
    ({**observation(), "code": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}, "no LOINC coding"),
    ({**observation(), "effectiveDateTime": None}, "effectiveDateTime: missing"),
])
def test_unknown_codes_and_units_are_rejected_with_a_clear_error(obs, message):
    with pytest.raises(FhirError, match="".join("\\" + c if c in "()[]." else c for c in message)):
        observation_to_event(obs)


def test_bundle_of_observations_skips_other_resources_and_names_a_bad_entry():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": observation()},
        {"resource": {"resourceType": "Patient", "id": "ath-1"}},
        {"resource": observation(code="2986-8", value=650, unit="ng/dL")},
    ]}
    assert [e.analyte for e in bundle_to_events(bundle)] == ["estradiol", "testosterone_total"]
    bundle["entry"].append({"resource": observation(code="9999-9")})
    with pytest.raises(FhirError, match=r"^entry\[3\]\.code\.coding"):
        bundle_to_events(bundle)


@given(st.sampled_from(sorted(LOINC_ANALYTES)), st.sampled_from(sorted(UNITS)), st.floats(0, 1e4))
def test_any_code_and_unit_either_maps_or_fails_cleanly(code, unit, value):
    try:
        event = observation_to_event(observation(code=code, value=value, unit=unit))
    except FhirError as exc:
        assert "unit" in str(exc)
    else:
        assert event.analyte == LOINC_ANALYTES[code] and labs.normalise(event).value >= 0


MALE = {"coding": [{"system": "http://snomed.info/sct", "code": "248153007", "display": "Male"}]}
FEMALE = {"coding": [{"system": "http://snomed.info/sct", "code": "248152002", "display": "Female"}]}


def test_the_range_that_applies_to_a_man_is_taken_not_the_first():
    event = observation_to_event(observation(value=30, referenceRange=[
        {"low": {"value": 15}, "high": {"value": 350}, "appliesTo": [FEMALE]},
        {"low": {"value": 8}, "high": {"value": 35}, "appliesTo": [MALE]},
    ]))
    assert (event.reference_low, event.reference_high) == (8, 35)


def test_a_range_for_the_other_sex_only_is_never_used():
    event = observation_to_event(observation(value=30, referenceRange=[
        {"low": {"value": 15}, "high": {"value": 350}, "appliesTo": [{"text": "Female"}]},
    ]))
    assert event.reference_low is None and event.reference_high is None
    general = observation_to_event(observation(value=30, referenceRange=[
        {"low": {"value": 15}, "high": {"value": 350}, "appliesTo": [FEMALE]},
        {"low": {"value": 7.6}, "high": {"value": 42.6}},
    ]))
    assert (general.reference_low, general.reference_high) == (7.6, 42.6)


def test_each_bound_is_converted_from_its_own_unit():
    # a pmol/L result whose lab states the range in pg/mL: the range is scaled to pmol/L, not relabelled
    obs = observation(code="14715-7", value=55, unit="pmol/L", referenceRange=[
        {"low": {"value": 7.6, "unit": "pg/mL", "code": "pg/mL"}, "high": {"value": 42.6, "unit": "pg/mL", "code": "pg/mL"}},
    ])
    event = observation_to_event(obs)
    assert (event.reference_low, event.reference_high) == pytest.approx((7.6 * 3.671, 42.6 * 3.671))
    lab = labs.normalise(event)
    assert (lab.reference_low, lab.reference_high) == pytest.approx((7.6, 42.6))


@pytest.mark.parametrize("code,value,unit,analyte", [
    ("2089-1", 120, "mg/dL", "ldl"),
    ("22748-8", 3.1, "mmol/L", "ldl"),
    ("14646-4", 1.2, "mmol/L", "hdl"),
    ("14914-6", 300, "pmol/L", "testosterone_free"),
    ("20570-8", 45, "%", "hematocrit"),
    ("71833-8", 0.45, "1", "hematocrit"),
    ("24966-4", 1.05, "g/cm2", "bmd_lumbar_spine"),
])
def test_codes_the_review_found_missing_map_to_their_analyte(code, value, unit, analyte):
    event = observation_to_event(observation(code=code, value=value, unit=unit))
    assert event.analyte == analyte and event.loinc == code


@pytest.mark.parametrize("code,unit", [("2243-4", "pmol/L"), ("14715-7", "pg/mL"), ("14646-4", "mg/dL"),
                                       ("4544-3", "L/L"), ("71833-8", "%"), ("2089-1", "mmol/L")])
def test_a_unit_that_does_not_measure_the_codes_property_is_refused(code, unit):
    with pytest.raises(FhirError, match=f"unit '{re.escape(unit)}' does not measure LOINC {code}"):
        observation_to_event(observation(code=code, value=10, unit=unit))


@pytest.mark.parametrize("comparator", ["<", "<=", ">", ">="])
def test_comparators_are_kept_distinct(comparator):
    obs = observation(value=24)
    obs["valueQuantity"]["comparator"] = comparator
    assert observation_to_event(obs).comparator == comparator


def test_the_performing_lab_is_kept_for_its_default_method():
    event = observation_to_event(observation(performer=[{"reference": "Organization/quest-east"}]))
    assert event.lab_id == "quest-east" and event.method is None
