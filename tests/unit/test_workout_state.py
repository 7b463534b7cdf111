"""The workouts agent's per-athlete tables: the load history's stored form, and the seen ids."""

import json
from datetime import date, datetime, timedelta, timezone

from aromatrack.domain import training_load as tl
from aromatrack.streams import workouts

START = datetime(2024, 1, 1, 17, tzinfo=timezone.utc)


def test_a_load_history_survives_the_table_and_the_stored_form_is_versioned():
    history = tl.LoadHistory()
    for day in range(260):
        body = {"time": (START + timedelta(days=day)).isoformat(), "load": 40.0 + day % 7, "modality": "steady_state",
                "duration_s": 3000}
        history = workouts.record_workout(history, body).history
    stored = json.loads(json.dumps(workouts.history_to_json(history)))
    assert stored["version"] == workouts.STATE_VERSION and stored["carry"] is not None
    assert workouts.history_from_json(stored) == history


def test_a_state_stored_before_versioning_is_read():
    stored = {"daily": {"2024-03-01": 55.0}, "sessions": [["2024-03-01T17:00:00+00:00", "hiit", 55.0, 45.0]],
              "carry": {"day": "2024-02-01", "ctl": 30.5, "atl": 20.25}}
    history = workouts.history_from_json(stored)
    assert history.daily == {date(2024, 3, 1): 55.0}
    assert history.sessions == (tl.Session(datetime(2024, 3, 1, 17, tzinfo=timezone.utc), "hiit", 55.0, 45.0),)
    assert history.carry == tl.CarriedFitness(date(2024, 2, 1), 30.5, 20.25)


def test_seen_ids_recognise_repeats_and_keep_only_the_newest_months():
    seen = workouts.SeenIds("summary")
    months = [START + timedelta(days=31 * n) for n in range(workouts.SEEN_MONTHS + 12)]
    assert all(seen.add(b"a", moment, f"w{n}") for n, moment in enumerate(months))
    assert not seen.add(b"a", months[-1], f"w{len(months) - 1}")  # a repeat
    assert seen.add(b"b", months[-1], f"w{len(months) - 1}")  # the same id is another athlete's own
    kept = seen.entries[seen._key(b"a", "months")]
    assert len(kept) == workouts.SEEN_MONTHS and kept == sorted(kept) and kept[-1] == f"{months[-1]:%Y-%m}"
    assert len(seen.forgotten) == 12 and not seen.forgotten & {seen._key(b"a", month) for month in kept}
