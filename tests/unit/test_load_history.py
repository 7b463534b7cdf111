"""The bounded per-athlete load history (`training_load.add_session`): bounded as history grows, the CTL/ATL
model stays exactly the model over the whole history, late and old sessions land where they should."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.domain import training_load as tl
from aromatrack.domain.events import WorkoutSummary

START = datetime(2024, 1, 1, 17, tzinfo=timezone.utc)


def session(day: int, load: float, modality: str = "steady_state", minutes: float = 60.0) -> tl.Session:
    return tl.Session(START + timedelta(days=day), modality, load, minutes)


@settings(max_examples=10, deadline=None)
@given(st.randoms(use_true_random=False))
def test_three_years_of_sessions_keep_a_bounded_history_and_the_exact_model(rng):
    history = tl.LoadHistory()
    all_days: dict[date, float] = {}
    day = 0
    for _ in range(700):
        day += rng.choice((1, 1, 2, 3))
        load = round(rng.uniform(20, 150), 1)
        when = max(0, day - rng.choice((0, 0, 0, 4)))  # now and then a workout logged a few days late
        all_days[(START + timedelta(days=when)).date()] = all_days.get((START + timedelta(days=when)).date(), 0) + load
        update = tl.add_session(history, session(when, load))
        history = update.history
        assert len(history.daily) <= tl.DAILY_MEMORY_DAYS + 1
        assert len(history.sessions) <= 2 * tl.SESSION_MEMORY_DAYS  # at most two sessions a day here
    exact = {d.day: d for d in tl.daily_load_model(all_days)}
    for modelled in update.days:
        expected = exact[modelled.day]
        assert (modelled.ctl, modelled.atl, modelled.tsb, modelled.acwr) == (expected.ctl, expected.atl, expected.tsb, expected.acwr)
    assert history.carry is not None  # old days were folded away, and the model above is still exact


def test_a_session_older_than_the_kept_days_counts_on_the_first_kept_day():
    history = tl.LoadHistory()
    for day in range(300):
        history = tl.add_session(history, session(day, 50.0)).history
    first_kept = history.carry.day
    update = tl.add_session(history, session(0, 10.0))
    assert update.history.daily[first_kept] == history.daily[first_kept] + 10.0
    assert update.days[0].day == first_kept and update.days[-1].day == (START + timedelta(days=299)).date()


def test_the_update_names_the_days_from_the_session_on_and_its_week():
    history = tl.LoadHistory()
    for day in (0, 1, 2, 9):
        history = tl.add_session(history, session(day, 40.0)).history
    update = tl.add_session(history, session(3, 60.0, "hiit", 30))  # a late one, in the first week
    assert [d.day for d in update.days] == [(START + timedelta(days=n)).date() for n in range(3, 10)]
    assert {(w.week_start, w.modality) for w in update.week} == {(date(2024, 1, 1), "steady_state"), (date(2024, 1, 1), "hiit")}
    assert sum(w.share for w in update.week) == pytest.approx(1.0)
    assert update.history.daily == {**history.daily, (START + timedelta(days=3)).date(): 60.0}


def test_summary_load_keeps_what_a_summary_carries_and_computes_the_rest():
    athlete = tl.Athlete(hr_rest_bpm=50, hr_max_bpm=185)
    run = tl.WorkoutInput(sport="running", duration_s=3600, avg_hr_bpm=150)

    def summary(**carried):
        return WorkoutSummary("a", START, "w-1", workout=run, **carried)

    assert tl.summary_load(summary(load=77.5, modality="hiit", trimp=90.0), athlete) == tl.SummaryLoad(77.5, "hiit", 90.0)
    computed = tl.workout_load(run, athlete)
    expected = tl.SummaryLoad(round(computed.load, 3), computed.modality, computed.trimp)
    assert tl.summary_load(summary(), athlete) == expected
    # a load alone, or with a modality the load model does not know, is not enough to keep
    assert tl.summary_load(summary(load=10.0), athlete) == expected
    assert tl.summary_load(summary(load=10.0, modality="not a modality"), athlete) == expected


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 400), st.floats(1, 200), st.booleans()), min_size=1, max_size=120))
def test_a_workout_added_again_changes_nothing(workouts):
    """Replaying a workout of the kept days (as a stream does after a crash) leaves the history what it was
    without the replay; for an older one the history says it cannot tell (the stream asks its seen ids)."""
    once, replayed = tl.LoadHistory(), tl.LoadHistory()
    for number, (day, load, again) in enumerate(workouts):
        once = tl.add_session(once, session(day, load), f"w{number}").history
        replayed = tl.add_session(replayed, session(day, load), f"w{number}").history
        assert f"w{number}" in replayed.counted or not tl.within_kept_days(replayed, session(day, load).start.date())
        if again and f"w{number}" in replayed.counted:
            update = tl.add_session(replayed, session(day, load), f"w{number}")
            assert update.days == [] and update.week == [] and update.history == replayed
    assert replayed == once
    assert all(day >= once.carry.day for day in once.counted.values()) if once.carry else len(once.counted) == len(workouts)


def test_the_history_vouches_for_its_kept_days_only():
    history = tl.LoadHistory()
    assert tl.within_kept_days(history, date(1990, 1, 1))  # nothing forgotten yet
    for day in range(300):
        history = tl.add_session(history, session(day, 50.0), f"w{day}").history
    assert not tl.within_kept_days(history, history.carry.day - timedelta(days=1))
    assert tl.within_kept_days(history, history.carry.day)
    assert "w0" not in history.counted and "w299" in history.counted


def test_a_batch_longer_than_the_kept_sessions_gives_each_week_the_mix_one_at_a_time_gives():
    """A bulk import's batch can span half a year: every week it touches gets its full mix, as when the sessions
    come one by one (a mix computed after the oldest sessions were dropped lost their weeks)."""
    new = [tl.NewSession(session(day, 30.0 + day % 5, "hiit" if day % 3 else "steady_state"), f"w{day}")
           for day in range(0, 200, 2)]
    batched = tl.add_sessions(tl.LoadHistory(), new)
    one_by_one, history = {}, tl.LoadHistory()
    for item in new:
        update = tl.add_sessions(history, [item])
        history = update.history
        one_by_one.update({(mix.week_start, mix.modality): mix for mix in update.week})
    assert {(mix.week_start, mix.modality): mix for mix in batched.week} == one_by_one
    assert batched.history == history
