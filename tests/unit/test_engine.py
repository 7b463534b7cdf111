"""The engine on whole timelines: one alert per question, updates, the clock, stable ids, order independence,
bounded state."""

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aromatrack.domain import engine
from aromatrack.schemas.boundary import domain_event
from aromatrack.schemas.events import parse_event
from aromatrack.services.jsonl import read_events

TIMELINES = Path(__file__).parent.parent / "timelines"
T0 = datetime(2025, 1, 6, 7, tzinfo=timezone.utc)


def ev(type_, day, **fields):
    return domain_event(parse_event({"type": type_, "athlete_id": "a", "time": (T0 + timedelta(days=day)).isoformat(), **fields}))


def timeline(name):
    return [domain_event(event) for event in read_events(TIMELINES / name)]


def test_same_alerts_whatever_the_input_order():
    events = timeline("fat_loss_unchanged_ai.jsonl")
    expected = engine.evaluate(events)
    shuffled = events[:]
    random.Random(3).shuffle(shuffled)
    assert engine.evaluate(shuffled) == expected


def test_replay_with_duplicates_raises_each_alert_id_once():
    events = timeline("symptomatic_high_e2.jsonl")
    alerts = engine.evaluate(events + events)
    assert len({a.alert_id for a in alerts}) == len(alerts) == 1


def test_the_same_question_is_not_raised_again_however_long_it_stands():
    events = [ev("dose.change", 0, drug="anastrozole", dose_mg=0.5, times_per_week=2),
              ev("lab.result", 1, analyte="estradiol", value=75, unit="pg/mL", method="lc_msms")]
    events += [ev("scale.reading", day, weight_kg=90, body_fat_pct=22) for day in range(2, 120)]
    alerts = [a for a in engine.evaluate(events) if a.rule == "dose_review.high_e2"]
    assert [(a.time.date(), a.version) for a in alerts] == [((T0 + timedelta(days=1)).date(), 1)]


def test_new_symptom_logs_update_the_open_alert_instead_of_paging_again():
    events = [ev("lab.result", 0, analyte="estradiol", value=48, unit="pg/mL", method="lc_msms")]
    events += [ev("symptom.log", day, symptoms=["water_retention", "mood_swings"] if day % 2 else ["nipple_sensitivity", "water_retention"])
               for day in range(1, 7)]
    alerts = [a for a in engine.evaluate(events) if a.rule == "dose_review.high_e2_symptomatic"]
    assert len({a.alert_id for a in alerts}) == 1
    assert [a.version for a in alerts] == list(range(1, 7))  # the first log makes the count; each later one is news
    assert all(a.raised_at == alerts[0].time for a in alerts)
    cited = next(e for e in alerts[-1].evidence if e.name == "high_e2_symptoms").event_ids
    assert len(cited) == 6


def test_a_step_up_in_severity_is_a_new_alert():
    events = [ev("athlete.profile", 0, sex="male", birth_year=1985, hr_rest_bpm=50, hr_max_bpm=185),
              ev("lab.result", 1, analyte="estradiol", value=15, unit="pg/mL"),
              ev("lab.result", 60, analyte="estradiol", value=14, unit="pg/mL")]
    alerts = [a for a in engine.evaluate(events) if a.rule == "recheck.e2_immunoassay_low"]
    assert [a.severity for a in alerts] == ["info", "warning"]
    assert len({a.alert_id for a in alerts}) == 2


def test_a_dose_change_after_the_draw_answers_the_dose_review_and_the_recheck_follows():
    events = [ev("dose.change", 0, drug="anastrozole", dose_mg=0.5, times_per_week=2),
              ev("lab.result", 30, analyte="estradiol", value=14, unit="pg/mL", method="lc_msms"),
              ev("lab.result", 30, analyte="testosterone_total", value=650, unit="ng/dL", method="lc_msms"),
              ev("dose.change", 32, drug="anastrozole", dose_mg=0.25, times_per_week=2)]
    events += [ev("scale.reading", day, weight_kg=90, body_fat_pct=18) for day in range(31, 100)]
    alerts = engine.evaluate(events)
    assert [(a.rule, (a.time - T0).days) for a in alerts] == [
        ("dose_review.low_e2_on_ai", 30), ("recheck.after_dose_change", 74)]


def test_a_draw_and_a_dose_change_at_the_same_time_process_the_draw_first():
    events = [ev("dose.change", 0, drug="anastrozole", dose_mg=0.5, times_per_week=2),
              ev("dose.change", 30, drug="anastrozole", dose_mg=0.25, times_per_week=2),
              ev("lab.result", 30, analyte="estradiol", value=30, unit="pg/mL", method="lc_msms")]
    alerts = engine.evaluate(events, as_of_s=(T0 + timedelta(days=80)).timestamp())
    assert [(a.rule, (a.time - T0).days) for a in alerts] == [("recheck.after_dose_change", 72)]


def test_the_clock_raises_a_scheduled_recheck_with_no_event_after_it():
    events = [ev("protocol.phase", 0, phase="trt"),
              ev("dose.change", 0, drug="testosterone_cypionate", dose_mg=100, times_per_week=1)]
    assert engine.evaluate(events) == []  # the clock stops at the last event by default
    alerts = engine.evaluate(events, as_of_s=(T0 + timedelta(days=60)).timestamp())
    assert [(a.rule, a.time) for a in alerts] == [("recheck.after_trt_start", T0 + timedelta(days=42))]
    # the same recheck, same id and time, when a later event carries the clock past the due time
    later = engine.evaluate([*events, ev("scale.reading", 60, weight_kg=90, body_fat_pct=20)])
    assert [(a.alert_id, a.time) for a in later] == [(alerts[0].alert_id, alerts[0].time)]


def test_advancing_twice_raises_nothing_twice():
    state = engine.AthleteState("a")
    engine.step(state, ev("protocol.phase", 0, phase="trt"))
    first = engine.advance(state, (T0 + timedelta(days=50)).timestamp())
    again = engine.advance(state, (T0 + timedelta(days=400)).timestamp())
    assert [a.rule for a in first] == ["recheck.after_trt_start"] and again == []


def test_a_new_draw_is_a_new_situation():
    events = [ev("lab.result", 1, analyte="estradiol", value=75, unit="pg/mL", method="lc_msms"),
              ev("lab.result", 5, analyte="estradiol", value=72, unit="pg/mL", method="lc_msms")]
    assert len([a for a in engine.evaluate(events) if a.rule == "dose_review.high_e2"]) == 2


def test_alert_ids_are_stable_across_runs():
    events = timeline("dose_change_recheck.jsonl")
    assert [a.alert_id for a in engine.evaluate(events)] == [a.alert_id for a in engine.evaluate(list(reversed(events)))]


def test_e2_context_carries_fat_load_and_dose():
    outcomes = [o for e, o in engine.fold(timeline("low_e2_on_ai.jsonl")) if o.e2 is not None]
    second = outcomes[1].e2
    assert second.e2_pg_ml == 14 and abs(second.body_fat_pct - 21) < 0.6
    assert second.anastrozole_weekly_mg == 1.0 and second.weekly_load > 0
    assert second.modality_share == {"resistance": 1.0}
    assert second.predicted_e2_pg_ml is not None


def test_state_stays_bounded_over_years():
    events = [ev("scale.reading", d, weight_kg=90, body_fat_pct=20 + (d % 3) * 0.3) for d in range(0, 1500)]
    events += [ev("symptom.log", d, symptoms=["fatigue"]) for d in range(0, 1500, 3)]
    state = engine.AthleteState("a")
    for event in sorted(events, key=engine.order_key):
        engine.step(state, event)
    assert len(state.trend.points) <= 401 and len(state.symptoms) <= 11


def test_impossible_reading_is_reported_and_does_not_move_the_trend():
    events = [ev("scale.reading", d, weight_kg=90, body_fat_pct=20) for d in range(10)]
    events.append(ev("scale.reading", 10, weight_kg=90, body_fat_pct=35))
    outcomes = [o for _, o in engine.fold(events)]
    assert outcomes[-1].rejection and outcomes[-1].trend is None
    assert all(o.rejection is None for o in outcomes[:-1])


def test_workouts_without_fit_load_are_scored_by_the_training_load_core():
    profile = ev("athlete.profile", 0, sex="male", birth_year=1985, hr_rest_bpm=50, hr_max_bpm=185)
    runs = [ev("workout.summary", d, sport="running", duration_s=3600, avg_hr_bpm=150) for d in range(1, 15)]
    draws = [ev("lab.result", day, analyte="estradiol", value=30, unit="pg/mL", method="lc_msms") for day in (0, 15)]
    context = [o.e2 for _, o in engine.fold([profile, *runs, *draws]) if o.e2 is not None][-1]
    assert context.modality_share == {"steady_state": 1.0}
    assert 30 < context.weekly_load < 1000


def test_a_labs_default_method_applies_to_its_results_that_name_none():
    from aromatrack.domain.rules import RuleSettings

    events = [ev("dose.change", 0, drug="anastrozole", dose_mg=0.5, times_per_week=2),
              ev("lab.result", 30, analyte="estradiol", value=14, unit="pg/mL", lab_id="lcms-lab"),
              ev("lab.result", 30, analyte="testosterone_total", value=640, unit="ng/dL", lab_id="lcms-lab")]
    unstated = engine.evaluate(events)
    assert [a.rule for a in unstated] == ["recheck.e2_immunoassay_low"]
    settings = engine.EngineSettings(rules=RuleSettings(default_method_by_lab={"lcms-lab": "lc_msms"}))
    assert [a.rule for a in engine.evaluate(events, settings)] == ["dose_review.low_e2_on_ai"]


def test_an_alert_raised_long_after_its_time_is_imported_history():
    events = [ev("dose.change", 0, drug="anastrozole", dose_mg=0.5, times_per_week=2),
              ev("lab.result", 30, analyte="estradiol", value=75, unit="pg/mL", method="lc_msms"),
              ev("lab.result", 60, analyte="estradiol", value=95, unit="pg/mL", method="lc_msms")]
    assert not any(a.historical for a in engine.evaluate(events))  # no as-of: the timeline arrives live

    def day(n):
        return (T0 + timedelta(days=n)).timestamp()

    at_day_70 = engine.evaluate(events, as_of_s=day(70))  # received whole on day 70: the day-30 draw is history
    assert [((a.time - T0).days, a.historical) for a in at_day_70] == [(30, True), (60, False)]
    # the age is a setting; exactly at it an alert is still news
    settings = engine.EngineSettings(historical_after_days=10)
    assert [a.historical for a in engine.evaluate(events, settings, as_of_s=day(70))] == [True, False]
    assert [a.historical for a in engine.evaluate(events, settings, as_of_s=day(70) + 1)] == [True, True]
    assert engine.mark_historical(at_day_70[1], day(200)).historical and engine.is_historical(at_day_70[1].time, day(200))
