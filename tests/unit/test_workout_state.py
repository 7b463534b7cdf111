"""The workouts agent's per-athlete state: bounded as history grows, and the load model stays exact."""

from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.domain import training_load as tl
from aromatrack.streams import workouts

START = datetime(2024, 1, 1, 17, tzinfo=timezone.utc)


def _workout(day: int, load: float, n: int) -> dict:
    return {"event_id": f"w{n}", "time": (START + timedelta(days=day)).isoformat(), "load": load,
            "modality": "steady_state", "duration_s": 3600}


@settings(max_examples=10, deadline=None)
@given(st.randoms(use_true_random=False))
def test_three_years_of_workouts_keep_a_bounded_state_and_the_exact_model(rng):
    state = {"daily": {}, "sessions": []}
    all_days: dict[date, float] = {}
    day = 0
    for n in range(700):
        day += rng.choice((1, 1, 2, 3))
        load = round(rng.uniform(20, 150), 1)
        # now and then a workout logged a few days late
        when = max(0, day - rng.choice((0, 0, 0, 4)))
        all_days[(START + timedelta(days=when)).date()] = all_days.get((START + timedelta(days=when)).date(), 0) + load
        model, _ = workouts.record_workout(state, _workout(when, load, n))
        assert len(state["daily"]) <= workouts.DAILY_MEMORY_DAYS + 1
    exact = {d.day: d for d in tl.daily_load_model(all_days)}
    for d in model:
        assert (d.ctl, d.atl, d.tsb, d.acwr) == (exact[d.day].ctl, exact[d.day].atl, exact[d.day].tsb, exact[d.day].acwr)
    assert "carry" in state  # old days were folded away, and the model above is still exact


def test_a_workout_older_than_the_kept_days_counts_on_the_first_kept_day():
    state = {"daily": {}, "sessions": []}
    for n in range(300):
        workouts.record_workout(state, _workout(n, 50.0, n))
    first_kept = state["carry"]["day"]
    before = state["daily"][first_kept]
    workouts.record_workout(state, _workout(0, 10.0, 999))
    assert state["daily"][first_kept] == before + 10.0


def test_seen_ids_recognise_repeats_and_keep_only_the_newest_months():
    seen = workouts.SeenIds("summary")
    months = [START + timedelta(days=31 * n) for n in range(workouts.SEEN_MONTHS + 12)]
    assert all(seen.add(b"a", moment, f"w{n}") for n, moment in enumerate(months))
    assert not seen.add(b"a", months[-1], f"w{len(months) - 1}")  # a repeat
    assert seen.add(b"b", months[-1], f"w{len(months) - 1}")  # the same id is another athlete's own
    kept = seen.entries[seen._key(b"a", "months")]
    assert len(kept) == workouts.SEEN_MONTHS and kept == sorted(kept) and kept[-1] == f"{months[-1]:%Y-%m}"
    assert len(seen.forgotten) == 12 and not seen.forgotten & {seen._key(b"a", month) for month in kept}
