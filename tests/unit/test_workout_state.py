"""The workouts agent's per-athlete tables: the load history's stored form, and the seen ids."""

import json
from datetime import date, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from aromatrack.domain import training_load as tl
from aromatrack.schemas.events import WorkoutSummary, parse_event
from aromatrack.streams import workouts

START = datetime(2024, 1, 1, 17, tzinfo=timezone.utc)


def empty_tables() -> workouts.WorkoutTables:
    return workouts.WorkoutTables(state={}, seen={}, profiles={})  # no profiles: population defaults


def test_a_load_history_survives_the_table_and_the_stored_form_is_versioned():
    history = tl.LoadHistory()
    for day in range(260):
        body = {"event_id": f"w{day}", "time": (START + timedelta(days=day)).isoformat(), "load": 40.0 + day % 7,
                "modality": "steady_state", "duration_s": 3000}
        history = workouts.record_workout(history, body).history
    stored = json.loads(json.dumps(workouts.history_to_json(history)))
    assert stored["version"] == workouts.STATE_VERSION and stored["carry"] is not None
    assert len(stored["counted"]) == len(history.daily)  # one workout a day, the kept days' ids
    assert workouts.history_from_json(stored) == history


def test_a_version_2_state_is_read():
    stored = {"version": 2, "daily": {"2024-03-01": 55.0, "2024-03-03": 20.5},
              "sessions": [{"start": "2024-03-01T17:00:00+00:00", "modality": "hiit", "load": 55.0, "minutes": 45.0}],
              "carry": {"day": "2024-02-01", "ctl": 30.5, "atl": 20.25}, "counted": {"w1": "2024-03-01"},
              "counted_since": "2024-02-20"}
    history = workouts.history_from_json(stored)
    assert history == tl.LoadHistory(
        {date(2024, 3, 1): 55.0, date(2024, 3, 3): 20.5},
        (tl.Session(datetime(2024, 3, 1, 17, tzinfo=timezone.utc), "hiit", 55.0, 45.0),),
        tl.CarriedFitness(date(2024, 2, 1), 30.5, 20.25), {"w1": date(2024, 3, 1)}, date(2024, 2, 20))
    assert workouts.history_from_json(json.loads(json.dumps(workouts.history_to_json(history)))) == history


days = st.dates(date(2020, 1, 1), date(2030, 12, 31))
loads = st.floats(0, 1e4, allow_nan=False)


@given(st.builds(
    tl.LoadHistory,
    daily=st.dictionaries(days, loads, max_size=30),
    sessions=st.lists(st.builds(tl.Session, st.datetimes(timezones=st.just(timezone(timedelta(hours=-5)))),
                                st.sampled_from(["hiit", "steady_state", "resistance"]), loads, loads), max_size=5).map(tuple),
    carry=st.none() | st.builds(tl.CarriedFitness, days, loads, loads),
    counted=st.dictionaries(st.text(min_size=1, max_size=8), days, max_size=30),
    counted_since=st.none() | days,
))
def test_any_load_history_survives_its_stored_form(history):
    assert workouts.history_from_json(json.loads(json.dumps(workouts.history_to_json(history)))) == history


def test_a_state_stored_before_versioning_is_read():
    stored = {"daily": {"2024-03-01": 55.0}, "sessions": [["2024-03-01T17:00:00+00:00", "hiit", 55.0, 45.0]],
              "carry": {"day": "2024-02-01", "ctl": 30.5, "atl": 20.25}}
    history = workouts.history_from_json(stored)
    assert history.daily == {date(2024, 3, 1): 55.0}
    assert history.sessions == (tl.Session(datetime(2024, 3, 1, 17, tzinfo=timezone.utc), "hiit", 55.0, 45.0),)
    assert history.carry == tl.CarriedFitness(date(2024, 2, 1), 30.5, 20.25)
    # It kept no workout ids: it vouches for workouts after its newest day only (older ones ask workout_seen).
    assert history.counted == {} and history.counted_since == date(2024, 3, 2)
    assert tl.within_kept_days(history, date(2024, 3, 2)) and not tl.within_kept_days(history, date(2024, 3, 1))


def test_seen_ids_recognise_repeats_and_keep_only_the_newest_months():
    seen = workouts.SeenIds({}, "summary")
    months = [START + timedelta(days=31 * n) for n in range(workouts.SEEN_MONTHS + 12)]
    assert all(seen.add(b"a", moment, f"w{n}") for n, moment in enumerate(months))
    assert not seen.add(b"a", months[-1], f"w{len(months) - 1}")  # a repeat
    assert seen.add(b"b", months[-1], f"w{len(months) - 1}")  # the same id is another athlete's own
    kept = seen.entries[seen._key(b"a", "months")]
    assert len(kept) == workouts.SEEN_MONTHS and kept == sorted(kept) and kept[-1] == f"{months[-1]:%Y-%m}"
    assert len(seen.forgotten) == 12 and not seen.forgotten & {seen._key(b"a", month) for month in kept}


def summary(event_id: str, day: int) -> WorkoutSummary:
    return parse_event(json.dumps({
        "type": "workout.summary", "schema_version": 1, "event_id": event_id, "athlete_id": "crash",
        "time": (START + timedelta(days=day)).isoformat(), "sport": "running", "duration_s": 3600, "avg_hr_bpm": 140,
    }))


def step(histories: dict[bytes, tl.LoadHistory], seen: workouts.SeenIds, event: WorkoutSummary) -> list:
    """One summary through a batch whose histories and seen ids are given: the points it counted."""
    batch = workouts.SummaryBatch(empty_tables())
    batch.histories, batch.seen = histories, seen
    workouts.summary_step(batch, event)
    return batch.count()


def test_a_batch_delivered_again_after_a_crash_is_counted_once_whichever_table_write_survived():
    key = b"crash"
    histories = {key: tl.LoadHistory()}
    assert step(histories, workouts.SeenIds({}, "summary"), summary("w1", 10))
    # The history's write reached the changelog, the seen ids' did not: still a repeat.
    assert step(dict(histories), workouts.SeenIds({}, "summary"), summary("w1", 10)) == []
    # The seen ids' write reached it, the history's did not: the workout is counted, not lost.
    seen = workouts.SeenIds({}, "summary")
    seen.add(key, START + timedelta(days=10), "w1")
    assert step({key: tl.LoadHistory()}, seen, summary("w1", 10))


def test_a_repeat_older_than_the_kept_days_is_recognised_by_the_seen_ids():
    key = b"crash"
    history = tl.LoadHistory()
    for day in range(300):
        history = tl.add_session(history, tl.Session(START + timedelta(days=day), "steady_state", 40.0, 60.0), f"d{day}").history
    seen = workouts.SeenIds({}, "summary")
    seen.add(key, START, "old")
    assert not tl.within_kept_days(history, START.date())
    assert step({key: history}, seen, summary("old", 0)) == []
    assert step({key: history}, workouts.SeenIds({}, "summary"), summary("new-old", 0))


def test_a_batch_counts_each_workout_once_and_models_each_athlete_once():
    """A batch's repeats are skipped, and its points equal those of the workouts counted one at a time."""
    batch = workouts.SummaryBatch(empty_tables())
    batch.histories = {b"crash": tl.LoadHistory()}
    events = [summary(f"w{day}", day) for day in (3, 1, 2, 1, 5)]  # w1 twice, out of order
    accepted = [workouts.summary_step(batch, event) for event in events]
    assert [a is None for a in accepted] == [False, False, False, True, False]
    points = batch.count()
    history, one_by_one = tl.LoadHistory(), {}
    for item in [a for a in accepted if a is not None]:
        update = tl.add_sessions(history, [item.session])
        history = update.history
        for point in workouts.load_points("crash", [item.body], update):
            one_by_one[(point.measurement, point.time, tuple(sorted(point.tags.items())))] = point.fields
    batched = {(p.measurement, p.time, tuple(sorted(p.tags.items()))): p.fields for p in points}
    assert batched == one_by_one and batch.histories[b"crash"] == history


def test_a_cached_history_is_used_only_while_the_table_holds_what_it_came_from():
    tables, cache = empty_tables(), workouts.HistoryCache()
    history = tl.add_session(tl.LoadHistory(), tl.Session(START, "steady_state", 40.0, 60.0), "w1").history
    cache.save(tables.state, b"a", history)
    assert cache.load(tables.state, b"a") is history  # not parsed again
    # Another worker's write (a rebalance, a restore) replaces the value: the table's history is read.
    other = tl.add_session(history, tl.Session(START + timedelta(days=1), "hiit", 30.0, 30.0), "w2").history
    workouts.HistoryCache().save(tables.state, b"a", other)
    assert cache.load(tables.state, b"a") == other
    del tables.state[b"a"]
    assert cache.load(tables.state, b"a") == tl.LoadHistory()


def test_the_history_cache_is_bounded():
    tables, cache = empty_tables(), workouts.HistoryCache()
    for n in range(workouts.MAX_CACHED_HISTORIES + 5):
        cache.save(tables.state, f"a{n}".encode(), tl.LoadHistory())
    assert len(cache.entries) == workouts.MAX_CACHED_HISTORIES and b"a0" not in cache.entries


def test_a_batch_stores_only_the_histories_it_changed():
    tables = empty_tables()
    batch = workouts.SummaryBatch(tables)
    workouts.summary_step(batch, summary("w1", 1))
    batch.count()
    batch.save()
    stored = tables.state[b"crash"]
    again = workouts.SummaryBatch(tables)
    workouts.summary_step(again, summary("w1", 1))  # a repeat: nothing to store
    assert again.count() == [] and not again.changed
    again.save()
    assert tables.state[b"crash"] is stored
