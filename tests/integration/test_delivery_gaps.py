"""DeliveryGaps against the real broker: what an agent was not given is read again and put in front of its batch."""

from __future__ import annotations

import uuid
from typing import Iterable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from aromatrack.streams import delivery
from aromatrack.streams.delivery import Delivered, DeliveryGaps, offsets_key

from .conftest import new_topic

MESSAGES = 30


@pytest.fixture
async def partition(stack) -> TopicPartition:
    """Partition 0 of a new topic holding MESSAGES messages, the value of each its own offset."""
    name = await new_topic(stack, "gaps", partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for offset in range(MESSAGES):
            await producer.send_and_wait(name, str(offset).encode(), key=b"k", partition=0, headers=[("n", b"1")])
    finally:
        await producer.stop()
    return TopicPartition(name, 0)


def batch(tp: TopicPartition, offsets: Iterable[int]) -> list[Delivered]:
    return [Delivered(tp.topic, tp.partition, offset, b"k", str(offset).encode(), ()) for offset in offsets]


def offsets(messages: list[Delivered]) -> list[int]:
    assert all(message.value == str(message.offset).encode() for message in messages)
    return [message.offset for message in messages]


async def commit(stack, group: str, tp: TopicPartition, offset: int) -> None:
    client = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, group_id=group, enable_auto_commit=False)
    await client.start()
    try:
        client.assign([tp])
        await client.commit({tp: OffsetAndMetadata(offset, "")})
    finally:
        await client.stop()


async def test_a_new_partition_starts_at_its_first_offset_and_a_gap_inside_is_read_again(stack, partition):
    vouched: list[int] = []

    def vouch(tp: TopicPartition, offset: int) -> None:
        assert tp == partition
        vouched.append(offset)

    gaps = DeliveryGaps(stack.kafka_bootstrap, f"group-{uuid.uuid4().hex[:8]}", "agent", {}, held=lambda: {partition},
                        vouch=vouch)

    async def handled(offsets_given: Iterable[int]) -> list[int]:
        given = offsets(await gaps.complete(batch(partition, offsets_given)))
        gaps.record()
        gaps.vouch()
        return given

    # Nothing committed: the agent should have started at 0, so 0-4 come in front of a batch that starts at 5.
    assert await handled(range(5, 10)) == list(range(0, 10))
    assert await handled(range(10, 12)) == [10, 11]
    # 12-14 skipped: read again; a batch that repeats what was handled gets nothing added.
    assert await handled(range(15, 18)) == list(range(12, 18))
    assert await handled(range(16, 20)) == list(range(16, 20))
    # The consumer is told, batch by batch, that every message before the next offset is handled: where it commits.
    assert vouched == [10, 12, 18, 20]
    # A batch whose handling failed (no `record`) is not vouched for: the next batch gets it in front again, and
    # the position moves on only with the batch that was handled.
    assert offsets(await gaps.complete(batch(partition, [20, 22]))) == [21, 20, 22]
    gaps.vouch()
    assert vouched == [10, 12, 18, 20]
    assert sorted(await handled(range(23, 25))) == list(range(20, 25))
    assert vouched[-1] == 25
    # Messages missing between those of a batch, and the last messages of the partition.
    assert sorted(await handled([25, 26, 28])) == [25, 26, 27, 28]
    assert await handled(range(29, 30)) == [29]
    assert vouched[-1] == 30


async def test_a_batch_that_a_rebalance_came_into_is_not_vouched_for(stack, partition):
    """The rebalance may have stopped the producer some of the batch's writes went to; a partition it took away
    is not moved on, also when it came back (the table or the group says where it starts again)."""
    vouched: list[int] = []
    table: dict[bytes, bytes] = {}
    gaps = DeliveryGaps(stack.kafka_bootstrap, f"group-{uuid.uuid4().hex[:8]}", "agent", table,
                        held=lambda: {partition}, vouch=lambda tp, offset: vouched.append(offset))
    await gaps.complete(batch(partition, range(0, 5)))
    gaps.record()
    gaps.vouch()
    assert vouched == [5]
    await gaps.complete(batch(partition, range(5, 8)))
    gaps.on_assigned({partition})  # kept through the rebalance
    gaps.record()
    gaps.vouch()
    assert vouched == [5] and table[offsets_key("agent", partition)] == b"8"
    assert offsets(await gaps.complete(batch(partition, range(8, 10)))) == [8, 9]
    gaps.record()
    gaps.vouch()
    assert vouched == [5, 10]
    await gaps.complete(batch(partition, range(10, 12)))
    gaps.on_assigned(set())  # taken away, then back
    gaps.on_assigned({partition})
    gaps.record()
    gaps.vouch()
    assert vouched == [5, 10] and table[offsets_key("agent", partition)] == b"10"
    await gaps.close()


async def test_a_partition_newly_held_starts_at_the_committed_offset_and_one_not_held_is_left_alone(stack, partition):
    group = f"group-{uuid.uuid4().hex[:8]}"
    held: set[TopicPartition] = set()
    table: dict[bytes, bytes] = {}
    gaps = DeliveryGaps(stack.kafka_bootstrap, group, "agent", table, held=lambda: held)
    assert offsets(await gaps.complete(batch(partition, range(3, 6)))) == [3, 4, 5]  # left from before a rebalance
    gaps.record()
    await commit(stack, group, partition, 12)  # another worker handled the partition up to 11
    held.add(partition)
    gaps.on_assigned({partition})
    assert offsets(await gaps.complete(batch(partition, range(15, 17)))) == list(range(12, 17))
    # Moved away and back: where the last holder stopped counts, not what this worker saw before.
    gaps.record()
    held.clear()
    gaps.on_assigned(set())
    table[offsets_key("agent", partition)] = b"25"  # the other worker handled up to 24, and committed that
    await commit(stack, group, partition, 25)
    held.add(partition)
    gaps.on_assigned({partition})
    assert offsets(await gaps.complete(batch(partition, range(25, 27)))) == [25, 26]


async def test_a_partition_taken_over_starts_where_the_last_holder_stopped_when_the_group_committed_past_it(
    stack, partition
):
    group = f"group-{uuid.uuid4().hex[:8]}"
    table: dict[bytes, bytes] = {}
    last_holder = DeliveryGaps(stack.kafka_bootstrap, group, "agent", table, held=lambda: {partition})
    await last_holder.complete(batch(partition, range(0, 8)))
    last_holder.record()
    assert table == {offsets_key("agent", partition): b"8"}
    await commit(stack, group, partition, 12)  # committed past 8-11, which its agent never handled
    taking_over = DeliveryGaps(stack.kafka_bootstrap, group, "agent", table, held=lambda: {partition})
    assert offsets(await taking_over.complete(batch(partition, range(12, 14)))) == list(range(8, 14))
    # The other way round (the group committed less than the table says): the committed offset, batches again.
    await commit(stack, group, partition, 5)
    again = DeliveryGaps(stack.kafka_bootstrap, group, "agent", table, held=lambda: {partition})
    assert offsets(await again.complete(batch(partition, range(5, 7)))) == [5, 6]


async def test_an_offset_taken_by_a_transactions_commit_marker_is_read_but_not_reported_as_skipped(stack, caplog):
    """Exactly once, every batch's transaction leaves its commit marker's offset between two messages."""
    name = await new_topic(stack, "gaps-tx", partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        for value in (b"0", b"2"):  # offsets 0 and 2; each transaction's commit marker takes the offset after it
            async with producer.transaction():
                await producer.send_and_wait(name, value, key=b"k", partition=0)
    finally:
        await producer.stop()
    tp = TopicPartition(name, 0)
    gaps = DeliveryGaps(stack.kafka_bootstrap, f"group-{uuid.uuid4().hex[:8]}", "agent", {}, held=lambda: {tp})
    assert offsets(await gaps.complete(batch(tp, [0]))) == [0]
    gaps.record()
    with caplog.at_level("WARNING", logger="aromatrack.streams.delivery"):
        assert offsets(await gaps.complete(batch(tp, [2]))) == [2]
    assert caplog.records == []


async def test_skipped_messages_are_read_whole_when_a_fetch_is_slower_than_one_wait(stack, partition, monkeypatch):
    """A loaded worker's reader can wait out a fetch before the broker answers: that is not an empty range. Taken
    for one, the skipped messages were acknowledged unread and lost (the multi-host test's takeover, a lab and a
    profile missing). A 1 ms wait makes nearly every fetch come back empty first."""
    monkeypatch.setattr(delivery, "READ_TIMEOUT_MS", 1)
    gaps = DeliveryGaps(stack.kafka_bootstrap, f"group-{uuid.uuid4().hex[:8]}", "agent", {}, held=lambda: {partition})
    try:
        assert offsets(await gaps.complete(batch(partition, [MESSAGES - 1]))) == list(range(MESSAGES))
    finally:
        await gaps.close()
