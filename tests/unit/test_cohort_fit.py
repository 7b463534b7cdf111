"""The demo cohort with the real FIT corpus: runs and rides are re-stamped recordings, strength stays a summary."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime

from aromatrack.schemas.events import parse_event
from aromatrack.services import cohort
from aromatrack.streams.fit import decode_fit

from .test_fit_decode import CORPUS, corpus_files

def small_cohort(recordings: cohort.FitRecordings | None) -> list[dict]:
    return cohort.generate(athletes=8, days=21, seed=3, recordings=recordings)


def test_endurance_sessions_are_real_files_on_the_session_date():
    corpus_files()  # fails with `make corpus` in the message when the corpus is absent
    events = small_cohort(cohort.FitRecordings.load(CORPUS))
    fits = [e for e in events if e["type"] == "workout.fit"]
    summaries = [e for e in events if e["type"] == "workout.summary"]
    assert fits and summaries
    assert {e["sub_sport"] for e in summaries} == {"strength_training"}
    names = {name.rsplit("/", 1)[-1]: sport for sport, files in cohort.FIT_RECORDINGS.items() for name in files}
    for event in fits:
        parse_event(event)
    for event in {e["filename"]: e for e in fits}.values():  # one session per file keeps the test quick
        workout = decode_fit(gzip.decompress(base64.b64decode(event["fit_b64"]))).workouts[0]
        assert workout.start == datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        assert workout.sport == names[event["filename"]]
    assert len({e["fit_b64"] for e in fits}) == len(fits), "every session is its own recording"


def test_deterministic_and_the_rest_of_the_cohort_unchanged():
    recordings = cohort.FitRecordings.load(CORPUS)
    with_fit = small_cohort(recordings)
    assert json.dumps(with_fit) == json.dumps(small_cohort(recordings))
    without = small_cohort(None)
    assert [e for e in with_fit if not e["type"].startswith("workout.")] == [
        e for e in without if not e["type"].startswith("workout.")
    ]
    # Each session is still there, at the same time: endurance ones now as a recording.
    assert [(e["athlete_id"], e["time"]) for e in with_fit if e["type"].startswith("workout.")] == [
        (e["athlete_id"], e["time"]) for e in without if e["type"] == "workout.summary"
    ]


def test_evaluate_sees_each_upload_as_the_summary_the_stream_makes_of_it(tmp_path):
    from aromatrack.domain.training_load import Athlete, profile_numbers
    from aromatrack.services.cli_evaluate import with_fit_decoded
    from aromatrack.streams.fit import decode_fit, summary_events, workout_id

    corpus_files()
    events = [parse_event(e) for e in cohort.generate(athletes=2, days=7, seed=3,
                                                      recordings=cohort.FitRecordings.load(CORPUS))]
    uploads = [e for e in events if e.type == "workout.fit"]
    assert uploads
    decoded = list(with_fit_decoded(events, tmp_path / "cohort.jsonl"))
    assert not [e for e in decoded if e.type == "workout.fit"]
    summaries = {e.event_id: e for e in decoded if e.type == "workout.summary"}
    profiles = {e.athlete_id: Athlete(**profile_numbers(e.model_dump())) for e in events if e.type == "athlete.profile"}
    for upload in uploads:
        data = gzip.decompress(base64.b64decode(upload.fit_b64))
        summary = summaries[workout_id(upload.athlete_id, data)]
        assert summary.time == upload.time and summary.load > 0
        # load from the athlete's own heart-rate numbers (the profile precedes the uploads), not the defaults
        assert summary.load == summary_events(decode_fit(data), upload.athlete_id, profiles[upload.athlete_id])[0]["load"]
        assert summary.load != summary_events(decode_fit(data), upload.athlete_id)[0]["load"]
    # decoded in two worker processes: the same events in the same order
    assert list(with_fit_decoded(events, tmp_path / "cohort.jsonl", workers=2)) == decoded
