"""faust's Kafka consumer with six additions: after a rebalance, a stream partition with no committed offset is read
again from its beginning, so the messages the rebalance dropped are fetched again; table changelog records that
faust's fetch drops as a rebalance begins are fetched again too; after a failed commit, the
consumer takes the group's committed offsets for committed, not the ones it tried; an agent's partition is committed
where its delivery check vouches that every message before is handled (`handled_up_to`), not where faust's record of
acknowledged offsets says; the heartbeats the group accepts are recorded as the worker's session lease
(`fencing.SessionLease`), which its InfluxDB writes check; and the broker is asked to hold a fetch that finds nothing
for FETCH_MAX_WAIT_MS only.

When partitions are revoked, faust clears its agents' incoming queues (messages fetched but not yet handled) and,
once the new assignment is recovered, seeks every partition to the group's committed offset, so that what it cleared
is fetched again. aiokafka's `seek_to_committed` skips a partition that has no committed offset (or 0): nothing of it
committed yet, as on a new topic in a worker's first seconds. Its fetch position stays past the cleared messages.
When later messages come, the agents' delivery check (streams/delivery.py) reads the skipped ones; when none come
(the last messages of a partition, such as the profiles a test sends once), nothing would reveal them: the two-worker
test waited forever for a profile partition to be committed. Seeking such a partition to its first offset fetches
them again, through faust, which then acknowledges and commits them. What was handled before comes again too (at
least once), which the agents already expect of a re-delivery. The table changelogs are left alone: faust positions
those itself when it recovers and follows them.

A fetch in flight when a rebalance stops the flow can come back after the new assignment's recovery has positioned
the table changelogs: faust drops such a fetch and seeks the stream partitions back to their committed offsets, but
a changelog partition has no committed offset, and its position stays past the dropped records. Recovery then waited
for records it would never be given (a health-test worker stayed unready for good after its peer was killed: in CI,
and here in 1 of 10 runs beside four busy-looping processes), or, when later records came, ended without the dropped
ones: a key whose latest value was among them was restored to an older one, or not at all (such a drop came in 5 of 8
runs of a diagnostic build; in those, later records let recovery end). The consumer seeks those partitions back to
the dropped fetch's first record, unless something else has moved them back meanwhile.

faust records the offsets of every commit it tries as committed, also of one that failed: a commit in flight when a
rebalance begins fails ("the group has already rebalanced"), and faust records its offsets after the rebalance has
revoked the partitions and forgotten their offsets. If the partition comes back to this worker with nothing
committed by the group, faust took it for committed up to the failed commit: it did not read it again, and when
aiokafka fetched it again from the start anyway, faust did not commit what it handled, never past the offsets it
thought committed. The group's commit stayed behind for good (a two-worker CI run waited 300 s for a profile
partition; tests/integration/test_failed_commit.py). After a failed commit the consumer asks the group what it holds.

aiokafka keeps no record of its last accepted heartbeat that others can read; the consumer's thread wraps its group
coordinator's heartbeat request to note the send time of each one the coordinator accepts (aiokafka counts a
"rebalance in progress" answer as accepted: the member stays in the group while it rejoins).

Where an agent's partition is committed: faust commits up to the first offset it fetched and has not seen
acknowledged, from a list of acknowledged offsets and ranges it merges at each commit, and that record broke after
rebalances (streams/delivery.py says how: commits that stopped for good, or moved one offset at a time). The agents
with a delivery check know exactly how far they have handled each partition, every message before it included, and
vouch for it once the batch's writes are flushed; for those partitions that position is what is committed, and
faust's record below it is dropped. A revoked partition's position is forgotten with faust's own record of it.

The fetch's hold: FETCH_MAX_WAIT_MS instead of faust's fixed 1.5 s. aiokafka keeps one
fetch in flight per broker and leaves out of it the partitions whose fetched records the worker has not taken yet.
In a bulk import the timeline's partitions often have such records when a fetch goes out, so the fetch asks only for
the idle topics (FIT uploads, profiles), and the broker holds it until its wait runs out: the clinical agent got
nothing for up to 1.5 s at a time while the timeline filled (seen with worker logs and a second consumer reading the
timeline at the same time: 0.7-1.5 s stalls in most one-worker bulk sends).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Mapping

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TransportT

from aromatrack.streams.fencing import SessionLease, StopWhenFenced
from aromatrack.streams.flushing_producer import FlushingProducer

log = logging.getLogger(__name__)

# The longest the broker holds a fetch that finds no new records: the longest a busy partition can wait behind a
# fetch of idle ones. An idle worker asks again this often (aiokafka's default is 500 ms; the Java client's too).
FETCH_MAX_WAIT_MS = 100


class LeaseRecordingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS  # faust passes a fixed 1500; read by the fetcher at start
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        coordinator = getattr(self._consumer, "_coordinator", None)
        if coordinator is None:
            return
        lease: SessionLease = self.app.session_lease
        do_heartbeat = coordinator._do_heartbeat

        async def heartbeat_recording_acceptance() -> bool:
            sent_s = time.monotonic()
            accepted = await do_heartbeat()
            if accepted:
                lease.on_heartbeat_accepted(sent_s)
            return accepted

        coordinator._do_heartbeat = heartbeat_recording_acceptance

    def position_now(self, tp: TopicPartition) -> int | None:
        """The partition's fetch position as the fetcher holds it, without waiting for a valid one (None then, or
        when the partition is not assigned)."""
        subscription = self._ensure_consumer()._subscription.subscription
        if subscription is None or subscription.assignment is None or tp not in subscription.assignment.tps:
            return None
        state = subscription.assignment.state_value(tp)
        return state.position if state.has_valid_position else None

    async def group_committed(self, partitions: list[TP]) -> dict[TP, int | None]:
        """The group's committed offset of each partition (None where it holds none), asked of the broker."""
        consumer = self._ensure_consumer()

        async def ask() -> dict[TP, int | None]:
            return {tp: await consumer.committed(faust_aiokafka.ensure_aiokafka_TP(tp)) for tp in partitions}

        return await self.call_thread(ask)


class RewindingConsumer(faust_aiokafka.Consumer):
    _thread: LeaseRecordingConsumerThread

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return LeaseRecordingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handled: dict[TP, int] = {}  # per agent partition: every message before this offset handled

    def handled_up_to(self, tp: TP, offset: int) -> None:
        """An agent has handled every message of `tp` before `offset`, its writes flushed: commit up to there."""
        tp = faust_aiokafka.ensure_aiokafka_TP(tp)  # as faust's own keys: what the commit hands aiokafka
        if offset > self._handled.get(tp, -1):
            self._handled[tp] = offset

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        vouched = (tp for tp in self._handled if topics is None or tp in topics or tp.topic in topics)
        return iter({*super()._filter_tps_with_pending_acks(topics), *vouched})

    def _new_offset(self, tp: TP) -> int | None:
        handled = self._handled.get(tp)
        if handled is None:
            return super()._new_offset(tp)
        acked = self._acked.get(tp)
        if acked:
            acked[:] = [offset for offset in acked if offset >= handled]
            index = self._acked_index[tp]
            index.difference_update([offset for offset in index if offset < handled])
        gap = self._gap.get(tp)
        if gap:
            gap.chop(0, handled)
        return handled

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        records, active_partitions = await super()._wait_next_records(timeout)
        if records and not self.flow_active:
            await self._fetch_changelog_records_again(records)
        return records, active_partitions

    async def _fetch_changelog_records_again(self, records: Mapping[TopicPartition, list]) -> None:
        """Seek each table changelog partition of a fetch that faust drops back to the fetch's first record, unless
        something else has moved the partition back since (then that seek stands). The position can be past the last
        record by more than one: a transaction's commit marker follows the records under exactly-once."""
        changelogs = self.app.tables.changelog_topics
        again = 0
        for tp, fetched in records.items():
            position = self._thread.position_now(tp)
            if tp.topic in changelogs and fetched and position is not None and position > fetched[-1].offset:
                await self.seek(tp, fetched[0].offset)
                again += len(fetched)
        if again:
            log.info("%d table changelog records fetched as a rebalance began are fetched again", again)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._handled.pop(tp, None)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        changelogs = self.app.tables.changelog_topics
        uncommitted = [
            tp for tp in self.assignment()
            if tp.topic not in changelogs and not self._committed_offset.get(tp)
        ]
        if uncommitted:
            log.info("%d partitions with no committed offset are read again from their first offset", len(uncommitted))
            for tp, offset in (await self.earliest_offsets(*uncommitted)).items():
                await self.seek(tp, offset)

    async def _commit_offsets(self, offsets: Mapping[TP, int], start_new_transaction: bool = True) -> bool:
        did_commit = await super()._commit_offsets(offsets, start_new_transaction=start_new_transaction)
        if not did_commit and offsets:
            try:
                held = await self._thread.group_committed(list(offsets))
            except (KafkaError, ConsumerStoppedError):  # unknown: nothing committed, read again at the next rebalance
                held = {tp: None for tp in offsets}
            self._committed_offset.update({tp: offset or None for tp, offset in held.items()})
            log.info("a commit failed; the group's committed offsets of its %d partitions are used", len(offsets))
        return did_commit


class RewindingTransport(faust_aiokafka.Transport):
    """faust's aiokafka transport with this consumer and the producer of `streams.flushing_producer`."""

    Consumer = RewindingConsumer
    Producer = FlushingProducer


class RewindingApp(faust.App):
    """A faust App whose consumer is `RewindingConsumer` (faust picks a transport by the broker URL's scheme and
    offers no setting for the consumer class), with the session lease that consumer records, and stopped when the
    broker refuses a write of it as fenced (`fencing.StopWhenFenced`)."""

    def __init__(self, id: str, **options) -> None:
        super().__init__(id, **options)
        self.session_lease = SessionLease(self.conf.broker_session_timeout)
        self.sensors.add(StopWhenFenced(self))

    def _new_transport(self) -> TransportT:
        return RewindingTransport(self.conf.broker_consumer, self)
