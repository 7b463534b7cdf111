"""Real FIT files through the real broker and worker into the real InfluxDB; load read back; damage dead-lettered."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from aromatrack.domain.training_load import Athlete, WorkoutInput, workout_load
from aromatrack.schemas import topics
from aromatrack.schemas.events import AthleteProfile, WorkoutFit, WorkoutSummary
from aromatrack.schemas.series import Audience
from aromatrack.streams.admin import LagProbe
from aromatrack.streams.fit import decode_fit, encode_fit, summary_events
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer
from aromatrack.streams.admin import wait_until_consumed

from .conftest import eventually, unique_athlete

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "fit"
FILES = ["polar-running-index/treadmill_12km.FIT", "pyfitness/indoor/Zwift_Zwift_Fast_Fridays_Bologna_Time_Trial_E_.fit"]


def corpus_bytes(name: str) -> bytes:
    path = CORPUS / name
    if not path.exists():
        pytest.fail(f"FIT corpus file missing: {path}; run `make corpus` (deploy/fetch-fit-corpus.sh)")
    return path.read_bytes()


def upload(athlete: str, data: bytes) -> WorkoutFit:
    return WorkoutFit(athlete_id=athlete, time=datetime.now(timezone.utc), fit_b64=encode_fit(data))


async def test_fit_files_become_workouts_and_daily_load_once(stack, worker, influx_for):
    athlete = unique_athlete("fit")
    files = [corpus_bytes(name) for name in FILES]
    expected = [summary_events(decode_fit(data), athlete)[0] for data in files]
    async with EventProducer(stack.kafka_bootstrap) as producer:
        await producer.send_all([upload(athlete, data) for data in files])
        await producer.send(upload(athlete, files[0]))  # the same file uploaded again

    async with influx_for(worker.database, Audience.COACHING) as influx:
        workouts_q = f"SELECT load, trimp, duration_s, modality FROM workout WHERE athlete_id = '{athlete}'"
        daily_q = f"SELECT load, ctl, atl, tsb FROM training_load_daily WHERE athlete_id = '{athlete}'"
        samples_q = f"SELECT count(hr_bpm) FROM workout_samples WHERE athlete_id = '{athlete}'"

        async def loaded() -> bool:
            return len(rows(await influx.query(workouts_q))) == 2 and bool(rows(await influx.query(daily_q)))

        await eventually(loaded, timeout_s=60)
        stored = sorted(rows(await influx.query(workouts_q)), key=lambda row: row["time"])
        daily = rows(await influx.query(daily_q))
        samples = rows(await influx.query(samples_q))
    by_start = sorted(expected, key=lambda event: event["start"])
    assert [row["load"] for row in stored] == [event["load"] for event in by_start]
    assert all(row["modality"] == "steady_state" for row in stored)
    # Each workout lands on its own day; that day's load is the workout's load, counted once despite the re-upload.
    loads_by_day = {row["time"][:10]: row["load"] for row in daily}
    for event in expected:
        assert loads_by_day[event["start"][:10]] == pytest.approx(event["load"])
    assert all(row["ctl"] >= 0 and row["atl"] >= 0 for row in daily)
    assert samples[0]["count"] > 100


async def test_workout_loads_use_the_athlete_profile_in_effect_at_their_time(stack, worker, influx_for):
    athlete = unique_athlete("profile")
    data = corpus_bytes(FILES[0])
    fit_start = decode_fit(data).workouts[0].start
    profile = AthleteProfile(athlete_id=athlete, time=fit_start - timedelta(days=10), sex="male", birth_year=1985,
                             hr_rest_bpm=44, hr_max_bpm=176)
    numbers = Athlete(hr_rest_bpm=44, hr_max_bpm=176)
    runs = [
        WorkoutSummary(athlete_id=athlete, time=fit_start - timedelta(days=days), sport="running", duration_s=3600,
                       avg_hr_bpm=150)
        for days in (20, 5)  # one before the profile (population defaults), one after it
    ]
    async with EventProducer(stack.kafka_bootstrap) as producer, LagProbe(stack.kafka_bootstrap) as probe:
        await producer.send(profile)
        await wait_until_consumed(probe, stack.app_id)
        await producer.send_all([*runs, upload(athlete, data)])

    expected = {
        runs[0].time: round(workout_load(WorkoutInput(sport="running", duration_s=3600, avg_hr_bpm=150)).load, 3),
        runs[1].time: round(workout_load(WorkoutInput(sport="running", duration_s=3600, avg_hr_bpm=150), numbers).load, 3),
        fit_start: summary_events(decode_fit(data), athlete, numbers)[0]["load"],
    }
    assert expected[fit_start] != summary_events(decode_fit(data), athlete)[0]["load"]
    assert expected[runs[0].time] != expected[runs[1].time]
    async with influx_for(worker.database, Audience.COACHING) as influx:
        query = f"SELECT load FROM workout WHERE athlete_id = '{athlete}'"

        async def loaded() -> bool:
            return len(rows(await influx.query(query))) == 3

        await eventually(loaded, timeout_s=60)
        stored = {datetime.fromisoformat(row["time"].replace("Z", "+00:00")): row["load"] for row in rows(await influx.query(query))}
    assert stored == pytest.approx(expected)


async def test_undecodable_file_goes_to_dead_letter_with_reason(stack, worker):
    athlete = unique_athlete("fitbad")
    consumer = AIOKafkaConsumer(
        topics.DEAD_LETTER_TOPIC, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="latest",
        group_id=None,
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        async with EventProducer(stack.kafka_bootstrap) as producer:
            await producer.send(upload(athlete, b"this is a text file renamed to .fit"))
        reasons = []

        async def dead_lettered() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    if athlete.encode() in message.value or message.key == athlete.encode():
                        reasons.append(dict(message.headers)["reason"].decode())
            return bool(reasons)

        await eventually(dead_lettered, timeout_s=30)
    finally:
        await consumer.stop()
    assert "not a FIT file" in reasons[0]
