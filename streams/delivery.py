"""What the agents handle, and the messages faust skipped around a rebalance, read again from the broker.

faust can skip messages when partitions move: on a revocation it clears its agents' queues (messages fetched but not
handled yet) and counts on re-reading them from the group's committed offset once the new assignment is recovered,
but the re-read does not always bring them back. Its fetcher resumes before the seek and keeps delivering what it
had fetched, and a partition with no committed offset is not sought at all (aiokafka's `seek_to_committed` skips
it). Its offset tracking then commits past the skipped messages. The two-worker kill test lost workouts both ways: a
partition's first messages when the second worker joined, and a few in the middle of a partition when the survivor
took over the killed worker's.

So each agent checks what it is given: `DeliveryGaps` remembers, for every partition this worker holds, the next
offset the agent has to handle, and when a batch starts past it or has holes, reads the skipped messages from the
broker itself and puts them in front. The next offset is kept in the `delivered_offsets` table too, written once a
batch is handled, so a worker that takes a partition over starts where the last one stopped if that is before the
committed offset: faust may have committed past messages it skipped (it treats a jump in the offsets it fetched as
a gap with nothing in it) before the worker was killed. A partition never handled starts at the group's committed
offset, else at its first. Messages handled twice (faust re-reading some after all, a batch handled but not yet
recorded) are what the agents already expect of a re-delivery: repeated event and workout ids are skipped.

Where the consumer commits an agent's partition is what this check vouches for, not faust's own record of the
messages it acknowledged (`vouch`, after the batch's writes are flushed: `RewindingConsumer.handled_up_to`). faust
commits a partition only up to the first offset it fetched and did not see acknowledged, and its record of them
broke in ways the agents cannot mend: a message it fetched and then dropped held the group's commit there for good
(a multi-host run's timeline partition stayed at 518 of 2,825 while its agent went on handling), and after a
rebalance that left a partition where it was, the same offsets could be acknowledged twice, so each commit moved one
offset on (seen, 282 to 289 in six commits) or none (a CI run's timeline partition stayed 2,046 behind for five
minutes while its agent went on; in the same stall here, the transaction left open timed out and was fenced).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, MutableMapping

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from aromatrack.streams.admin import committed_offsets, records_until

log = logging.getLogger(__name__)

# One fetch's wait for records, and the longest a read of skipped messages may take (streams' `DeliveryGaps._read`).
READ_TIMEOUT_MS = 2000
READ_DEADLINE_S = 60.0
COMMITTED_ATTEMPTS = 10


@dataclass(frozen=True)
class Delivered:
    """One message as an agent handles it, from faust or read again by `DeliveryGaps`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Any  # faust's mapping or aiokafka's (name, bytes) pairs: `schemas.progress.header` reads both

    @classmethod
    def of(cls, event: Any) -> "Delivered":
        """From a faust event."""
        message = event.message
        return cls(message.topic, message.partition, message.offset, event.key, event.value, event.headers)


# Tells the consumer that every message of a partition before an offset is handled, its writes flushed.
Vouch = Callable[[TopicPartition, int], None]


KEY_SEPARATOR = b"\x1f"


class PartitionKeyedTable(faust.Table):
    """A table of per-partition state (`delivered_offsets`: per agent and input partition, the next offset the
    agent has to handle): a key ends in its partition's number, after the last KEY_SEPARATOR if it has one, and
    goes to that partition of the changelog, which the worker holding that partition of the input topics holds
    (faust co-partitions tables with topics of the same partition count)."""

    def partition_for_key(self, key: bytes) -> int:
        return int(key.rsplit(KEY_SEPARATOR, 1)[-1])


def offsets_key(agent: str, tp: TopicPartition) -> bytes:
    return KEY_SEPARATOR.join((agent.encode(), tp.topic.encode(), str(tp.partition).encode()))


def skipped_ranges(expected: int, offsets: Iterable[int]) -> list[tuple[int, int]]:
    """The offset ranges [start, end) missing from `offsets` between `expected` and the last of them."""
    ranges = []
    for offset in sorted(offsets):
        if offset > expected:
            ranges.append((expected, offset))
        expected = max(expected, offset + 1)
    return ranges


class DeliveryGaps:
    """One agent's expected offsets per partition and the reader of what was skipped (see the module's docstring).
    `complete` before handling a batch, `record` after it (its table write joins the batch's), `vouch` once the
    batch's writes are flushed."""

    def __init__(
        self, bootstrap: str, group_id: str, agent: str, table: MutableMapping[bytes, bytes],
        held: Callable[[], Iterable[Any]], vouch: Vouch | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.agent = agent
        self.table = table
        self.held = held  # the partitions this worker holds now (its consumer's assignment)
        self._vouch = vouch  # the consumer's: where it commits the partitions
        self.expected: dict[TopicPartition, int] = {}
        self._handling: list[Delivered] = []  # the batch `complete` gave, until `record`
        self._recorded: set[TopicPartition] = set()  # the partitions `record` moved on, until `vouch`
        self._assignments = 0  # assignments seen; a batch begun before the last one is not vouched for
        self._batch_begun_in = 0
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None

    def on_assigned(self, assigned: Iterable[Any]) -> None:
        """After a rebalance: keep what this worker still holds (its next offset is exact), forget the rest."""
        held = {TopicPartition(tp.topic, tp.partition) for tp in assigned}
        self._assignments += 1
        self.expected = {tp: offset for tp, offset in self.expected.items() if tp in held}

    async def complete(self, batch: list[Delivered]) -> list[Delivered]:
        """The batch, with any skipped messages of the partitions this worker holds in front: those before its
        first message of a partition and those missing between its messages (faust drops some from the middle
        of its queue too)."""
        held_now = self._held()
        given: dict[TopicPartition, set[int]] = {}
        for message in batch:
            given.setdefault(TopicPartition(message.topic, message.partition), set()).add(message.offset)
        unknown = [tp for tp in given if tp in held_now and tp not in self.expected]
        if unknown:
            self.expected.update(await self._starts(unknown))
        missing: list[Delivered] = []
        for tp, offsets in given.items():
            if tp not in held_now or tp not in self.expected:
                continue
            for start, end in skipped_ranges(self.expected[tp], offsets):
                found = await self._read(tp, start, end)
                if found:
                    log.warning("%s[%d]: %d messages skipped by the consumer were read again", tp.topic, tp.partition,
                                len(found))
                else:  # a transaction's commit marker takes an offset (exactly once: one per batch); nothing skipped
                    log.debug("%s[%d]: offsets %d-%d hold no message", tp.topic, tp.partition, start, end - 1)
                missing += found
        self._handling = [*missing, *batch]
        self._recorded = set()
        self._batch_begun_in = self._assignments
        return self._handling

    def record(self) -> None:
        """Once the batch `complete` gave is handled: the next offsets of its partitions, here and in the table for
        whoever holds them next (not before: a batch whose handling failed is not vouched for). A partition a
        rebalance took away meanwhile is left alone, also when it came back (where it starts is then the table's
        or the group's, `_starts`)."""
        held_now = self._held()
        for message in self._handling:
            tp = TopicPartition(message.topic, message.partition)
            if tp in held_now and tp in self.expected:
                self.expected[tp] = max(self.expected[tp], message.offset + 1)
                self._recorded.add(tp)
        for tp in self._recorded:
            self.table[offsets_key(self.agent, tp)] = str(self.expected[tp]).encode()
        self._handling = []

    def vouch(self) -> None:
        """Once the recorded batch's writes are flushed: the consumer may commit its partitions up to their next
        offsets, every message before them handled. Not when a rebalance came after the batch began: faust may have
        stopped the producer some of its writes went to (the next batch vouches for the partitions it still holds).
        """
        if self._vouch is not None and self._batch_begun_in == self._assignments:
            for tp in self._recorded & self._held():
                self._vouch(tp, self.expected[tp])
        self._recorded = set()

    def _held(self) -> set[TopicPartition]:
        return {TopicPartition(tp.topic, tp.partition) for tp in self.held()}

    async def _starts(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where the agent starts on partitions newly held: where the last holder's agent stopped or the group's
        committed offset, whichever is earlier (a committed offset past where the agent stopped skipped messages;
        one before it means the last holder's table writes may not all have reached the changelog, so its batches
        since are handled again), else the partition's first offset."""
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await self._admin.start()
        committed = await committed_offsets(self._admin, self.group_id, partitions, attempts=COMMITTED_ATTEMPTS)
        starts = {}
        for tp in partitions:
            known = [int(stored)] if (stored := self.table.get(offsets_key(self.agent, tp))) else []
            if tp in committed:
                known.append(committed[tp])
            if known:
                starts[tp] = min(known)
        uncommitted = [tp for tp in partitions if tp not in starts]
        if uncommitted:
            reader = await self._started_reader()
            starts.update(await reader.beginning_offsets(uncommitted))
        return starts

    async def _read(self, tp: TopicPartition, start: int, end: int) -> list[Delivered]:
        """The messages of `tp` from `start` up to `end` (exclusive), read directly from the broker.

        Every offset below `end` is decided (a message or a transaction's marker, committed or aborted): the agent
        was given `end` or later, reading committed records only. So the read goes on until the reader's position
        reaches `end`, and a fetch that brings nothing is a slow broker, not an empty range: taking it for one
        (a single 2 s wait did) dropped the skipped messages for good when a loaded worker took partitions over.
        Records deleted by retention move the reader to the log's first offset. Past READ_DEADLINE_S,
        `admin.NotReadInTime`: the batch fails and is delivered again, instead of going on without them."""
        reader = await self._started_reader()
        reader.assign([tp])
        reader.seek(tp, start)
        records = await records_until(reader, {tp: end}, READ_TIMEOUT_MS, READ_DEADLINE_S)
        reader.pause(tp)  # no fetching ahead in the background until the next gap
        return [Delivered(tp.topic, tp.partition, record.offset, record.key, record.value, record.headers)
                for record in records]

    async def close(self) -> None:
        """Stop the admin client and the reader, those started."""
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    async def _started_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            # Committed records only, as the agents read them (a fenced worker's aborted writes: streams/fencing.py).
            # From the log's first offset when the skipped ones were deleted by retention (not from its end).
            self._reader = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                            isolation_level="read_committed", auto_offset_reset="earliest")
            await self._reader.start()
        return self._reader
