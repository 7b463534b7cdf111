"""The worker's consumer and app: an agent's partition is committed where the agent's delivery check vouches that
every message before is handled, whatever faust's own record of acknowledged offsets holds; table changelog records
of a fetch that faust drops as a rebalance begins are fetched again; a write refused as fenced stops the worker."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError, ProducerFenced
from faust.transport import consumer as faust_consumer
from faust.types import TP

from aromatrack.streams.fencing import OwnershipLost, StopWhenFenced
from aromatrack.streams.rewinding_consumer import RewindingApp, RewindingConsumer

PARTITION = TP("aromatrack.v1.timeline", 3)


@pytest.fixture
def consumer() -> RewindingConsumer:
    """The worker's consumer, not started (no broker is reached)."""
    return RewindingApp("test-consumer", broker="kafka://127.0.0.1:1").consumer


def acknowledged(consumer: RewindingConsumer, committed: int, offsets: list[int]) -> None:
    """faust's record as a multi-host run left it after a rebalance: an offset acknowledged twice."""
    consumer._committed_offset[PARTITION] = committed
    consumer._acked[PARTITION] = sorted(offsets)
    consumer._acked_index[PARTITION] = set(offsets)


def test_fausts_record_moves_one_offset_per_commit_or_none_and_the_vouched_position_is_committed(consumer):
    acknowledged(consumer, 288, [287, 288, 288, *range(289, 472)])
    assert consumer._new_offset(PARTITION) == 289  # faust's: one offset on, 183 handled behind it

    acknowledged(consumer, 288, list(range(300, 472)))  # 289-299 never acknowledged (fetched, then dropped)
    assert consumer._new_offset(PARTITION) is None  # faust's: never again

    consumer.handled_up_to(PARTITION, 472)
    assert consumer._new_offset(PARTITION) == 472
    assert consumer._acked[PARTITION] == [] and not consumer._acked_index[PARTITION]  # its record below is dropped
    assert PARTITION in set(consumer._filter_tps_with_pending_acks())


def test_a_vouched_position_never_moves_back_and_faust_keeps_what_was_acknowledged_past_it(consumer):
    consumer.handled_up_to(PARTITION, 500)
    consumer.handled_up_to(PARTITION, 480)  # an older batch's, vouched late
    acknowledged(consumer, 450, [499, 500, 501])
    assert consumer._new_offset(PARTITION) == 500
    assert consumer._acked[PARTITION] == [500, 501]


def test_a_partition_only_vouched_for_is_committed_under_the_key_type_aiokafka_requires(consumer):
    """aiokafka's transactional commit refuses faust's TP ("Key should be TopicPartition instance"): a worker
    crashed at its first commit."""
    consumer.handled_up_to(PARTITION, 7)
    (tp,) = consumer._filter_tps_with_pending_acks()
    assert type(tp) is TopicPartition and tp == PARTITION


def test_a_partition_no_agent_vouches_for_is_committed_as_faust_does(consumer):
    other = TP("aromatrack.v1.summary", 0)
    consumer._committed_offset[other] = 10
    consumer._acked[other] = [10, 11, 12]
    assert consumer._new_offset(other) == 13


class FetcherThread:
    """The consumer thread's fetch positions and seeks, as the consumer sees them."""

    def __init__(self, positions: dict[TopicPartition, int]) -> None:
        self.positions = positions
        self.seeks: dict[TopicPartition, int] = {}

    def position_now(self, tp: TopicPartition) -> int | None:
        return self.positions.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = self.positions[tp] = offset


def fetched(tp: TopicPartition, first: int, last: int) -> list:
    return [SimpleNamespace(topic=tp.topic, partition=tp.partition, offset=offset) for offset in range(first, last + 1)]


async def test_table_changelog_records_of_a_fetch_faust_drops_are_fetched_again_unless_moved_since(monkeypatch):
    """A fetch that comes back while a rebalance has stopped the flow is dropped by faust (its `getmany`); a
    changelog partition then stayed past the dropped records, and a recovering worker waited for them for good."""
    app = RewindingApp("test-refetch", broker="kafka://127.0.0.1:1")
    app.Table("histories")
    consumer = app.consumer
    changelog = TopicPartition("test-refetch-histories-changelog", 2)
    committed = TopicPartition("test-refetch-histories-changelog", 1)  # a transaction's commit marker after them
    moved = TopicPartition("test-refetch-histories-changelog", 3)  # recovery seeked it after the fetch came back
    stream = TopicPartition(PARTITION.topic, PARTITION.partition)  # faust seeks it to its committed offset itself
    records = {changelog: fetched(changelog, 0, 8), committed: fetched(committed, 3, 5), moved: fetched(moved, 4, 6),
               stream: fetched(stream, 10, 12)}
    thread = FetcherThread({changelog: 9, committed: 7, moved: 0, stream: 13})
    consumer._thread = thread

    async def fetch(self, timeout: float):
        return records, set(records)

    monkeypatch.setattr(faust_consumer.Consumer, "_wait_next_records", fetch)
    consumer.flow_active = True
    assert await consumer._wait_next_records(1.0) == (records, set(records))
    assert thread.seeks == {}  # faust hands the records on: nothing dropped

    consumer.stop_flow()
    assert await consumer._wait_next_records(1.0) == (records, set(records))
    assert thread.seeks == {changelog: 0, committed: 3}


async def test_a_write_refused_as_fenced_stops_the_worker_and_other_send_errors_do_not():
    """faust logs a refused write and goes on; a worker whose transaction timed out went on for minutes."""
    app = RewindingApp("test-fenced", broker="kafka://127.0.0.1:1")
    sensor = next(sensor for sensor in app.sensors if isinstance(sensor, StopWhenFenced))
    sensor.on_send_error(None, KafkaTimeoutError(), None)
    await asyncio.sleep(0)
    assert not app._crashed.is_set()
    sensor.on_send_error(None, ProducerFenced(), None)
    sensor.on_send_error(None, ProducerFenced(), None)  # every later write of the partition is refused too
    await sensor._stopping
    assert app._crashed.is_set() and isinstance(app.crash_reason, OwnershipLost)
