"""The event contract: valid events parse, bad ones fail with an error naming the field and problem."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.schemas import topics
from aromatrack.schemas.events import (
    ANALYTE_UNITS,
    EVENT_MODELS,
    EventError,
    MAX_JSON_DEPTH,
    MAX_JSON_INT,
    dump_event,
    parse_event,
    stable_event_id,
)
from aromatrack.schemas.export import JSON_DIR, json_schemas

T0 = "2026-02-01T07:30:00+01:00"

VALID = {
    "athlete.profile": {"sex": "male", "birth_year": 1985, "hr_rest_bpm": 52, "hr_max_bpm": 186, "coach_id": "c1"},
    "scale.reading": {"weight_kg": 88.2, "body_fat_pct": 21.4, "muscle_mass_kg": 65.1, "device": "withings"},
    "workout.fit": {"fit_b64": base64.b64encode(b"\x0e\x10fit").decode()},
    "workout.summary": {"sport": "training", "sub_sport": "strength_training", "duration_s": 3600, "rpe": 7},
    "lab.result": {"analyte": "estradiol", "value": 24, "unit": "pg/mL", "comparator": "<", "method": "immunoassay"},
    "dose.change": {"drug": "anastrozole", "dose_mg": 0.5, "times_per_week": 2},
    "protocol.phase": {"phase": "trt"},
    "symptom.log": {"joint_comfort": 3, "symptoms": ["joint_pain", "fatigue"]},
}


def event(event_type: str, **overrides) -> dict:
    return {"type": event_type, "athlete_id": "a-1", "time": T0, **VALID[event_type], **overrides}


def test_every_event_type_has_a_valid_example():
    assert set(VALID) == set(EVENT_MODELS)


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_events_parse_and_round_trip(event_type):
    parsed = parse_event(event(event_type))
    assert parsed.type == event_type
    assert parsed.event_id and len(parsed.event_id) == 32
    assert parse_event(dump_event(parsed)) == parsed


@pytest.mark.parametrize(
    ("event_type", "overrides", "expected"),
    [
        ("scale.reading", {"weight_kg": 900}, "weight_kg: Input should be less than or equal to 350"),
        ("scale.reading", {"body_fat_pct": -3}, "body_fat_pct: Input should be greater than or equal to 2"),
        ("scale.reading", {"muscle_mass_kg": 95}, "muscle_mass_kg (95) cannot exceed weight_kg (88.2)"),
        ("lab.result", {"unit": "ng/mL"}, "unknown unit 'ng/mL' for estradiol; accepted: pg/mL, pmol/L"),
        ("lab.result", {"analyte": "cortisol"}, "analyte: Input should be"),
        ("lab.result", {"comparator": "=<"}, "comparator: Input should be '<', '<=', '>' or '>='"),
        ("dose.change", {"drug": "letrozole"}, "drug: Input should be"),
        ("symptom.log", {"symptoms": ["hiccups"]}, "symptoms.0: Input should be"),
        ("athlete.profile", {"hr_rest_bpm": 110, "hr_max_bpm": 105}, "hr_rest_bpm (110) must be below hr_max_bpm (105)"),
        ("workout.fit", {"fit_b64": None}, "exactly one of fit_b64 or path must be given"),
        ("protocol.phase", {"time": "2026-02-01T07:30:00"}, "time: Input should have timezone info"),
    ],
)
def test_bad_events_name_the_field_and_the_problem(event_type, overrides, expected):
    raw = {k: v for k, v in event(event_type, **overrides).items() if v is not None}
    with pytest.raises(EventError) as caught:
        parse_event(raw)
    assert expected in str(caught.value)


def test_missing_envelope_fields_and_unknown_types_are_named():
    with pytest.raises(EventError, match="athlete_id: Field required"):
        parse_event({"type": "protocol.phase", "time": T0, "phase": "trt"})
    with pytest.raises(EventError, match="unknown event type 'scale.weight'"):
        parse_event({"type": "scale.weight"})
    with pytest.raises(EventError, match="not JSON"):
        parse_event(b"\xff\xfe")
    with pytest.raises(EventError, match="must be a JSON object, got list"):
        parse_event("[1, 2]")


def test_a_huge_payload_is_refused_but_a_fit_upload_may_be_large():
    huge = json.dumps(event("scale.reading", note="x" * 70_000))
    with pytest.raises(EventError, match="over the 65536-byte limit for scale.reading events"):
        parse_event(huge)
    fit = json.dumps(event("workout.fit", fit_b64=base64.b64encode(b"\x0e" * 100_000).decode()))
    assert parse_event(fit).type == "workout.fit"


def test_extra_fields_are_kept():
    parsed = parse_event(event("workout.summary", records=3600, load_source="hrtss"))
    assert json.loads(dump_event(parsed))["load_source"] == "hrtss"


def test_a_summary_declares_the_load_a_fit_file_gave_it():
    parsed = parse_event(event("workout.summary", load=55.2, modality="resistance", trimp=80, normalized_power_w=210))
    assert (parsed.load, parsed.modality, parsed.trimp, parsed.normalized_power_w) == (55.2, "resistance", 80.0, 210.0)
    for bad, problem in ((dict(load=-1), "load: Input should be greater than or equal to 0"),
                         (dict(modality=3), "modality: Input should be a valid string"),
                         (dict(trimp="high"), "trimp: Input should be a valid number"),
                         (dict(normalized_power_w=5000), "normalized_power_w: Input should be less than or equal to 3000")):
        with pytest.raises(EventError, match=re.escape(problem)):
            parse_event(event("workout.summary", **bad))


def test_declaring_the_load_fields_kept_every_summarys_id():
    """Ids are what replays and retries are recognised by: a summary keeps the id contract v1 gave it before
    `load`, `modality`, `trimp` and `normalized_power_w` were declared (then kept as extra fields), whether it
    gives them or not (the ids below are those v1 computed)."""
    summary = parse_event(event("workout.summary"))
    assert summary.event_id == "21d5d93c6ff9dc7595d044b5ea431d45"
    assert parse_event(summary.model_dump(mode="json", exclude={"event_id"})).event_id == summary.event_id  # nulls too
    assert parse_event(event("workout.summary", load=55.2, modality="resistance")).event_id == "7a17564bacee4a1e17f4b75990b910b7"


def test_stable_event_id_ignores_key_order_and_an_existing_id_is_kept():
    a = parse_event(event("scale.reading"))
    b = parse_event(dict(reversed(list(event("scale.reading").items()))))
    assert a.event_id == b.event_id
    assert parse_event(event("scale.reading", event_id="client-42")).event_id == "client-42"
    assert parse_event(event("scale.reading", weight_kg=88.3)).event_id != a.event_id


def test_every_input_type_has_a_topic_and_all_topics_are_distinct():
    assert set(topics.INPUT_TOPICS) == set(EVENT_MODELS)
    assert len(set(topics.ALL_TOPICS)) == len(topics.ALL_TOPICS)


def test_committed_json_schemas_match_the_models():
    """schemas/json is what non-Python producers use; regenerate with `aromatrack schemas export`."""
    for filename, schema in json_schemas().items():
        committed = json.loads((JSON_DIR / filename).read_text())
        assert committed == json.loads(json.dumps(schema)), f"{filename} is stale"


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_json_schema_accepts_what_the_models_accept(event_type):
    schema = json_schemas()[f"{event_type}.v1.schema.json"]
    jsonschema.validate(json.loads(dump_event(parse_event(event(event_type)))), schema)


LABEL_FIELDS = [("scale.reading", "athlete_id"), ("scale.reading", "event_id"), ("scale.reading", "device"),
                ("workout.summary", "sport"), ("workout.summary", "sub_sport")]
NOT_IN_A_LABEL = ["a\nline break", "a\ttab", "a nul\x00", "a delete\x7f", "ends in a backslash\\", "mid\\dle"]


@pytest.mark.parametrize(("event_type", "field"), LABEL_FIELDS)
@pytest.mark.parametrize("text", NOT_IN_A_LABEL)
def test_a_label_with_a_control_character_or_a_backslash_is_refused_in_every_form(event_type, field, text):
    """InfluxDB cannot store such a label as a tag: the event is refused at the entry, naming the field."""
    raw = event(event_type, **{field: text})
    for form in (raw, json.dumps(raw), json.dumps(raw).encode()):
        with pytest.raises(EventError, match=f"^{field}: must be one line of text without backslashes"):
            parse_event(form)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, json_schemas()[f"{event_type}.v1.schema.json"])


def test_a_label_may_hold_what_line_protocol_escapes_and_any_other_text():
    label = 'Body+ (WBS05), x=1 "quoted" \'é 😀'
    parsed = parse_event(json.dumps(event("scale.reading", device=label, athlete_id=label)).encode())
    assert (parsed.device, parsed.athlete_id) == (label, label)


@pytest.mark.parametrize(("moment", "refusal"), [
    ("1899-12-31T23:59:59Z", "time: Input should be greater than or equal to 1900-01-01T00:00:00Z"),
    ("1900-01-01T00:00:00Z", None),
    ("1900-01-01T01:00:00+02:00", "time: Input should be greater than or equal to 1900-01-01T00:00:00Z"),
    ("2199-12-31T23:59:59Z", None),
    ("2200-01-01T00:00:00Z", "time: Input should be less than 2200-01-01T00:00:00Z"),
    ("3000-01-01T07:00:00Z", "time: Input should be less than 2200-01-01T00:00:00Z"),
])
def test_an_event_time_is_one_influxdb_can_store_compared_as_an_instant(moment, refusal):
    raw = event("scale.reading", time=moment)
    for form in (raw, json.dumps(raw).encode()):
        if refusal is None:
            assert parse_event(form).time == datetime.fromisoformat(moment)
        else:
            with pytest.raises(EventError, match=f"^{re.escape(refusal)}$"):
                parse_event(form)


labels = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\\\x7f"
                                        + "".join(map(chr, range(32)))), min_size=1, max_size=40)
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
).map(lambda t: t.astimezone(timezone(timedelta(hours=2))))


@settings(max_examples=200)
@given(
    weight=st.floats(min_value=25, max_value=350, allow_nan=False),
    fat=st.floats(min_value=2, max_value=75, allow_nan=False),
    moment=aware_times,
    athlete=labels,
)
def test_any_plausible_reading_round_trips_with_a_stable_id(weight, fat, moment, athlete):
    raw = {"type": "scale.reading", "athlete_id": athlete, "time": moment.isoformat(), "weight_kg": weight,
           "body_fat_pct": fat}
    parsed = parse_event(raw)
    again = parse_event(dump_event(parsed))
    assert again == parsed
    assert parsed.event_id == stable_event_id(parse_event(raw))
    assert parsed.time == moment


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), st.dictionaries(st.text(max_size=10), st.integers())))
def test_arbitrary_input_is_either_an_event_or_an_event_error(raw):
    try:
        parse_event(raw)
    except EventError as exc:
        assert str(exc)


@settings(max_examples=200)
@given(
    analyte=st.sampled_from(sorted(ANALYTE_UNITS)),
    unit=st.text(max_size=8),
    value=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_lab_units_outside_the_contract_are_always_refused(analyte, unit, value):
    raw = {"type": "lab.result", "athlete_id": "a", "time": T0, "analyte": analyte, "value": value, "unit": unit}
    if unit in ANALYTE_UNITS[analyte]:
        assert parse_event(raw).unit == unit
    else:
        with pytest.raises(EventError, match=f"unknown unit .* for {analyte}"):
            parse_event(raw)


# Bytes are validated by pydantic straight from the text when the values it reads certainly keep the JSON limits,
# text always the long way (decode, walk the limits, validate); both must read every message the same.
JSON_LEAVES = (st.none() | st.booleans() | st.integers(-MAX_JSON_INT - 10, MAX_JSON_INT + 10)
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
JSON_TREES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(max_size=6), inner, max_size=3), max_leaves=8)
# What a sender's JSON may carry that the limits refuse or the decoder reads its own way: each replaces a `"@"`.
ODD_TOKENS = ["NaN", "-Infinity", "1e400", "-2e-400", str(MAX_JSON_INT + 1), "12345678901234567890.5", '"\\udc00"',
              '"\\ud83d\\ude00"', '"\\u00e9"', '"tab\tin"', '"\x01"', "01", "1.",
              "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)]


def _outcome(raw: bytes | str) -> str:
    try:
        return dump_event(parse_event(raw)).decode()
    except EventError as exc:
        return f"refused: {exc}"


@st.composite
def odd_event_texts(draw) -> str:
    """An event's JSON text as a sender may write it: valid or not, with tokens the limits refuse or the decoder
    reads its own way, and keys given twice (the last one counts)."""
    body = {**event(draw(st.sampled_from(sorted(set(VALID) - {"workout.fit"})))), **draw(
        st.just({}) | st.dictionaries(st.sampled_from(
            ["weight_kg", "body_fat_pct", "value", "time", "athlete_id", "rpe", "energy", "symptoms", "dose_mg",
             "extra", "nested"]), JSON_TREES, max_size=3))}
    odd = draw(st.none() | st.sampled_from(ODD_TOKENS))
    if odd is not None:
        # An extra field keeps the token as read; a declared float field (a lab's value has no upper bound)
        # converts it.
        body[draw(st.sampled_from(["odd", "value"]))] = "@"
    text = json.dumps(body, ensure_ascii=draw(st.booleans()))
    if odd is not None:
        text = text.replace('"@"', odd, 1)
    if draw(st.booleans()):
        text = text[:-1] + ', "athlete_id": "a-2"}'
    return text


@settings(max_examples=400, deadline=None)
@given(odd_event_texts())
def test_bytes_and_text_of_an_event_read_the_same(text):
    assert _outcome(text.encode()) == _outcome(text)


def test_an_extra_field_nested_too_deep_is_refused_from_bytes_as_from_text():
    deep = json.dumps(event("symptom.log", nested=json.loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH)))
    for raw in (deep, deep.encode()):
        with pytest.raises(EventError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
            parse_event(raw)


def test_bytes_that_are_not_utf8_are_refused_as_not_json():
    text = json.dumps(event("symptom.log", athlete_id="a\u00e9"), ensure_ascii=False)
    raw = text.encode().replace("\u00e9".encode(), b"\xff")
    with pytest.raises(EventError, match="body: not JSON: 'utf-8' codec can't decode byte 0xff"):
        parse_event(raw)


def test_an_integer_past_64_bits_in_a_float_field_is_refused_from_bytes_as_from_text():
    # Read from bytes, a lab's value (a float without an upper bound) holds it as 9.2e18: the bytes path must not
    # take that as certain, and the long way refuses the literal.
    text = json.dumps(event("lab.result", value="@")).replace('"@"', str(MAX_JSON_INT + 1))
    for raw in (text, text.encode()):
        with pytest.raises(EventError, match="outside the 64-bit range"):
            parse_event(raw)
