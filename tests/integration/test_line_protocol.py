"""What the real InfluxDB stores of the points the service writes, and what the ingest consumer does when InfluxDB
refuses them."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from aiokafka import AIOKafkaConsumer
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aromatrack.deploy import influx_access
from aromatrack.schemas import series, topics
from aromatrack.schemas.events import parse_event
from aromatrack.schemas.series import Audience
from aromatrack.streams.influx import rows, time_ns, write_storable
from aromatrack.streams.producer import EventProducer

from .conftest import eventually, unique_athlete
from .test_scale_slice import reading

# What line protocol escapes or quotes, drawn often (all of Unicode rarely draws them).
SPECIALS = st.sampled_from(' ,="\'#')
# Any label the event contract accepts (schemas/events.py `Label`: no control character, no backslash).
labels = st.text(alphabet=st.one_of(SPECIALS, st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\\")),
                 min_size=1, max_size=30)
# Any string field but a line break (which has no escape in line protocol and is stored as a backslash and an "n").
texts = st.text(alphabet=st.one_of(SPECIALS, st.just("\\"), st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")),
                max_size=30)
START = datetime(2012, 1, 2, tzinfo=timezone.utc)


def test_any_label_as_a_tag_and_any_text_as_a_field_reads_back_as_written(stack):
    database = f"lines_{uuid.uuid4().hex[:8]}"
    influx_access.provision(stack, database)
    stored = replace(stack, influx_database=database)
    moments = (START + timedelta(seconds=n) for n in itertools.count())

    async def round_trip(athlete: str, sport: str, workout_id: str) -> list[dict]:
        moment = next(moments)
        point = series.WORKOUT.point(moment, {"athlete_id": athlete, "sport": sport, "modality": "endurance"},
                                     {"workout_id": workout_id, "load": 42.5})
        async with influx_access.writer_store(stored) as writer, influx_access.reader_store(stored) as reader:
            await writer.write([point])
            return rows(await reader.client(Audience.COACHING).query(
                f"SELECT athlete_id, sport, modality, workout_id, load FROM workout WHERE time = {time_ns(moment)}"))

    @settings(max_examples=60, deadline=None)
    @given(athlete=labels, sport=labels, workout_id=texts)
    @example(athlete=" lead, x=1 ", sport='"quoted" #', workout_id='say "hi" \\o/ \\')
    def check(athlete: str, sport: str, workout_id: str) -> None:
        found = asyncio.run(round_trip(athlete, sport, workout_id))
        assert [{k: v for k, v in row.items() if k != "time"} for row in found] == [
            {"athlete_id": athlete, "sport": sport, "modality": "endurance", "workout_id": workout_id, "load": 42.5}]

    check()


async def test_an_event_influxdb_refuses_is_dead_lettered_and_the_consumer_goes_on(stack, worker, influx_for):
    """A field stored with another type in one week (another writer's mistake): InfluxDB refuses that week's
    readings. The refused reading goes to the dead-letter topic, with a reason that does not quote its values;
    the worker keeps running and stores the athlete's other readings."""
    athlete = unique_athlete()
    refused_week = datetime(2011, 1, 3, 7, tzinfo=timezone.utc)
    async with influx_access.writer_store(replace(stack, influx_database=worker.database)) as writer:
        await writer.write([series.BODY_COMPOSITION.point(refused_week, {"athlete_id": "other"}, {"weight_kg": "heavy"})])
    refused = parse_event({**reading(athlete, 1, 81.37, 20.0), "time": "2011-01-04T07:00:00Z"})
    kept = parse_event(reading(athlete, 5, 80.0, 20.0))
    consumer = AIOKafkaConsumer(topics.DEAD_LETTER_TOPIC, bootstrap_servers=stack.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        async with EventProducer(stack.kafka_bootstrap) as producer:
            await producer.send(refused)
            await producer.send(kept)
        reasons: list[str] = []

        async def dead_lettered() -> bool:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                reasons.extend(dict(r.headers)["reason"].decode() for r in records if r.key == athlete.encode())
            return bool(reasons)

        await eventually(dead_lettered, describe=lambda: f"(the worker's log ends: {worker.log_path.read_text()[-1500:]})")
    finally:
        await consumer.stop()
    assert len(set(reasons)) == 1, reasons  # the same dead letter again if the batch was delivered again
    assert reasons[0].startswith("its points were not stored (write refused (400): partial write: field type conflict")
    assert "81.37" not in reasons[0]
    async with influx_for(worker.database, Audience.COACHING) as influx:
        async def kept_stored() -> bool:
            return len(rows(await influx.query(
                f"SELECT weight_kg FROM body_composition WHERE athlete_id = '{athlete}'"))) == 1

        await eventually(kept_stored, describe=lambda: f"(the worker's log ends: {worker.log_path.read_text()[-1500:]})")
    assert worker.process is not None and worker.process.poll() is None


async def test_derived_points_older_than_the_retention_policy_are_left_out_and_the_rest_written(stack):
    """A database kept for an hour (an operator's retention policy) and a history years long: InfluxDB stores the
    recent points and says how many it dropped; nothing is raised."""
    stored = replace(stack, influx_database=f"kept_{uuid.uuid4().hex[:8]}")
    influx_access.provision(stored)
    database = series.database_name(stored.influx_database, Audience.COACHING)
    created = influx_access._run(stored, f'CREATE RETENTION POLICY "hour" ON "{database}" DURATION 1h REPLICATION 1 '
                                 "DEFAULT", influx_access.user(stored, influx_access.Role.ADMIN))
    assert created.error is None
    now = datetime.now(timezone.utc).replace(microsecond=0)
    points = [series.BODY_COMPOSITION.point(moment, {"athlete_id": "kept"}, {"weight_kg": 80.0})
              for moment in (datetime(2020, 1, 1, tzinfo=timezone.utc), now, datetime(2021, 1, 1, tzinfo=timezone.utc))]
    async with influx_access.writer_store(stored) as writer, influx_access.reader_store(stored) as reader:
        assert await write_storable(writer.write, points) == 2
        found = rows(await reader.client(Audience.COACHING).query("SELECT weight_kg FROM body_composition"))
    assert [row["time"] for row in found] == [now.strftime("%Y-%m-%dT%H:%M:%SZ")]
