"""Every Kafka behaviour the service relies on, checked against whatever broker AROMATRACK_KAFKA names.

Here that is the local Apache Kafka broker (`aromatrack stack up`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError

from aromatrack.schemas import topics
from aromatrack.streams.admin import ensure_topics
from aromatrack.streams.producer import MAX_MESSAGE_BYTES

from .conftest import new_topic

# The worker's faust tables, each with a compacted changelog topic.
WORKER_TABLES = (
    "clinical_history", "workout_state", "workout_seen", "athlete_profiles", "delivered_offsets", "timeline_imports")


@pytest.fixture
async def topic(stack) -> str:
    return await new_topic(stack, "conformance", partitions=4)


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


async def read_partition(stack, topic_name: str) -> list:
    """Every record still in partition 0 of a topic, from its log start to its end."""
    client = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await client.start()
    try:
        tp = TopicPartition(topic_name, 0)
        client.assign([tp])
        await client.seek_to_beginning(tp)
        end = (await client.end_offsets([tp]))[tp]
        records = []
        while await client.position(tp) < end:
            records.extend((await client.getmany(tp, timeout_ms=1000)).get(tp, []))
        return records
    finally:
        await client.stop()


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


async def test_a_faust_table_recovers_from_its_changelog_after_restart_and_compaction(stack, tmp_path):
    """Per-athlete state lives in faust tables; a restarted worker must see what it counted before, also once
    the broker has compacted the table's changelog (faust creates it cleanup.policy=compact)."""
    app_file = Path(__file__).parent / "apps" / "counter_app.py"
    run_id = uuid.uuid4().hex[:8]
    env = {**os.environ, "COUNTER_RUN": run_id, "COUNTER_DIR": str(tmp_path), "COUNTER_FAST_COMPACTION": "1"}

    def run(batch: int) -> int:
        result = subprocess.run(
            [sys.executable, str(app_file), str(batch)], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return int((tmp_path / f"count-{batch}").read_text())

    assert run(1) == 5
    assert run(2) == 10  # 5 recovered from the changelog + 5 new
    changelog = f"conformance-counter-{run_id}-counts-changelog"
    assert (await topic_config(stack.kafka_bootstrap, changelog))["cleanup.policy"] == "compact"
    written = 10  # one changelog record per increment, all for one key

    deadline = time.monotonic() + 60
    while len(remaining := await read_partition(stack, changelog)) == written and time.monotonic() < deadline:
        await asyncio.sleep(1)
    assert len(remaining) < written, "the changelog was not compacted"
    assert run(3) == 15  # recovered from the compacted changelog


async def test_the_workers_table_changelogs_roll_segments_small_enough_to_be_compacted(stack, worker):
    """The broker compacts closed segments only: the service's changelogs roll at 64 MB or 6 hours, not at
    Kafka's 1 GB default (a changelog would otherwise grow to a gigabyte per partition before any compaction)."""
    from aromatrack.streams.app import CHANGELOG_TOPIC_CONFIG

    for table in WORKER_TABLES:
        config = await topic_config(stack.kafka_bootstrap, f"{stack.app_id}-{table}-changelog")
        assert config["cleanup.policy"] == "compact", table
        assert {name: config[name] for name in CHANGELOG_TOPIC_CONFIG} == CHANGELOG_TOPIC_CONFIG, table


async def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    (resource,) = response.resources
    return {entry[0]: entry[1] for entry in resource[4]}


# Small segments and a low dirty ratio: the broker's cleaner (it looks every second, see local_stack) compacts
# every closed segment within seconds instead of once a 1 GB segment fills.
FAST_COMPACTION = {"segment.ms": "200", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "100"}


async def test_a_compacted_topic_keeps_the_last_value_of_each_key(stack, producer):
    name = f"conformance-compact-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(
            name, num_partitions=1, replication_factor=1,
            topic_configs={"cleanup.policy": "compact", **FAST_COMPACTION},
        )])
    finally:
        await admin.close()
    for round_ in range(20):
        for key in range(5):
            await producer.send_and_wait(name, f"{key}:{round_}".encode(), key=f"k{key}".encode())
    await asyncio.sleep(0.5)
    await producer.send_and_wait(name, b"roll", key=b"roll")  # a record after segment.ms closes the segment

    deadline = time.monotonic() + 60
    while len(records := await read_partition(stack, name)) > 10 and time.monotonic() < deadline:
        await asyncio.sleep(1)
    assert len(records) <= 10, f"not compacted: {len(records)} of 101 records still there"
    last = {record.key: record.value for record in records}
    assert last == {**{f"k{key}".encode(): f"{key}:19".encode() for key in range(5)}, b"roll": b"roll"}


async def test_an_idle_consumer_long_polls_instead_of_spinning(stack, topic):
    """The broker holds an empty fetch for fetch.max.wait.ms, so a worker's idle consumers cost next to no CPU
    (a broker that answers empty fetches at once makes every idle consumer spin)."""
    client = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, group_id=f"idle-{uuid.uuid4().hex[:6]}",
                              auto_offset_reset="latest", fetch_max_wait_ms=500)
    await client.start()
    try:
        await client.getmany(timeout_ms=1000)  # joined and assigned
        cpu_before, wall_before = time.process_time(), time.monotonic()
        while time.monotonic() - wall_before < 4:
            assert await client.getmany(timeout_ms=1000) == {}
        cpu_share = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
    finally:
        await client.stop()
    assert cpu_share < 0.05, f"an idle consumer used {cpu_share:.0%} of a core"


async def _assignment_settles(client: AIOKafkaConsumer, size: int, timeout_s: float = 30.0) -> set[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        await client.getmany(timeout_ms=200)
        if len(client.assignment()) == size:
            return set(client.assignment())
    pytest.fail(f"assignment did not reach {size} partitions: {client.assignment()}")


def group_member(stack, topic_name: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic_name, bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False,
        session_timeout_ms=6000, heartbeat_interval_ms=500,  # 6 s is the broker's minimum session
    )


KILLED_MEMBER = """
import asyncio, sys
from aiokafka import AIOKafkaConsumer
async def main():
    client = AIOKafkaConsumer(sys.argv[2], bootstrap_servers=sys.argv[1], group_id=sys.argv[3],
                              session_timeout_ms=6000, heartbeat_interval_ms=500)
    await client.start()
    while True:
        await client.getmany(timeout_ms=200)
        print(len(client.assignment()), flush=True)
asyncio.run(main())
"""


async def test_a_group_rebalances_as_members_join_leave_and_crash(stack, topic):
    """Partitions spread over a group's members, come back when one leaves, and after a SIGKILLed member's
    session times out: what several workers of one app, and their failover, rest on."""
    group = f"rebalance-{uuid.uuid4().hex[:6]}"
    first = group_member(stack, topic, group)
    await first.start()
    try:
        everything = await _assignment_settles(first, 4)
        second = group_member(stack, topic, group)
        await second.start()
        try:
            mine, theirs = await asyncio.gather(_assignment_settles(first, 2), _assignment_settles(second, 2))
            assert mine | theirs == everything and not mine & theirs
        finally:
            await second.stop()  # leaves the group
        assert await _assignment_settles(first, 4) == everything

        member = await asyncio.create_subprocess_exec(
            sys.executable, "-c", KILLED_MEMBER, stack.kafka_bootstrap, topic, group, stdout=subprocess.PIPE)
        try:
            while (await asyncio.wait_for(member.stdout.readline(), 30)).strip() != b"2":
                pass  # until the member that will crash holds its half
            await _assignment_settles(first, 2)
        finally:
            member.send_signal(signal.SIGKILL)
            await member.wait()
        started = time.monotonic()
        assert await _assignment_settles(first, 4) == everything  # after the dead member's session timeout
        assert time.monotonic() - started < 20
    finally:
        await first.stop()


async def test_the_apps_table_changelogs_are_compacted_topics(stack, worker):
    """faust creates every table's changelog with cleanup.policy=compact, so the broker keeps the last value per
    key and a recovering worker reads that, not every change ever made (the local broker used to keep them all)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        changelogs = [name for name in await admin.list_topics()
                      if name.startswith(f"{stack.app_id}-") and name.endswith("-changelog")]
    finally:
        await admin.close()
    assert {f"{stack.app_id}-{table}-changelog" for table in WORKER_TABLES} <= set(changelogs)
    for changelog in changelogs:
        assert (await topic_config(stack.kafka_bootstrap, changelog))["cleanup.policy"] == "compact", changelog


async def test_the_worker_creates_its_table_changelogs_before_it_starts_with_the_configs_faust_gives_them(stack):
    """`prepare_storage` creates the changelogs before the worker's consumer reads the cluster's metadata: left to
    faust's own start, the clinical history changelog was once missing from that metadata when the group assigned
    partitions, and that table had none until a metadata refresh five minutes later."""
    import dataclasses

    from aromatrack.streams.app import changelog_topics, prepare_storage
    from aromatrack.streams.worker import create_app

    settings = dataclasses.replace(stack, app_id=f"changelogs-{uuid.uuid4().hex[:8]}")
    app = create_app(settings)
    await prepare_storage(settings, app)
    assert set(changelog_topics(app)) == {f"{settings.app_id}-{table}-changelog" for table in WORKER_TABLES}
    for name, configs in changelog_topics(app).items():
        stored = await topic_config(stack.kafka_bootstrap, name)
        assert {key: stored[key] for key in configs} == configs == {
            "cleanup.policy": "compact", "segment.bytes": str(64 * 2**20), "segment.ms": str(6 * 3600 * 1000)}
