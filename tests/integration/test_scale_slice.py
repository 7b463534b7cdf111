"""First end-to-end slice: scale readings through the real broker and worker into the real InfluxDB."""

from __future__ import annotations

import json

from aiokafka import AIOKafkaConsumer

from aromatrack.schemas import topics
from aromatrack.schemas.events import parse_event
from aromatrack.schemas.series import Audience
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

from .conftest import eventually, unique_athlete


def reading(athlete: str, day: int, weight: float, fat: float) -> dict:
    return {
        "type": "scale.reading",
        "athlete_id": athlete,
        "time": f"2026-03-{day:02d}T07:00:00Z",
        "weight_kg": weight,
        "body_fat_pct": fat,
    }


async def test_readings_are_written_and_read_back_with_influxql(stack, worker, influx_for):
    athlete = unique_athlete()
    events = [parse_event(reading(athlete, day, 90 - day * 0.1, 22 - day * 0.05)) for day in range(1, 11)]
    async with EventProducer(stack.kafka_bootstrap) as producer:
        await producer.send_all(events)

    async with influx_for(worker.database, Audience.COACHING) as influx:
        query = f"SELECT weight_kg, body_fat_pct, fat_mass_kg FROM body_composition WHERE athlete_id = '{athlete}'"

        async def all_written() -> bool:
            return len(rows(await influx.query(query))) == 10

        await eventually(all_written)
        stored = rows(await influx.query(query))
    assert [row["time"] for row in stored] == [f"2026-03-{d:02d}T07:00:00Z" for d in range(1, 11)]
    assert stored[0]["weight_kg"] == 89.9
    assert stored[0]["fat_mass_kg"] == round(89.9 * 21.95 / 100, 3)


async def test_replayed_readings_are_not_double_counted(stack, worker, influx_for):
    athlete = unique_athlete()
    events = [parse_event(reading(athlete, day, 80.0, 18.0)) for day in range(1, 4)]
    async with EventProducer(stack.kafka_bootstrap) as producer:
        await producer.send_all(events)
        await producer.send_all(events)  # a client retry of the whole batch

    async with influx_for(worker.database, Audience.COACHING) as influx:
        count_query = f"SELECT count(weight_kg) FROM body_composition WHERE athlete_id = '{athlete}'"

        async def written() -> bool:
            found = rows(await influx.query(count_query))
            return bool(found) and found[0]["count"] == 3

        await eventually(written)


async def test_bad_events_go_to_the_dead_letter_topic_and_the_worker_keeps_going(stack, worker, influx_for):
    athlete = unique_athlete()
    poison = [
        b"\x00\x01not json at all",
        json.dumps(reading(athlete, 1, 900.0, 20.0)).encode(),  # impossible weight
        json.dumps({**reading(athlete, 2, 80.0, 20.0), "type": "lab.result"}).encode(),  # wrong schema
        json.dumps({**reading(athlete, 4, 80.0, 20.0), "note": "x" * 200_000}).encode(),  # huge payload
        json.dumps({**reading(athlete, 5, 80.0, 20.0), "time": "3000-01-01T07:00:00Z"}).encode(),  # InfluxDB cannot store it
        json.dumps({**reading(athlete, 6, 80.0, 20.0), "device": "scale\nmodel"}).encode(),  # nor a tag with a line break
    ]
    consumer = AIOKafkaConsumer(
        topics.DEAD_LETTER_TOPIC, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        async with EventProducer(stack.kafka_bootstrap) as producer:
            for value in poison:
                await producer.send_raw(topics.topic_for("scale.reading"), value, key=athlete.encode())
            await producer.send(parse_event(reading(athlete, 3, 80.0, 20.0)))

        reasons: dict[bytes, str] = {}
        async def all_dead_lettered() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if record.value in poison:
                        reasons[record.value] = dict(record.headers)["reason"].decode()
            return len(reasons) == len(poison)

        await eventually(all_dead_lettered)
    finally:
        await consumer.stop()
    assert reasons[poison[0]].startswith("body: not JSON")
    assert "weight_kg" in reasons[poison[1]]
    assert "analyte" in reasons[poison[2]]
    assert "over the 65536-byte limit" in reasons[poison[3]]
    assert reasons[poison[4]] == "time: Input should be less than 2200-01-01T00:00:00Z"
    assert reasons[poison[5]].startswith("device: must be one line of text without backslashes")

    async with influx_for(worker.database, Audience.COACHING) as influx:
        async def good_one_written() -> bool:
            return len(rows(await influx.query(
                f"SELECT weight_kg FROM body_composition WHERE athlete_id = '{athlete}'"))) == 1

        await eventually(good_one_written)
