"""Faults against the real local servers: worker restarts, an InfluxDB kill -9, a broker restart.

Each test gets a throwaway stack (its own broker and InfluxDB, empty, on their own ports) and worker, so it
can kill and restart servers freely, and checks the stored series equal what the events imply: nothing
lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from aromatrack.deploy import local_stack
from aromatrack.domain import engine
from aromatrack.domain.training_load import daily_load_model
from aromatrack.schemas import topics
from aromatrack.schemas.boundary import domain_event
from aromatrack.schemas.events import ScaleReading, WorkoutSummary, parse_event
from aromatrack.schemas.progress import MARKER_HEADER, header
from aromatrack.schemas.series import Audience
from aromatrack.schemas.timeline import parse_timeline_message
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

from .conftest import Worker, eventually, group_assignments

READINGS = 6000


def readings(run: str, count: int = READINGS, offset: int = 0) -> list[ScaleReading]:
    """`count` readings spread over 20 athletes, one a day each, with values unique per reading."""
    first_day = datetime(2020, 1, 1, 6, tzinfo=timezone.utc)
    return [
        parse_event({
            "type": "scale.reading",
            "athlete_id": f"{run}-{n % 20:02d}",
            "time": (first_day + timedelta(days=n // 20)).isoformat(),
            "weight_kg": 70 + n / 1000,
            "body_fat_pct": 15 + (n % 97) / 10,
        })
        for n in range(offset, offset + count)
    ]


@pytest.fixture
def stack():
    """Overrides the shared stack: these tests kill and restart servers."""
    with local_stack.throwaway_stack(39591, 38591) as settings:
        yield settings


@pytest.fixture
def own_worker(stack, tmp_path) -> Worker:
    worker = Worker(stack, f"faults_{uuid.uuid4().hex[:8]}", tmp_path / "worker.log")
    yield worker
    if worker.process and worker.process.poll() is None:
        worker.stop()


async def stored(influx, run: str) -> dict[tuple[str, str], float]:
    found = rows(await influx.query(f"SELECT athlete_id, weight_kg FROM body_composition WHERE athlete_id =~ /^{run}-/"))
    return {(row["athlete_id"], row["time"]): row["weight_kg"] for row in found}


def expected(events: list[ScaleReading]) -> dict[tuple[str, str], float]:
    return {(e.athlete_id, e.time.strftime("%Y-%m-%dT%H:%M:%SZ")): e.weight_kg for e in events}


async def produce(stack, events) -> None:
    async with EventProducer(stack.kafka_bootstrap) as producer:
        await producer.send_all(events)


async def wait_for_some(influx, run: str, at_least: int) -> None:
    async def some() -> bool:
        return len(await stored(influx, run)) >= at_least

    await eventually(some, timeout_s=60, every_s=0.05)


async def test_a_worker_stopped_mid_stream_and_restarted_loses_and_doubles_nothing(stack, own_worker, influx_for):
    run = own_worker.database
    events = readings(run)
    await produce(stack, events)
    own_worker.start()
    async with influx_for(own_worker.database, Audience.COACHING) as influx:
        await wait_for_some(influx, run, 500)
        assert own_worker.stop(signal.SIGTERM) == 0
        partial = len(await stored(influx, run))
        assert partial < READINGS, "the worker finished before it could be interrupted; raise READINGS"
        own_worker.start()

        async def complete() -> bool:
            return len(await stored(influx, run)) == READINGS

        await eventually(complete, timeout_s=120)
        assert await stored(influx, run) == expected(events)
        counted = rows(await influx.query(
            f"SELECT count(weight_kg) FROM body_composition WHERE athlete_id =~ /^{run}-/"))
        assert counted[0]["count"] == READINGS

        await trend_points_complete(influx, stack.kafka_bootstrap, run, events)


async def readings_on_timeline(bootstrap: str, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (athlete, time) readings are on the timeline topic, read whole from the broker."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    found: set[tuple[str, str]] = set()
    try:
        partitions = [TopicPartition(topics.TIMELINE_TOPIC, p) for p in range(topics.PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    if header(record.headers, MARKER_HEADER) is not None:
                        continue
                    for item in parse_timeline_message(record.value):
                        if item.event is not None:
                            key = (item.event.athlete_id, item.event.time.strftime("%Y-%m-%dT%H:%M:%SZ"))
                            if key in wanted:
                                found.add(key)
    finally:
        await consumer.stop()
    return found


async def trend_points_complete(influx, bootstrap: str, run: str, events: list[ScaleReading]) -> None:
    """The clinical agent's histories (restored from their stored parts after a restart or a takeover, events
    forwarded again recognised by id whatever their age) give the engine's trend over the whole history: every
    reading's trend point, with the engine's value."""
    trend = {
        (event.athlete_id, event.time.strftime("%Y-%m-%dT%H:%M:%SZ")): outcome.trend.smoothed_pct
        for event, outcome in engine.fold(map(domain_event, events)) if outcome.trend is not None
    }
    trend_q = f"SELECT athlete_id, smoothed_pct FROM body_fat_trend WHERE athlete_id =~ /^{run}-/"

    missing: list[tuple[str, str]] = []

    async def trend_complete() -> bool:
        stored_points = {(row["athlete_id"], row["time"]) for row in rows(await influx.query(trend_q))}
        missing[:] = sorted(set(trend) - stored_points)
        return not missing

    try:
        await eventually(trend_complete, timeout_s=300)  # the clinical agent is the slowest stage
    except pytest.fail.Exception:
        # Which stage lost them: readings the ingest consumer never forwarded, or forwarded ones the clinical
        # agent did not fold (the rare failure README's "Faults" names, so far without a cause).
        forwarded = await readings_on_timeline(bootstrap, set(missing))
        pytest.fail(f"{len(missing)} trend points missing: {missing[:12]}; of their readings, {len(forwarded)} are "
                    f"on the timeline topic: {sorted(forwarded)[:12]}")
    stored_trend = {(row["athlete_id"], row["time"]): row["smoothed_pct"] for row in rows(await influx.query(trend_q))}
    assert stored_trend == pytest.approx(trend, rel=1e-12)


def _influxd_pid(stack) -> int:
    return int((Path(stack.state_dir) / "influxdb.pid").read_text())


async def test_influxdb_killed_mid_stream_is_retried_and_nothing_is_lost(stack, own_worker, influx_for):
    run = own_worker.database
    events = readings(run)
    await produce(stack, events)
    own_worker.start()
    influxdb = next(s for s in local_stack.servers(stack) if s.name == "influxdb")
    async with influx_for(own_worker.database, Audience.COACHING) as influx:
        await wait_for_some(influx, run, 500)
        os.kill(_influxd_pid(stack), signal.SIGKILL)
        await asyncio.sleep(3)
        assert own_worker.process.poll() is None, "the worker crashed while InfluxDB was down"
        local_stack.start(stack, influxdb)

        async def complete() -> bool:
            return len(await stored(influx, run)) == READINGS

        await eventually(complete, timeout_s=120)
        assert await stored(influx, run) == expected(events)
    assert own_worker.process.poll() is None
    assert b"influx write failed" in own_worker.log_path.read_bytes(), "the outage was not seen (too late?)"


async def test_the_pipeline_resumes_by_itself_after_a_clean_broker_restart(stack, own_worker, influx_for):
    run = own_worker.database
    first, second = readings(run, 1000), readings(run, 1000, offset=1000)
    await produce(stack, first)
    own_worker.start()
    kafka = next(s for s in local_stack.servers(stack) if s.name == "kafka")
    async with influx_for(own_worker.database, Audience.COACHING) as influx:
        await wait_for_some(influx, run, 1000)
        local_stack.stop(stack, kafka)
        local_stack.start(stack, kafka)
        await produce(stack, second)

        async def complete() -> bool:
            return len(await stored(influx, run)) == 2000

        await eventually(complete, timeout_s=120)
        assert await stored(influx, run) == expected(first + second)
    assert own_worker.process.poll() is None


def workouts(run: str, days: int = 30) -> list[WorkoutSummary]:
    """One workout a day for each of the 20 athletes of `readings`, with loads unique per workout."""
    first_day = datetime(2020, 1, 1, 17, tzinfo=timezone.utc)
    return [
        parse_event({
            "type": "workout.summary", "athlete_id": f"{run}-{n % 20:02d}",
            "time": (first_day + timedelta(days=n // 20)).isoformat(), "sport": "running",
            "duration_s": 1800 + 7 * n, "rpe": 5,
        })
        for n in range(days * 20)
    ]


async def daily_loads(influx, run: str) -> tuple[dict[tuple[str, str], float], dict[tuple[str, str], dict]]:
    """Each workout's load, and each day's load and CTL, by athlete and date."""
    workout = {
        (row["athlete_id"], row["time"][:10]): row["load"]
        for row in rows(await influx.query(f"SELECT athlete_id, load FROM workout WHERE athlete_id =~ /^{run}-/"))
    }
    daily = {
        (row["athlete_id"], row["time"][:10]): row
        for row in rows(await influx.query(
            f"SELECT athlete_id, load, ctl FROM training_load_daily WHERE athlete_id =~ /^{run}-/ AND load > 0"))
    }
    return workout, daily


def expected_ctl(workout: dict[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """The fitness model over each athlete's whole history (a worker that lost an athlete's state would restart
    its CTL from zero)."""
    by_athlete: dict[str, dict[date, float]] = {}
    for (athlete, day), load in workout.items():
        by_athlete.setdefault(athlete, {})[date.fromisoformat(day)] = load
    return {
        (athlete, model.day.isoformat()): model.ctl
        for athlete, loads in by_athlete.items()
        for model in daily_load_model(loads) if model.day in loads
    }


async def test_one_of_two_workers_killed_mid_stream_the_other_takes_over_and_it_rebalances_back(
    stack, tmp_path, influx_for
):
    run = f"kill2_{uuid.uuid4().hex[:8]}"
    # A killed worker says nothing: the group waits out its session before moving its partitions.
    workers = [Worker(stack, run, tmp_path / f"worker{i}.log", AROMATRACK_SESSION_TIMEOUT_S="6") for i in range(2)]
    events, sessions = readings(run), workouts(run)
    try:
        for worker in workers:
            worker.start()
        async with influx_for(run, Audience.COACHING) as influx, EventProducer(stack.kafka_bootstrap) as producer:
            # Mid-stream for sure: the events arrive over ~15 s, and one worker dies a third of the way in.
            for chunk in range(30):
                await producer.send_all(sessions[chunk * 20:(chunk + 1) * 20] + events[chunk * 200:(chunk + 1) * 200])
                await asyncio.sleep(0.5)
                if chunk == 10:
                    assert workers[1].stop(signal.SIGKILL) == -signal.SIGKILL

            progress = {}
            every_workout = {(session.athlete_id, session.time.date().isoformat()) for session in sessions}

            async def complete() -> bool:
                workout, daily = await daily_loads(influx, run)
                progress.update(readings=len(await stored(influx, run)), workouts=len(workout), days=len(daily),
                                missing_workouts=sorted(every_workout - set(workout))[:20])
                return len(workout) == len(daily) == len(sessions) and progress["readings"] == READINGS

            await eventually(complete, timeout_s=240, describe=lambda: f"stored so far: {progress}")
            assert await stored(influx, run) == expected(events)
            workout, daily = await daily_loads(influx, run)
            assert len(set(workout.values())) == len(sessions)  # every workout stored once, with its own load
            await trend_points_complete(influx, stack.kafka_bootstrap, run, events)

            workers[1].start()  # back: the group gives it half of the partitions again

            async def rebalanced() -> bool:
                members = await group_assignments(stack, stack.app_id)
                timeline = [{p for t, p in held if t == topics.TIMELINE_TOPIC} for held in members]
                return len(members) == 2 and all(len(partitions) == 2 for partitions in timeline)

            await eventually(rebalanced, timeout_s=90, every_s=1)
            more = readings(run, 1000, offset=READINGS)
            await produce(stack, more)

            async def all_stored() -> bool:
                return len(await stored(influx, run)) == READINGS + 1000

            await eventually(all_stored, timeout_s=120)
            assert await stored(influx, run) == expected(events + more)
        assert all(worker.process.poll() is None for worker in workers)
    finally:
        for worker in workers:
            if worker.process and worker.process.poll() is None:
                worker.stop()
    # One workout a day: a day's load is that workout's, so a workout applied twice (re-delivered after the takeover
    # and counted again) shows as a doubled day; and the CTL carries each athlete's history across the takeover.
    assert {day: row["load"] for day, row in daily.items()} == pytest.approx(workout)
    assert {day: row["ctl"] for day, row in daily.items()} == pytest.approx(expected_ctl(workout))


async def test_the_broker_killed_mid_stream_loses_no_acknowledged_event_and_the_pipeline_resumes(
    stack, own_worker, influx_for
):
    run = own_worker.database
    first, second = readings(run, 1500), readings(run, 3000, offset=1500)
    await produce(stack, first)
    own_worker.start()
    kafka = next(s for s in local_stack.servers(stack) if s.name == "kafka")
    acknowledged: list[ScaleReading] = []
    broker_killed = asyncio.Event()

    async def produce_one_by_one() -> None:
        """acks=all, idempotent: an event counts once the broker acknowledged it; one refused while the broker
        is down is simply not acknowledged (a producer would retry it)."""
        async with EventProducer(stack.kafka_bootstrap) as producer:
            for event in second:
                try:
                    await producer.send(event)
                except KafkaError:
                    continue
                acknowledged.append(event)
                if len(acknowledged) == 500:
                    broker_killed.set()

    async with influx_for(own_worker.database, Audience.COACHING) as influx:
        await wait_for_some(influx, run, 300)
        producing = asyncio.create_task(produce_one_by_one())
        await asyncio.wait_for(broker_killed.wait(), 120)
        local_stack.kill(stack, kafka)  # SIGKILL: no shutdown, no flush
        at_kill = len(acknowledged)
        await asyncio.sleep(2)
        local_stack.start(stack, kafka)
        await asyncio.wait_for(producing, 300)
        assert len(acknowledged) > at_kill, "nothing was acknowledged after the restart"

        async def everything_acknowledged_stored() -> bool:
            return expected(first + acknowledged).items() <= (await stored(influx, run)).items()

        await eventually(everything_acknowledged_stored, timeout_s=180)
        assert (await stored(influx, run)).items() <= expected(first + second).items()
    assert own_worker.process.poll() is None, "the worker died with the broker"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
async def test_alerts_after_a_stop_mid_stream_and_a_restart_equal_evaluates(stack, own_worker, influx_for, sig):
    """Histories sent at once; the worker stopped (cleanly, or killed) while it works through them, then restarted
    with nothing more sent: the alerts topic ends up holding exactly evaluate's alerts, ids and bodies."""
    from aromatrack.services.jsonl import read_events

    from .test_clinical_stream import alerts_on_topic, expected_state, topic_state

    names = ("symptomatic_high_e2", "fat_loss_unchanged_ai", "dose_change_recheck", "low_e2_on_ai")
    events = []
    for name in names:
        athlete = f"{own_worker.database}-{name}"
        timeline = Path(__file__).parent.parent / "timelines" / f"{name}.jsonl"
        events += [event.model_copy(update={"athlete_id": athlete, "event_id": f"{athlete}-{event.event_id}"})
                   for event in read_events(timeline)]
    athletes = {event.athlete_id for event in events}
    await produce(stack, events)
    own_worker.start()
    async with influx_for(own_worker.database, Audience.COACHING) as influx:
        async def some_points() -> bool:
            return bool(rows(await influx.query("SELECT count(weight_kg) FROM body_composition")))

        await eventually(some_points, timeout_s=60, every_s=0.05)
    own_worker.stop(sig)
    own_worker.start(timeout_s=180)  # after a kill, the group waits out the dead member's session first
    expected = expected_state(events)
    found = await alerts_on_topic(stack.kafka_bootstrap, athletes, len(expected), timeout_s=120)
    assert topic_state(found) == expected
