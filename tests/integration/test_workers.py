"""Several workers of one app share a stream: partitions spread over them, results equal one worker's and evaluate's.

The same cohort (same events, same ids) is sent twice, all at once, each time into a fresh throwaway stack:
through one worker, then through two workers of one app. Every InfluxDB series and every alert must be the same both times,
and the alerts the same as `aromatrack evaluate`'s; with two workers, each of the app's consumer groups (faust's
and the batch ingest consumer's) must have given each worker half of every topic's partitions.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path


from aromatrack.deploy import influx_access, local_stack
from aromatrack.schemas import boundary, topics
from aromatrack.schemas.events import EventError, dump_event, parse_event
from aromatrack.schemas.series import Audience
from aromatrack.services import cohort
from aromatrack.streams.admin import LagProbe, wait_until_consumed
from aromatrack.streams.influx import rows
from aromatrack.streams.input_progress import HEARTBEAT_S
from aromatrack.streams.producer import EventProducer

from .conftest import Worker, group_assignments
from .test_clinical_stream import alerts_on_topic, topic_state

# A worker that stops committing fails the test instead of hanging it.
CONSUMED_WITHIN_S = 300


def cohort_events() -> list:
    events = []
    for raw in cohort.generate(athletes=8, days=150, seed=23, start=datetime(2025, 3, 3, tzinfo=timezone.utc)):
        try:
            events.append(parse_event(raw))
        except EventError:
            continue  # the cohort's impossible readings: dead-lettered at entry either way
    return events


async def influx_dump(settings, database: str) -> dict[str, list[dict]]:
    """Every point of every measurement of both audiences' databases, sorted: what Grafana and the API would read."""
    dump = {}
    async with influx_access.reader_store(replace(settings, influx_database=database)) as store:
        for audience in Audience:
            influx = store.client(audience)
            for name in [row["name"] for row in rows(await influx.query("SHOW MEASUREMENTS"))]:
                found = rows(await influx.query(f'SELECT * FROM "{name}"'))
                dump[f"{audience.value}.{name}"] = sorted(found, key=lambda row: json.dumps(row, sort_keys=True))
    return dump


async def run_cohort(tmp_path: Path, name: str, worker_count: int, kafka_port: int, influx_port: int, events: list):
    with local_stack.throwaway_stack(kafka_port, influx_port) as settings:
        workers = [
            Worker(settings, "cohort", tmp_path / f"{name}-worker{i}.log")
            for i in range(worker_count)
        ]
        try:
            for worker in workers:
                worker.start(timeout_s=90)
            async with EventProducer(settings.kafka_bootstrap) as producer, LagProbe(settings.kafka_bootstrap) as probe:
                # Profiles first: the workouts agent's own series (loads, modality mix) use the profile it holds
                # when a workout is processed (README, Known limits); the clinical alerts need no such order.
                await producer.send_all([event for event in events if event.type == "athlete.profile"])
                await wait_until_consumed(probe, settings.app_id, within_s=CONSUMED_WITHIN_S)
                await producer.send_all([event for event in events if event.type != "athlete.profile"])
                await wait_until_consumed(probe, settings.app_id, within_s=CONSUMED_WITHIN_S)
            spread = {
                topics.AGENT_TOPICS: await group_assignments(settings, settings.app_id),
                topics.INGEST_TOPICS: await group_assignments(settings, topics.ingest_group(settings.app_id)),
            }
            await asyncio.sleep(2 * HEARTBEAT_S + 1)  # the last progress markers complete the watermark: the release
            athletes = {event.athlete_id for event in events}
            alerts = await alerts_on_topic(settings.kafka_bootstrap, athletes, expected=10**6, timeout_s=10)
            dump = await influx_dump(settings, "cohort")
        finally:
            for worker in workers:
                if worker.process and worker.process.poll() is None:
                    worker.stop()
    return alerts, dump, spread


async def test_two_workers_share_the_stream_and_give_one_workers_results(tmp_path):
    events = cohort_events()
    expected = {a.alert_id: json.loads(dump_event(a)) for a in boundary.evaluate(events, as_of_s=time.time())}
    assert len(expected) >= 3

    one_alerts, one_dump, _ = await run_cohort(tmp_path, "one", 1, 39691, 38691, events)
    two_alerts, two_dump, spread = await run_cohort(tmp_path, "two", 2, 39695, 38695, events)

    # Changelog partitions are left out: a faust worker also holds the other's as a standby replica.
    for consumed, held in spread.items():
        members = [{(t, p) for t, p in partitions if t in consumed} for partitions in held]
        assert len(members) == 2, members
        first, second = members
        assert not first & second, f"a partition held twice: {first & second}"
        for topic in consumed:
            assert len({p for t, p in first if t == topic}) == len({p for t, p in second if t == topic}) == 2, topic

    assert topic_state(one_alerts) == expected
    assert topic_state(two_alerts) == expected
    assert set(one_dump) == set(two_dump) and {
        "coaching.body_composition", "coaching.body_fat_trend", "coaching.training_load_daily", "clinical.lab"
    } <= set(one_dump)
    for measurement in one_dump:
        assert two_dump[measurement] == one_dump[measurement], measurement

