"""Multisport and brick files (several sport sessions in one file), built from real corpus recordings: one
summary per session with its own numbers, ids per session, the day's load their sum, in `fit summarize`, the
workouts agent's state and `evaluate`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from aromatrack.schemas.events import WorkoutFit, WorkoutSummary
from aromatrack.services.cli import app
from aromatrack.services.cli_evaluate import with_fit_decoded
from aromatrack.streams.fit import decode_fit, encode_fit, summary_events, upload_summaries

from .fit_files import Part, build_activity, excerpt
from .test_fit_decode import corpus_bytes

RIDE = "pyfitness/Luciano/Indoor/Luciano_indoor_climb_196m_distance_11.92km_power5_376.fit"
RUN = "polar-running-index/treadmill_12km.FIT"
START_S = 1_780_000_000  # 2026-05-28


@pytest.fixture(scope="module")
def parts() -> list[Part]:
    """A brick: an indoor ride, a 2-minute transition, a treadmill run, back to back on one morning."""
    ride = decode_fit(corpus_bytes(RIDE)).workouts[0]
    run = decode_fit(corpus_bytes(RUN)).workouts[0]
    transition = excerpt(run, 120)
    first = Part(ride, "cycling", START_S, "indoor_cycling")
    second = Part(transition, "transition", first.end_s + 5)
    return [first, second, Part(run, "running", second.end_s + 5, "treadmill")]


@pytest.fixture(scope="module")
def brick(parts) -> bytes:
    return build_activity(parts)


def test_each_session_is_summarised_as_its_own_file_would_be(parts, brick):
    decoded = decode_fit(brick)
    assert not decoded.salvaged and decoded.sessions == 3
    summaries = summary_events(decoded, "a1")
    assert [s["sport"] for s in summaries] == ["cycling", "transition", "running"]
    for part, workout, summary in zip(parts, decoded.workouts, summaries):
        alone = summary_events(decode_fit(build_activity([part])), "a1")
        assert [summary] == alone
        assert workout.records == part.workout.records
        assert workout.samples.time_s == tuple(t + part.shift_s for t in part.workout.samples.time_s)
    ride, transition, run = summaries
    assert ride["avg_power_w"] > 0 and "avg_power_w" not in run  # each session's own numbers, not the file's
    assert transition["duration_s"] == 119 and transition["records"] == 120
    assert run["distance_m"] == pytest.approx(parts[2].workout.distance_m)


def test_sessions_get_stable_ids_of_their_own(brick):
    first = upload_summaries(decode_fit(brick), "a1", brick)
    again = upload_summaries(decode_fit(brick), "a1", brick)
    ids = [s["workout_id"] for s in first]
    assert ids == [s["workout_id"] for s in again] == [s["event_id"] for s in first]
    assert len(set(ids)) == 3 and all(i.startswith(ids[0][:32]) for i in ids)
    assert ids != [s["workout_id"] for s in upload_summaries(decode_fit(brick), "a2", brick)]


def test_the_days_load_is_the_sum_of_the_sessions(brick):
    """Before, the file counted as its first session only: the run's load was lost."""
    from aromatrack.domain.training_load import LoadHistory
    from aromatrack.streams.workouts import record_workout

    summaries = upload_summaries(decode_fit(brick), "a1", brick)
    history = LoadHistory()
    for summary in summaries:
        update = record_workout(history, summary)
        history = update.history
    total = sum(s["load"] for s in summaries)
    assert update.days[-1].load == pytest.approx(total)
    assert summaries[2]["load"] > summaries[0]["load"] / 4 and total > summaries[0]["load"] * 1.5


def test_compressed_timestamps_in_a_multisport_file(parts, brick):
    compressed = build_activity(parts, compress_from=1)
    assert summary_events(decode_fit(compressed), "a1") == summary_events(decode_fit(brick), "a1")


def test_fit_summarize_prints_one_line_per_session(brick, tmp_path):
    path = tmp_path / "brick.fit"
    path.write_bytes(brick)
    result = CliRunner().invoke(app, ["fit", "summarize", str(path), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["sport"] for line in lines] == ["cycling", "transition", "running"]
    assert lines == summary_events(decode_fit(brick), "local")


def test_evaluate_sees_every_session(brick, tmp_path):
    upload = WorkoutFit(athlete_id="a1", time="2026-05-28T12:00:00Z", fit_b64=encode_fit(brick), filename="brick.fit")
    events = list(with_fit_decoded([upload], tmp_path / "timeline.jsonl"))
    assert all(isinstance(event, WorkoutSummary) for event in events)
    expected = upload_summaries(decode_fit(brick), "a1", brick)
    assert [event.event_id for event in events] == [s["event_id"] for s in expected]
    assert sum(event.load for event in events) == pytest.approx(sum(s["load"] for s in expected))
