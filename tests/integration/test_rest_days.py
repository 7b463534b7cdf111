"""A resting athlete's model reaches today: the real worker's timer writes the rest days after the last workout."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from aromatrack.domain import training_load as tl
from aromatrack.schemas.events import WorkoutSummary
from aromatrack.schemas.series import Audience
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

from .conftest import eventually, unique_athlete


async def test_fatigue_falls_on_the_days_after_the_last_workout_through_today(stack, worker, influx_for):
    athlete = unique_athlete("rest")
    now = datetime.now(timezone.utc)
    workouts = [
        WorkoutSummary(athlete_id=athlete, time=now - timedelta(days=ago, hours=2), sport="running",
                       duration_s=3600, avg_hr_bpm=160, load=120.0, modality="steady_state")
        for ago in (12, 11, 10)
    ]
    async with EventProducer(stack.kafka_bootstrap) as producer:
        await producer.send_all(workouts)

    query = f"SELECT load, atl, tsb FROM training_load_daily WHERE athlete_id = '{athlete}'"
    async with influx_for(worker.database, Audience.COACHING) as influx:
        async def through_today() -> bool:
            found = rows(await influx.query(query))
            return bool(found) and found[-1]["time"][:10] == now.date().isoformat()

        await eventually(through_today, timeout_s=60)
        days = rows(await influx.query(query))
    last_workout = max(w.time for w in workouts).date()
    rest = [row for row in days if row["time"][:10] > last_workout.isoformat()]
    assert len(rest) == (now.date() - last_workout).days
    assert all(row["load"] == 0 for row in rest)
    assert all(later["atl"] < earlier["atl"] for earlier, later in zip(rest, rest[1:]))
    expected = tl.rest_days({w.time.date(): 120.0 for w in workouts}, now.date())
    assert [round(row["atl"], 6) for row in rest] == [round(d.atl, 6) for d in expected]
