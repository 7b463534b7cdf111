"""The clinical agent on the real broker gives the same alerts as `aromatrack evaluate` for the same history.

Events go straight onto the timeline topic (where the ingest agents forward them) in the order several input
topics would interleave them: roughly event-time order, shuffled within short windows, and each lab result
arriving after a few later scale readings and workouts. The agent must still alert exactly as the sorted
fold does: same ids, same content, nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from aromatrack.domain import engine
from aromatrack.schemas import topics
from aromatrack.schemas.events import dump_event, parse_event
from aromatrack.schemas.series import Audience
from aromatrack.services.jsonl import read_events
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

from .conftest import eventually, unique_athlete

TIMELINES = Path(__file__).parent.parent / "timelines"


def history(name: str, athlete: str) -> list:
    """A committed timeline under a fresh athlete id, in event-time order."""
    events = []
    for event in read_events(TIMELINES / name):
        body = event.model_dump(mode="json", exclude={"event_id"}) | {"athlete_id": athlete}
        events.append(parse_event(body))
    return sorted(events, key=engine.order_key)


def interleaved(events: list, rng: random.Random) -> list:
    """Arrival order from several input topics: local shuffles, and labs overtaken by later events."""
    arrival = []
    for start in range(0, len(events), 6):
        window = events[start : start + 6]
        rng.shuffle(window)
        arrival.extend(window)
    for index in [i for i, e in enumerate(arrival) if e.type == "lab.result"]:
        moved = arrival.pop(index)
        arrival.insert(min(len(arrival), index + rng.randint(1, 5)), moved)
    return arrival


async def alerts_on_topic(bootstrap: str, athletes: set[str], expected: int, timeout_s: float) -> list[dict]:
    """Every alert for these athletes on the alerts topic, waiting for `expected` and then 2 s more."""
    consumer = AIOKafkaConsumer(topics.ALERTS_TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    settle_until = None
    try:
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    alert = json.loads(record.value)
                    if alert["athlete_id"] in athletes:
                        found.append(alert)
            if len(found) >= expected and settle_until is None:
                settle_until = time.monotonic() + 2.0
    finally:
        await consumer.stop()
    return found


async def send_to_timeline(bootstrap: str, events: list) -> None:
    async with EventProducer(bootstrap) as producer:
        for event in events:
            await producer.send_raw(topics.TIMELINE_TOPIC, dump_event(event), key=event.athlete_id.encode())


async def test_stream_alerts_equal_evaluate_for_multi_month_histories(stack, worker, influx_for):
    rng = random.Random(4)
    histories = {
        unique_athlete("fatloss"): "fat_loss_unchanged_ai.jsonl",
        unique_athlete("dosechange"): "dose_change_recheck.jsonl",
        unique_athlete("symptomatic"): "symptomatic_high_e2.jsonl",
        unique_athlete("stable"): "stable_control.jsonl",
    }
    events = {athlete: history(name, athlete) for athlete, name in histories.items()}
    expected = [json.loads(dump_event(a)) for a in engine.evaluate(e for es in events.values() for e in es)]
    assert {a["rule"] for a in expected} >= {
        "recheck.fat_loss_unchanged_ai",
        "recheck.after_dose_change",
        "dose_review.high_e2_symptomatic",
    }

    arrival = [event for athlete in histories for event in interleaved(events[athlete], rng)]
    await send_to_timeline(stack.kafka_bootstrap, arrival)
    await send_to_timeline(stack.kafka_bootstrap, arrival[:50])  # a producer retry: must not duplicate

    received = await alerts_on_topic(stack.kafka_bootstrap, set(histories), len(expected), timeout_s=60)
    key = lambda alert: alert["alert_id"]  # noqa: E731
    assert sorted(received, key=key) == sorted(expected, key=key)

    async with influx_for(worker.database, Audience.CLINICAL) as clinical, \
            influx_for(worker.database, Audience.COACHING) as coaching:
        athlete = next(iter(histories))
        query = f"SELECT e2_pg_ml, body_fat_pct FROM e2_correlation WHERE athlete_id = '{athlete}'"

        async def correlation_written() -> bool:
            return len(rows(await clinical.query(query))) == 1

        await eventually(correlation_written)
        trend = rows(await coaching.query(f"SELECT count(smoothed_pct) FROM body_fat_trend WHERE athlete_id = '{athlete}'"))
        assert trend[0]["count"] == sum(1 for e in events[athlete] if e.type == "scale.reading")


async def test_alert_latency_is_under_a_second(stack, worker):
    athlete = unique_athlete("latency")
    high_e2 = parse_event({
        "type": "lab.result", "athlete_id": athlete, "time": "2026-02-01T07:00:00Z",
        "analyte": "estradiol", "value": 75, "unit": "pg/mL", "method": "lc_msms",
    })
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topics.ALERTS_TOPIC, p) for p in range(topics.PARTITIONS)])
        await consumer.seek_to_end()
        sent_at = time.time()
        await send_to_timeline(stack.kafka_bootstrap, [high_e2])
        latency = None
        while latency is None and time.time() - sent_at < 30:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                for record in records:
                    if json.loads(record.value)["athlete_id"] == athlete:
                        latency = record.timestamp / 1000 - sent_at  # when the worker produced it
    finally:
        await consumer.stop()
    assert latency is not None and latency < 1.0, latency


async def test_through_the_ingest_agents_the_alerts_equal_evaluate(stack, worker):
    athlete = unique_athlete("ingest")
    events = history("low_e2_on_ai.jsonl", athlete)
    expected = [json.loads(dump_event(a)) for a in engine.evaluate(events)]
    # Live-shaped: in event-time order, a few ms apart, one input topic per type as producers send them (a
    # whole history at once is a backfill: it needs the paced replay and a longer grace, see the README).
    async with EventProducer(stack.kafka_bootstrap) as producer:
        for event in sorted(events, key=engine.order_key):
            await producer.send(event)
            await asyncio.sleep(0.02)
    received = await alerts_on_topic(stack.kafka_bootstrap, {athlete}, len(expected), timeout_s=60)
    assert [a["rule"] for a in received] == ["dose_review.low_e2_on_ai"]
    assert received == expected
