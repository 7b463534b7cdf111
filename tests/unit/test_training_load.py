"""Training load core: hand-checked formula values and hypothesis properties of the load and fitness model."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.domain.training_load import (
    PROFILE_HISTORY_LIMIT,
    Athlete,
    Session,
    WorkoutInput,
    classify_modality,
    daily_load_model,
    intensity_profile,
    normalized_power,
    weekly_modality_mix,
    athlete_at,
    with_profile,
    workout_load,
)

ATHLETE = Athlete(hr_rest_bpm=60, hr_max_bpm=180, ftp_w=250)
heart_rates = st.floats(min_value=40, max_value=220, allow_nan=False)
durations = st.floats(min_value=60, max_value=6 * 3600, allow_nan=False)


def test_banister_trimp_by_hand_for_an_hour_at_half_the_heart_rate_reserve():
    # 60 min x 0.5 x 0.64 x e^(1.92 x 0.5) = 50.14 (men); 60 x 0.5 x 0.86 x e^(1.67 x 0.5) = 59.43 (women)
    hour = WorkoutInput(sport="running", duration_s=3600, avg_hr_bpm=120)
    assert workout_load(hour, ATHLETE).trimp == pytest.approx(19.2 * math.exp(0.96))
    woman = Athlete(hr_rest_bpm=60, hr_max_bpm=180, sex="female")
    assert workout_load(hour, woman).trimp == pytest.approx(25.8 * math.exp(0.835))


def test_an_hour_at_threshold_is_100_by_every_measure():
    threshold_hr = 60 + 0.85 * 120
    by_hr = workout_load(WorkoutInput(sport="running", duration_s=3600, avg_hr_bpm=threshold_hr), ATHLETE)
    assert (by_hr.hrtss, by_hr.source, by_hr.load) == (pytest.approx(100), "hrtss", pytest.approx(100))
    by_power = workout_load(WorkoutInput(sport="cycling", duration_s=3600, avg_hr_bpm=120, avg_power_w=250), ATHLETE)
    assert (by_power.power_tss, by_power.source) == (pytest.approx(100), "power_tss")
    by_effort = workout_load(WorkoutInput(sport="training", duration_s=3600, rpe=7), ATHLETE)
    assert (by_effort.srpe_load, by_effort.source, by_effort.load) == (420, "srpe", pytest.approx(100))


def test_power_tss_needs_ftp_and_half_an_hour_at_ftp_is_50():
    ride = WorkoutInput(sport="cycling", duration_s=1800, avg_power_w=250)
    assert workout_load(ride, ATHLETE).power_tss == pytest.approx(50)
    no_ftp = workout_load(ride, Athlete(hr_rest_bpm=60, hr_max_bpm=180))
    assert (no_ftp.power_tss, no_ftp.source, no_ftp.load) == (None, "none", 0.0)


def test_normalized_power_of_alternating_blocks_exceeds_the_average():
    # 60 s at 400 W then 60 s at 100 W, repeated: average 250 W, NP well above it.
    samples = ([400.0] * 60 + [100.0] * 60) * 10
    assert normalized_power([200.0] * 100) == pytest.approx(200)
    assert 300 < normalized_power(samples) < 400
    assert normalized_power([300.0] * 29) is None


@given(st.lists(st.floats(min_value=0, max_value=2000, allow_nan=False), min_size=30, max_size=400))
def test_normalized_power_stays_within_the_samples(samples):
    assert min(samples) - 1e-6 <= normalized_power(samples) <= max(samples) + 1e-6


@given(heart_rates, heart_rates, durations)
def test_trimp_grows_with_heart_rate_and_never_goes_negative(hr_a, hr_b, duration_s):
    low, high = sorted((hr_a, hr_b))
    trimp_low = workout_load(WorkoutInput(sport="running", duration_s=duration_s, avg_hr_bpm=low), ATHLETE).trimp
    trimp_high = workout_load(WorkoutInput(sport="running", duration_s=duration_s, avg_hr_bpm=high), ATHLETE).trimp
    assert 0 <= trimp_low <= trimp_high


@given(heart_rates, durations)
def test_trimp_from_steady_samples_equals_trimp_from_the_average(hr, duration_s):
    samples = WorkoutInput(sport="running", duration_s=duration_s, hr_samples=[hr] * 50)
    average = WorkoutInput(sport="running", duration_s=duration_s, avg_hr_bpm=hr)
    assert workout_load(samples, ATHLETE).trimp == pytest.approx(workout_load(average, ATHLETE).trimp)


def test_athlete_with_rest_above_max_is_refused_with_both_numbers():
    with pytest.raises(ValueError, match=r"hr_rest_bpm \(190\) must be below hr_max_bpm \(180\)"):
        Athlete(hr_rest_bpm=190, hr_max_bpm=180)


def intervals(repeats: int) -> list[float]:
    """Warm-up, then `repeats` x (60 s hard at 170 bpm, 90 s easy at 110 bpm)."""
    return [110.0] * 300 + ([170.0] * 60 + [110.0] * 90) * repeats


def test_modality_by_name_and_by_intensity_pattern():
    assert classify_modality("training", "strength_training") == "resistance"
    assert classify_modality("Strength Training") == "resistance"
    assert classify_modality("training", "HIIT") == "hiit"
    assert classify_modality("running") == "steady_state"
    assert classify_modality("yoga") == "other"
    assert classify_modality("cycling", intensity=intensity_profile(intervals(6), ATHLETE)) == "hiit"
    assert classify_modality("cycling", intensity=intensity_profile(intervals(2), ATHLETE)) == "steady_state"
    assert classify_modality("cycling", intensity=intensity_profile([150.0] * 3600, ATHLETE)) == "steady_state"


def test_a_dip_just_below_hard_does_not_split_a_bout():
    profile = intensity_profile([170.0] * 30 + [155.0] * 5 + [170.0] * 30 + [100.0] * 30, ATHLETE)
    assert profile.hard_bouts == 1 and profile.hard_share == pytest.approx(60 / 95)


def test_daily_model_by_hand_for_the_first_days():
    start = date(2026, 1, 5)
    days = daily_load_model({start: 100.0, start + timedelta(days=2): 50.0})
    assert [d.day for d in days] == [start + timedelta(days=i) for i in range(3)]
    first, rest_day, third = days
    assert first.ctl == pytest.approx(100 * (1 - math.exp(-1 / 42)))
    assert first.atl == pytest.approx(100 * (1 - math.exp(-1 / 7)))
    assert first.tsb == 0 and first.acwr == pytest.approx(first.atl / first.ctl)
    assert rest_day.load == 0 and rest_day.ctl == pytest.approx(first.ctl * math.exp(-1 / 42))
    assert third.tsb == pytest.approx(rest_day.ctl - rest_day.atl)


def test_daily_model_is_empty_without_loads_and_zero_over_an_explicit_range():
    assert daily_load_model({}) == []
    quiet = daily_load_model({}, start=date(2026, 1, 1), end=date(2026, 1, 3))
    assert [(d.load, d.ctl, d.atl, d.tsb, d.acwr) for d in quiet] == [(0.0, 0.0, 0.0, 0.0, None)] * 3


@given(st.floats(min_value=1, max_value=500, allow_nan=False))
def test_constant_daily_load_converges_to_ctl_equal_atl_equal_load(load):
    start = date(2026, 1, 1)
    days = daily_load_model({start + timedelta(days=i): load for i in range(400)})
    last = days[-1]
    assert last.ctl == pytest.approx(load, rel=1e-3) and last.atl == pytest.approx(load, rel=1e-3)
    assert last.acwr == pytest.approx(1, rel=1e-3) and abs(last.tsb) < load * 1e-3


@given(st.dictionaries(st.integers(min_value=0, max_value=120), st.floats(min_value=0, max_value=400), max_size=60))
def test_fitness_and_fatigue_stay_between_zero_and_the_biggest_day(loads_by_offset):
    start = date(2026, 1, 1)
    days = daily_load_model({start + timedelta(days=k): v for k, v in loads_by_offset.items()}, start, start + timedelta(days=130))
    biggest = max(loads_by_offset.values(), default=0.0)
    assert len(days) == 131
    for day in days:
        assert 0 <= day.ctl <= biggest + 1e-9 and 0 <= day.atl <= biggest + 1e-9
        assert day.acwr is None or day.acwr >= 0


sessions = st.builds(
    Session,
    start=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 3, 1), timezones=st.just(timezone.utc)),
    modality=st.sampled_from(["resistance", "hiit", "steady_state", "other"]),
    load=st.floats(min_value=0.1, max_value=300),
    minutes=st.floats(min_value=1, max_value=300),
)


@given(st.lists(sessions, max_size=40))
def test_weekly_mix_shares_sum_to_one_and_keep_every_load(items):
    mix = weekly_modality_mix(items)
    assert sum(row.load for row in mix) == pytest.approx(sum(s.load for s in items))
    for week in {row.week_start for row in mix}:
        assert week.weekday() == 0
        assert sum(row.share for row in mix if row.week_start == week) == pytest.approx(1)


def test_weekly_mix_by_hand():
    monday = datetime(2026, 2, 2, 7, tzinfo=timezone.utc)
    mix = weekly_modality_mix([
        Session(monday, "resistance", 60, 45),
        Session(monday + timedelta(days=6, hours=10), "steady_state", 120, 90),
        Session(monday + timedelta(days=7), "steady_state", 50, 30),
    ])
    assert [(r.week_start, r.modality, r.load, r.minutes, round(r.share, 3)) for r in mix] == [
        (date(2026, 2, 2), "resistance", 60, 45, 0.333),
        (date(2026, 2, 2), "steady_state", 120, 90, 0.667),
        (date(2026, 2, 9), "steady_state", 50, 30, 1.0),
    ]


profiles = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10**6),
        st.integers(min_value=35, max_value=80),
        st.integers(min_value=150, max_value=210),
        st.sampled_from(["male", "female"]),
    ),
    max_size=40,
    unique_by=lambda entry: entry[0],
)


def _history(entries) -> list:
    history: list = []
    for time_s, rest, top, sex in entries:
        history = with_profile(history, time_s, {"hr_rest_bpm": rest, "hr_max_bpm": top, "sex": sex, "coach_id": "c"})
    return history


@given(profiles, st.randoms(use_true_random=False), st.integers(min_value=-10, max_value=10**6 + 10))
def test_the_profile_in_effect_is_the_latest_at_or_before_the_time_whatever_the_arrival_order(entries, rng, time_s):
    shuffled = list(entries)
    rng.shuffle(shuffled)
    history = _history(shuffled)
    assert history == _history(sorted(entries)) == _history([*entries, *entries])  # any order, redeliveries
    assert len(history) == min(len(entries), PROFILE_HISTORY_LIMIT)
    kept = sorted(entries)[-PROFILE_HISTORY_LIMIT:]
    in_effect = [entry for entry in kept if entry[0] <= time_s]
    expected = Athlete(hr_rest_bpm=in_effect[-1][1], hr_max_bpm=in_effect[-1][2], sex=in_effect[-1][3]) if in_effect else Athlete()
    assert athlete_at(history, time_s) == expected


def test_a_workout_load_follows_the_profile_in_effect():
    history = with_profile([], 1000.0, {"hr_rest_bpm": 45, "hr_max_bpm": 170, "ftp_w": None, "sex": "male"})
    run = WorkoutInput(sport="running", duration_s=3600, avg_hr_bpm=150)
    before, after = (workout_load(run, athlete_at(history, t)).load for t in (999.0, 1000.0))
    assert before == workout_load(run, Athlete()).load
    assert after > before  # 150 bpm is a larger share of a 45-170 reserve than of the default 60-190
