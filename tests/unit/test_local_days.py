"""Days and weeks are the athlete's own: the load model counts a workout on the athlete's local date."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.domain import training_load as tl
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.streams import workouts


def test_an_evening_session_in_california_counts_on_that_californian_day():
    evening = datetime(2026, 3, 2, 3, 30, tzinfo=timezone.utc)  # 19:30 on 1 March in Los Angeles
    assert tl.local_time(evening, "America/Los_Angeles").date() == date(2026, 3, 1)
    assert tl.local_time(evening, None).date() == date(2026, 3, 2)  # no zone: the event's own (UTC) offset


def test_a_monday_morning_run_in_sydney_is_in_that_monday_week():
    monday_run = datetime(2026, 3, 1, 20, 0, tzinfo=timezone.utc)  # 07:00 on Monday 2 March in Sydney
    assert tl.week_start(tl.local_time(monday_run, "Australia/Sydney")) == date(2026, 3, 2)
    assert tl.week_start(monday_run) == date(2026, 2, 23)  # the UTC week it used to land in


def test_without_a_profile_zone_the_offset_the_event_carries_decides():
    from_the_watch = datetime.fromisoformat("2026-03-01T21:00:00-08:00")
    assert tl.local_time(from_the_watch, None).date() == date(2026, 3, 1)


def test_unknown_zones_are_refused_by_name():
    with pytest.raises(ValueError, match="'Mars/Olympus' is not an IANA time zone"):
        tl.Athlete(time_zone="Mars/Olympus")
    with pytest.raises(EventError, match="time_zone"):
        parse_event({"type": "athlete.profile", "athlete_id": "a", "time": "2026-01-01T00:00:00Z", "sex": "male",
                     "birth_year": 1980, "hr_rest_bpm": 50, "hr_max_bpm": 185, "time_zone": "Mars/Olympus"})


def test_the_profile_time_zone_reaches_the_athlete_in_effect():
    history = tl.with_profile([], 0.0, {"hr_rest_bpm": 50, "hr_max_bpm": 185, "time_zone": "Asia/Tokyo"})
    assert tl.athlete_at(history, 10.0).time_zone == "Asia/Tokyo"
    assert tl.athlete_at([[0.0, {"hr_rest_bpm": 50, "hr_max_bpm": 185}]], 10.0).time_zone is None  # stored before


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(timezone.utc)),
       st.sampled_from(["America/Los_Angeles", "Australia/Sydney", "Europe/Berlin", "Asia/Kolkata", "UTC"]))
def test_the_local_instant_is_the_same_instant_and_its_date_is_within_a_day_of_utc(moment, name):
    local = tl.local_time(moment, name)
    # The same instant (compared as timestamps: Python never calls an ambiguous local time equal to a UTC one).
    assert local.timestamp() == moment.timestamp() and abs((local.date() - moment.date()).days) <= 1
    assert tl.week_start(local).weekday() == 0 and 0 <= (local.date() - tl.week_start(local)).days < 7


def test_the_workouts_state_counts_the_load_on_the_local_day_and_week():
    evening = {"event_id": "w1", "time": "2026-03-02T03:30:00+00:00", "load": 80.0, "modality": "steady_state",
               "duration_s": 3600}
    update = workouts.record_workout(tl.LoadHistory(), evening, "America/Los_Angeles")
    assert [(d.day, d.load) for d in update.days] == [(date(2026, 3, 1), 80.0)]
    assert update.week[0].week_start == date(2026, 2, 23)  # Sunday 1 March closes the week of Monday 23 February
    next_evening = (datetime(2026, 3, 2, 3, 30, tzinfo=timezone.utc) + timedelta(days=1)).isoformat()
    update = workouts.record_workout(update.history, {**evening, "event_id": "w2", "time": next_evening},
                                     "America/Los_Angeles")
    assert [d.day for d in update.days] == [date(2026, 3, 2)]
