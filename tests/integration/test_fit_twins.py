"""Two athletes with byte-identical FIT files (the demo can give two athletes the same recording at the same
instant) get two workouts, each with its own id and samples; a re-upload by one of them adds nothing."""

from __future__ import annotations

from datetime import datetime, timezone

from aromatrack.schemas.series import Audience
from aromatrack.streams.fit_restamp import restamp
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

from .conftest import eventually, unique_athlete
from .test_workouts_pipeline import corpus_bytes, upload


async def test_identical_files_of_two_athletes_are_two_workouts(stack, worker, influx_for):
    data = restamp(corpus_bytes("activity-parser/garmin-fenix-5-run.fit"), datetime(2026, 9, 1, 17, 0, 3, tzinfo=timezone.utc))
    twins = [unique_athlete("twin"), unique_athlete("twin")]
    async with EventProducer(stack.kafka_bootstrap) as producer:
        await producer.send_all([upload(athlete, data) for athlete in twins])
        await producer.send(upload(twins[0], data))  # a re-upload

    async with influx_for(worker.database, Audience.COACHING) as influx:
        where = " OR ".join(f"athlete_id = '{athlete}'" for athlete in twins)
        workouts_q = f"SELECT workout_id, athlete_id FROM workout WHERE {where}"

        async def both_stored() -> bool:
            return len(rows(await influx.query(workouts_q))) == 2

        await eventually(both_stored, timeout_s=60)
        workouts = rows(await influx.query(workouts_q))
        assert {w["athlete_id"] for w in workouts} == set(twins)
        assert len({w["workout_id"] for w in workouts}) == 2
        for workout in workouts:
            samples = rows(await influx.query(
                f"SELECT count(hr_bpm) FROM workout_samples WHERE workout_id = '{workout['workout_id']}' GROUP BY athlete_id"))
            assert samples and samples[0]["count"] > 0
