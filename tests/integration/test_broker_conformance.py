"""Every Kafka behaviour the service relies on, checked against whatever broker AROMATRACK_KAFKA names.

Here that is the local Apache Kafka broker (`aromatrack stack up`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import MessageSizeTooLargeError

from aromatrack.schemas import topics
from aromatrack.streams.admin import ensure_topics
from aromatrack.streams.producer import MAX_MESSAGE_BYTES


@pytest.fixture
async def topic(stack) -> str:
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()
    return name


@pytest.fixture
async def producer(stack):
    client = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await client.start()
    yield client
    await client.stop()


def consumer(stack, *names: str, group: str | None = None) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *names,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )


async def drain(client: AIOKafkaConsumer, expected: int, timeout_s: float = 15.0) -> list:
    records = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(records) < expected and asyncio.get_running_loop().time() < deadline:
        for batch in (await client.getmany(timeout_ms=300)).values():
            records.extend(batch)
    return records


async def test_contract_topics_are_created_with_their_partitions(stack):
    await ensure_topics(stack.kafka_bootstrap)
    assert await ensure_topics(stack.kafka_bootstrap) == []  # idempotent
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics.ALL_TOPICS))
    finally:
        await admin.close()
    partitions = {item["topic"]: len(item["partitions"]) for item in described}
    assert partitions == {name: topics.PARTITIONS for name in topics.ALL_TOPICS}


async def test_one_key_stays_in_one_partition_in_order(stack, topic, producer):
    sent = [await producer.send_and_wait(topic, str(i).encode(), key=f"athlete-{i % 5}".encode()) for i in range(100)]
    by_key: dict[bytes, set[int]] = {}
    for i, meta in enumerate(sent):
        by_key.setdefault(f"athlete-{i % 5}".encode(), set()).add(meta.partition)
    assert all(len(partitions) == 1 for partitions in by_key.values())
    assert len({meta.partition for meta in sent}) > 1, "keys should spread over partitions"

    client = consumer(stack, topic)
    await client.start()
    try:
        records = await drain(client, 100)
    finally:
        await client.stop()
    for key in by_key:
        values = [int(r.value) for r in records if r.key == key]
        assert values == sorted(values) and len(values) == 20


async def test_headers_and_null_keys_round_trip(stack, topic, producer):
    await producer.send_and_wait(topic, b"\x00\xffraw", headers=[("reason", b"not JSON"), ("source_topic", b"t")])
    client = consumer(stack, topic)
    await client.start()
    try:
        (record,) = await drain(client, 1)
    finally:
        await client.stop()
    assert record.key is None and record.value == b"\x00\xffraw"
    assert dict(record.headers) == {"reason": b"not JSON", "source_topic": b"t"}


async def test_a_consumer_group_resumes_from_its_committed_offset(stack, topic, producer):
    for i in range(10):
        await producer.send_and_wait(topic, str(i).encode(), key=b"k")
    group = f"g-{uuid.uuid4().hex[:6]}"
    first = consumer(stack, topic, group=group)
    await first.start()
    try:
        records = await drain(first, 10)
        partition = TopicPartition(topic, records[0].partition)
        await first.commit({partition: records[5].offset + 1})  # processed 0..5
    finally:
        await first.stop()
    for i in range(10, 12):
        await producer.send_and_wait(topic, str(i).encode(), key=b"k")
    second = consumer(stack, topic, group=group)
    await second.start()
    try:
        resumed = await drain(second, 6)
    finally:
        await second.stop()
    assert [int(r.value) for r in resumed] == [6, 7, 8, 9, 10, 11]


async def test_messages_up_to_the_documented_size_are_accepted_and_larger_refused(stack, topic):
    client = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", max_request_size=MAX_MESSAGE_BYTES)
    await client.start()
    try:
        await client.send_and_wait(topic, b"x" * (MAX_MESSAGE_BYTES - 1024), key=b"big")
        with pytest.raises(MessageSizeTooLargeError):
            await client.send_and_wait(topic, b"x" * (MAX_MESSAGE_BYTES + 1), key=b"big")
    finally:
        await client.stop()


def test_a_faust_table_recovers_from_its_changelog_after_restart(stack, tmp_path):
    """Per-athlete state lives in faust tables; a restarted worker must see what it counted before."""
    app_file = Path(__file__).parent / "apps" / "counter_app.py"
    run_id = uuid.uuid4().hex[:8]
    env = {**os.environ, "COUNTER_RUN": run_id, "COUNTER_DIR": str(tmp_path)}

    def run(batch: int) -> int:
        result = subprocess.run(
            [sys.executable, str(app_file), str(batch)], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return int((tmp_path / f"count-{batch}").read_text())

    assert run(1) == 5
    assert run(2) == 10  # 5 recovered from the changelog + 5 new
