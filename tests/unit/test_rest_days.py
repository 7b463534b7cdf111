"""The load model carried through today: fatigue falls and form rises on rest days, continuing the model exactly."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given
from hypothesis import strategies as st

from aromatrack.domain import training_load as tl
from aromatrack.streams import workouts

FIRST = date(2026, 1, 5)


@given(st.dictionaries(st.integers(0, 120), st.floats(0, 300), min_size=1, max_size=40), st.integers(-10, 400))
def test_rest_days_continue_the_model_to_today_with_falling_fatigue(loads, today_offset):
    daily = {FIRST + timedelta(days=n): load for n, load in loads.items()}
    last = max(daily)
    today = last + timedelta(days=today_offset)
    rest = tl.rest_days(daily, today)
    if today <= last:
        assert rest == []
        return
    assert [d.day for d in rest] == [last + timedelta(days=n) for n in range(1, len(rest) + 1)]
    assert rest[-1].day == min(today, last + timedelta(days=tl.MODEL_TAIL_DAYS))
    assert rest == [d for d in tl.daily_load_model(daily, end=rest[-1].day) if d.day > last]
    assert all(d.load == 0 for d in rest)
    for before, after in zip(rest, rest[1:]):
        assert after.atl <= before.atl and after.ctl <= before.ctl


def test_a_resting_athlete_gets_fresher_every_day():
    rest = tl.rest_days({FIRST: 150.0, FIRST + timedelta(days=1): 150.0}, FIRST + timedelta(days=21))
    assert len(rest) == 20 and rest[0].tsb < 0 < rest[-1].tsb


def test_the_timer_writes_each_athletes_rest_days_once_until_the_model_or_the_day_changes():
    history = workouts.record_workout(tl.LoadHistory(), {"event_id": "w", "time": "2026-03-02T07:00:00+00:00",
                                                         "load": 90.0, "modality": "steady_state",
                                                         "duration_s": 3600}).history
    key = b"rest-days-athlete"
    written = {}
    first = workouts.rest_day_points(written, key, history, date(2026, 3, 9))
    assert [p.time.date() for p in first] == [date(2026, 3, d) for d in range(3, 10)]
    assert {p.tags["athlete_id"] for p in first} == {"rest-days-athlete"}
    assert workouts.rest_day_points(written, key, history, date(2026, 3, 9)) == []  # nothing new on the next tick
    assert len(workouts.rest_day_points(written, key, history, date(2026, 3, 10))) == 8  # a new day
    history = workouts.record_workout(history, {"event_id": "w0", "time": "2026-03-01T07:00:00+00:00", "load": 40.0,
                                                "modality": "steady_state", "duration_s": 1800}).history
    assert len(workouts.rest_day_points(written, key, history, date(2026, 3, 10))) == 8  # a late workout changed the model
