"""The boundary between the event contract and the clinical core: each validated event becomes the core's value
with the same numbers, and each of the core's alerts the contract's message with the same content."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aromatrack.domain import engine
from aromatrack.domain import events as domain
from aromatrack.domain.training_load import Athlete, WorkoutInput
from aromatrack.schemas import boundary
from aromatrack.schemas.events import EVENT_TYPES, Alert, EventError, dump_event, parse_event
from aromatrack.services import cohort
from aromatrack.services.jsonl import read_events

TIMELINES = Path(__file__).parent.parent / "timelines"
T0 = "2026-02-01T07:30:00+01:00"
ENVELOPE = {"athlete_id": "a-1", "time": T0, "event_id": "e-1"}


def translated(event_type: str, **fields_):
    return boundary.domain_event(parse_event({"type": event_type, **ENVELOPE, **fields_}))


def test_the_envelope_is_kept_and_the_time_is_the_same_instant_with_its_offset():
    value = translated("protocol.phase", phase="trt")
    assert value == domain.PhaseChange("a-1", datetime.fromisoformat(T0), "e-1", phase="trt")
    assert value.time.utcoffset() is not None and value.time == datetime(2026, 2, 1, 6, 30, tzinfo=timezone.utc)


# One valid event of each type, and what the core's value for it holds besides the envelope.
EXAMPLES = {
    "athlete.profile": (
        dict(sex="female", birth_year=1990, hr_rest_bpm=55, hr_max_bpm=180, ftp_w=200, time_zone="Europe/Berlin",
             coach_id="c-1"),
        dict(athlete=Athlete(hr_rest_bpm=55, hr_max_bpm=180, ftp_w=200, sex="female", time_zone="Europe/Berlin")),
    ),
    "dose.change": (dict(drug="anastrozole", dose_mg=0.5, times_per_week=2),
                    dict(drug="anastrozole", dose_mg=0.5, times_per_week=2)),
    "protocol.phase": (dict(phase="post_trt_recovery"), dict(phase="post_trt_recovery")),
    "scale.reading": (dict(weight_kg=88.2, body_fat_pct=21.4, device="withings"), dict(body_fat_pct=21.4)),
    "lab.result": (
        dict(analyte="estradiol", value=88.1, unit="pmol/L", comparator="<", method="immunoassay", lab_id="lab-1",
             reference_low=40, reference_high=160, loinc="2243-4"),
        dict(analyte="estradiol", value=88.1, unit="pmol/L", comparator="<", method="immunoassay", lab_id="lab-1",
             reference_low=40, reference_high=160),
    ),
    "symptom.log": (dict(energy=4, symptoms=["joint_pain", "fatigue", "joint_pain"]),
                    dict(symptoms=frozenset({"joint_pain", "fatigue"}))),
    "workout.summary": (dict(sport="training", duration_s=3600, rpe=7),
                        dict(workout=WorkoutInput(sport="training", duration_s=3600, rpe=7), load=None, modality=None,
                             trimp=None)),
    "workout.fit": (dict(path="/nowhere.fit"), {}),
}


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_each_event_becomes_the_cores_value_with_what_the_core_reads(event_type):
    body, expected = EXAMPLES[event_type]
    value = translated(event_type, **body)
    names = {field.name for field in fields(value)} - {"athlete_id", "time", "event_id", "time_s"}
    assert names == set(expected) and all(getattr(value, name) == expected[name] for name in names)
    assert value.time_s == value.time.timestamp()


def test_a_summary_keeps_its_numbers_and_its_load_and_leaves_the_rest():
    value = translated("workout.summary", sport="cycling", sub_sport="indoor_cycling", duration_s=1800,
                       avg_hr_bpm=150, max_hr_bpm=None, avg_power_w=180, normalized_power_w=205, rpe=6,
                       distance_m=15000, load=48.3, modality="hiit", trimp=61.2, records=1800, load_source="power_tss")
    assert value.workout == WorkoutInput(sport="cycling", sub_sport="indoor_cycling", duration_s=1800, avg_hr_bpm=150,
                                         avg_power_w=180, normalized_power_w=205, rpe=6)
    assert (value.load, value.modality, value.trimp) == (48.3, "hiit", 61.2)
    plain = translated("workout.summary", sport="training", duration_s=3600)
    assert (plain.load, plain.modality, plain.trimp) == (None, None, None)


def test_every_event_type_becomes_a_value_the_engine_folds_and_no_two_the_same():
    assert sorted(type(translated(event_type, **EXAMPLES[event_type][0])).__name__ for event_type in EVENT_TYPES) == sorted(
        value_type.__name__ for value_type in engine.TYPE_ORDER)


def test_an_alert_goes_out_with_the_cores_content_and_validates_against_the_contract():
    events = [event for name in sorted(TIMELINES.glob("*.jsonl")) for event in read_events(name)]
    for raw in cohort.generate(athletes=6, days=182, seed=7):  # updates (versions > 1) among its alerts
        try:
            events.append(parse_event(raw))
        except EventError:
            continue  # the cohort's deliberate impossible readings
    alerts = engine.evaluate(map(boundary.domain_event, events), as_of_s=datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp())
    assert alerts and any(alert.version > 1 for alert in alerts) and any(alert.historical for alert in alerts)
    for alert in alerts:
        wire = Alert.model_validate_json(dump_event(boundary.wire_alert(alert)))
        evidence = [domain.Evidence(e.name, e.value, e.unit, tuple(e.event_ids)) for e in wire.evidence]
        assert domain.Alert(
            wire.alert_id, wire.version, wire.athlete_id, wire.time, wire.raised_at, wire.kind, wire.rule,
            wire.severity, wire.summary, tuple(evidence), tuple(wire.sources), tuple(wire.anchor_event_ids),
            wire.historical,
        ) == alert
    assert boundary.evaluate(events, as_of_s=datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()) == [
        boundary.wire_alert(alert) for alert in alerts]
