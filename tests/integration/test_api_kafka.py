"""The API through the real broker and InfluxDB: accepted means on Kafka (once), and reads obey roles."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from aromatrack.deploy import influx_access
from aromatrack.schemas import series as S
from aromatrack.schemas import topics
from aromatrack.services.api import Services, create_app
from aromatrack.services.auth import Role
from aromatrack.services.store import Store
from aromatrack.streams.admin import ensure_topics, records_to_end, topic_partitions

from .conftest import unique_athlete


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    await ensure_topics(bootstrap)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await consumer.start()
    try:
        partitions = await topic_partitions(admin, [topic])
        assert partitions, f"{topic} has no partitions"
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def records_since(bootstrap: str, start: dict[TopicPartition, int]) -> list:
    """Every record written to the partitions after `start` (read up to the current end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        return await records_to_end(consumer, list(start))
    finally:
        await consumer.stop()


async def test_an_accepted_event_is_on_kafka_exactly_once_despite_retries(stack, tmp_path):
    athlete = unique_athlete()
    store = Store(tmp_path / "api.sqlite3")
    token = store.add_user(athlete, Role.ATHLETE)
    app = create_app(Services(store), settings=stack)
    topic = topics.topic_for("scale.reading")
    before = await end_offsets(stack.kafka_bootstrap, topic)
    body = {"time": "2026-05-01T07:00:00Z", "weight_kg": 81.0, "body_fat_pct": 16.5}
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": str(uuid.uuid4())}
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://api"
    ) as client:
        first = await client.post(f"/v1/athletes/{athlete}/scale-readings", json=body, headers=headers)
        retry = await client.post(f"/v1/athletes/{athlete}/scale-readings", json=body, headers=headers)
        bad = await client.post(f"/v1/athletes/{athlete}/scale-readings", json=[body, {**body, "weight_kg": 1}],
                                headers={"Authorization": f"Bearer {token}"})
    assert first.status_code == retry.status_code == 202 and bad.status_code == 422
    records = await records_since(stack.kafka_bootstrap, before)
    on_kafka = [m for m in map(json.loads, (r.value for r in records)) if m.get("athlete_id") == athlete]
    assert [m["event_id"] for m in on_kafka] == first.json()["accepted"]
    assert on_kafka[0]["weight_kg"] == 81.0


async def test_a_coach_reads_body_composition_from_influx_but_never_labs_which_the_clinician_reads(stack, tmp_path):
    athlete = unique_athlete()
    database = f"api_{uuid.uuid4().hex[:8]}"
    settings = replace(stack, influx_database=database)
    store = Store(tmp_path / "api.sqlite3")
    store.add_user(athlete, Role.ATHLETE)
    coach = store.add_user("coach-" + athlete, Role.COACH)
    store.assign(athlete, "coach-" + athlete)
    clinician = store.add_user("dr-" + athlete, Role.CLINICIAN)
    store.assign(athlete, "dr-" + athlete)
    day = datetime.now(timezone.utc) - timedelta(days=3)
    influx_access.provision(stack, database)
    async with influx_access.writer_store(settings) as influx:
        await influx.write([
            S.BODY_COMPOSITION.point(day, {"athlete_id": athlete}, {"weight_kg": 80.0, "body_fat_pct": 15.0}),
            S.LAB.point(day, {"athlete_id": athlete, "analyte": "estradiol", "method": "lc_msms", "censored": "no"},
                        {"value": 21.0}),
        ])
    app = create_app(Services(store), settings=settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://api"
    ) as client:
        headers = {"Authorization": f"Bearer {coach}"}
        body = await client.get(f"/v1/athletes/{athlete}/body-composition?days=30", headers=headers)
        labs = await client.get(f"/v1/athletes/{athlete}/labs?days=30", headers=headers)
        clinician_labs = await client.get(f"/v1/athletes/{athlete}/labs?days=30",
                                          headers={"Authorization": f"Bearer {clinician}"})
    assert body.status_code == 200 and body.json()["body_composition"][0]["body_fat_pct"] == 15.0
    assert labs.status_code == 403 and "21" not in labs.text
    assert clinician_labs.status_code == 200 and clinician_labs.json()["lab"][0]["value"] == 21.0
