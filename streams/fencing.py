"""Fencing: a worker that has lost a partition (cut off from the group, its partitions given to another worker)
must not write that partition's state or derived series after the new owner has.

Everything here acts only under exactly-once processing (`AROMATRACK_PROCESSING_GUARANTEE=exactly_once`, opt-in:
README "Several hosts" says what still diverges and why it is not the default); at least once, the workers run as
faust's defaults make them.

Kafka: with `processing_guarantee="exactly_once"` faust gives
each partition number its own transactional producer, `transactional.id` = `<app id>-<topic group>-<partition>`,
shared by every topic of that partition (the agents' inputs, the timeline, the table changelogs), and commits the
input offsets inside the transaction. A new owner's producer for the partition bumps the id's epoch, which aborts
the old owner's open transaction and refuses its later writes; the workers read with `read_committed`, so no
one recovers table state from, or acts on, a fenced writer's records. Writes that faust's own sends do not put
in a transaction go through `send` here: the alerts topic is not one the app consumes, and faust sends to such
a topic with its plain producer.

What a transaction holds is what was sent on that partition's producer since its last commit, and faust commits
when offsets of the partition advance. The agents hand their table writes (which faust only queues) to the
producers before their events are acknowledged (`flush_writes`), so a commit of offsets carries what those
events wrote. The writes of timers (the clinical agent's clock releases) join the open transaction and are
committed with the next one, at the latest one heartbeat later (every stage reports progress on every timeline
partition each `HEARTBEAT_S`); a release's alert points wait for its commit (`commit_now`). Not in the
transactions: the progress markers and dead letters (faust's plain producer) and the stateless ingest path.
A write the broker refuses as fenced stops the worker (`StopWhenFenced`), as a fenced commit does in faust.

InfluxDB cannot fence: a point's last write wins, whoever sent it. So a worker writes a partition's derived
points (loads, trends, alerts; `write_owned`) only while it can be sure no other worker owns the partition yet:
- the group gives a member's partitions to another only a session timeout after the last heartbeat it accepted
  from it, so this worker's ownership lasts at least until the send time of its last accepted heartbeat plus the
  session timeout (`SessionLease`, recorded by the consumer: streams/rewinding_consumer.py);
- the writer's connections deliver a request's bytes within `unacknowledged_limit_s` of sending them, or never,
  and open within as long (`influx.bounded_flight_transport`): a request abandoned in a cut (timed out, or its
  worker stopped) is not delivered when the link comes back. A cut-off worker's write did exactly that in the
  multi-host test, 20 s after the cut, over the new owner's points;
- every attempt of a write starts only while the lease covers its whole flight (`REQUEST_FLIGHT_HEARTBEATS`
  heartbeat intervals: opening, delivery, and a margin for the server and this event loop), waiting for the next
  heartbeat if it does not; once the lease has run out the worker stops (fail-stop, `OwnershipLost`). It can no
  longer tell whether the points it derived are still its to write, and the events behind them are processed
  again from the last committed transaction by whoever owns the partition next (its supervisor restarts it).
  A write that does not complete within the session timeout less two heartbeat intervals stops it too.
This also covers a worker that still reaches InfluxDB but not the broker: its heartbeats fail, its lease runs
out, and it writes nothing after that.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Awaitable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced
from faust import Sensor
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery

from aromatrack.schemas import topics
from aromatrack.schemas.series import Point
from aromatrack.streams.influx import write_storable

log = logging.getLogger(__name__)


def faust_settings(processing_guarantee: str) -> dict[str, Any]:
    """The faust app's settings for the guarantee. Exactly once needs two repairs of faust 0.15.3 besides the
    guarantee itself:
    - no standby replicas: faust stops the transactional producers of revoked partitions only if they are not
      now this worker's standbys (`TransactionManager._tps_to_active_tpgs`), so with a standby a worker that
      handed a partition over kept its producer, was fenced by the new owner, and on taking the partition back
      (after a cut) went on with the fenced producer: every send of the partition failed (ProducerFenced, then
      IllegalOperation). Without standbys a worker that takes a partition over recovers its tables from the
      changelogs, committed records only;
    - `CommittedRecovery`: faust reads the changelogs' ends as the consumer's last stable offsets, which are
      unknown (-1) until the partition has been fetched, so recovery took every changelog for empty and a worker
      that took a partition over started with no state for it."""
    if processing_guarantee != "exactly_once":
        return {"processing_guarantee": processing_guarantee}
    return {"processing_guarantee": processing_guarantee, "table_standby_replicas": 0,
            "TableManager": CommittedTableManager}


class CommittedRecovery(Recovery):
    """faust's table recovery, reading how far each changelog goes as the broker answers a read-committed
    ListOffsets request: the last stable offset (the end of the committed records)."""

    async def _build_highwaters(self, consumer, tps, destination, title: str) -> None:
        if not tps:
            return await super()._build_highwaters(consumer, tps, destination, title)
        bootstrap = ",".join(f"{url.host}:{url.port or 9092}" for url in self.app.conf.broker)
        probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                 enable_auto_commit=False)
        await probe.start()
        try:
            ends = await probe.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        finally:
            await probe.stop()
        # As faust's own: the offset of the last record, one before the end.
        highwaters = {tp: ends[TopicPartition(tp.topic, tp.partition)] - 1 for tp in tps}
        self.log.info("Highwater for %s changelog partitions (committed):\n%s", title,
                      self._highwater_logtable(highwaters, title=title))
        destination.clear()
        destination.update(highwaters)


class CommittedTableManager(TableManager):
    """faust's table manager with `CommittedRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = CommittedRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class OwnershipLost(RuntimeError):
    """A worker could not write a partition's derived points while sure it still owned the partition."""


# How long a request to InfluxDB may be in flight, in heartbeat intervals: half of one to open its connection,
# half to deliver its bytes (the connections' unacknowledged limit), and one for the server to apply it and for
# this worker's event loop between the lease check and the send.
UNACKNOWLEDGED_HEARTBEATS = 0.5
REQUEST_FLIGHT_HEARTBEATS = 2 * UNACKNOWLEDGED_HEARTBEATS + 1.0
# How often a write waiting for a heartbeat to renew the lease looks again.
LEASE_POLL_S = 0.05


@dataclass
class SessionLease:
    """Until when this worker is sure to be a member of its consumer group, holding what it was assigned: the
    send time of the last heartbeat the group coordinator accepted, plus the session timeout (monotonic
    seconds). The consumer's thread records heartbeats; the event loop's writes read the lease."""

    session_timeout_s: float
    accepted_heartbeat_sent_s: float | None = None

    def on_heartbeat_accepted(self, sent_s: float) -> None:
        if self.accepted_heartbeat_sent_s is None or sent_s > self.accepted_heartbeat_sent_s:
            self.accepted_heartbeat_sent_s = sent_s

    def expires_s(self) -> float | None:
        """When the lease runs out (None: no heartbeat accepted yet)."""
        if self.accepted_heartbeat_sent_s is None:
            return None
        return self.accepted_heartbeat_sent_s + self.session_timeout_s

    def covers(self, until_s: float) -> bool:
        expires = self.expires_s()
        return expires is not None and until_s < expires

    def has_run_out(self, now_s: float) -> bool:
        expires = self.expires_s()
        return expires is not None and now_s >= expires


def unacknowledged_limit_s(app) -> float:
    """How long the worker's InfluxDB connections may leave sent bytes unacknowledged (`influx.bounded_flight_transport`)."""
    return UNACKNOWLEDGED_HEARTBEATS * app.conf.broker_heartbeat_interval


async def await_lease(app) -> None:
    """Return once the worker's session lease covers a request's whole flight from now; stop the worker
    (OwnershipLost) once the lease has run out. Before the group's first accepted heartbeat, wait for it. Not
    processing exactly once, return at once."""
    if not app.in_transaction:
        return
    lease: SessionLease = app.session_lease
    flight_s = REQUEST_FLIGHT_HEARTBEATS * app.conf.broker_heartbeat_interval
    while not lease.covers(time.monotonic() + flight_s):
        if lease.has_run_out(time.monotonic()):
            await _stop(app, OwnershipLost("no heartbeat accepted by the group within the session timeout: the "
                                           "partitions may have another owner by now"))
        await asyncio.sleep(LEASE_POLL_S)


def transactional_id(app, partition: int) -> str | None:
    """The transactional id faust gives the partition's producer (None when not processing exactly once)."""
    if not app.in_transaction:
        return None
    # faust's assignor groups the topics it consumes by partition count; the athlete-keyed ones (the timeline,
    # the agents' inputs, the changelogs: all topics.PARTITIONS wide) form one group, and faust commits their
    # partition p's offsets with this id.
    return f"{app.conf.id}-{app.assignor.group_for_topic(topics.TIMELINE_TOPIC)}-{partition}"


async def send(app, topic: str, key: bytes | None, value: bytes, partition: int,
               headers: dict[str, bytes] | None = None) -> Awaitable:
    """Send in the partition's transaction (exactly once), else as faust's producer does; returns the delivery."""
    return await app.producer.send(topic, key, value, partition, None, headers,
                                   transactional_id=transactional_id(app, partition))


async def flush_writes(app) -> None:
    """Hand the table writes faust has buffered (a table's `__setitem__` only queues its changelog record) to the
    partitions' transactional producers, and wait until the broker has them: called by an agent before the events
    behind them are acknowledged, so that faust's next commit of their offsets carries them in the same
    transaction (faust's own commit flushes its buffer only when not processing exactly once)."""
    if app.in_transaction:
        await app.producer.flush()


async def commit_now(app, partitions: set[int]) -> None:
    """Commit the partitions' open transactions now, offsets aside (faust commits those with the next ones), and
    open new ones: for writes to InfluxDB that no later write overwrites (an alert's point), which must follow
    the Kafka writes they mirror only once those are committed. A fenced worker's commit fails and the worker
    stops (OwnershipLost) before it writes. Committing early only moves the writes so far out of the batch's
    transaction: after a crash they are made again, as at-least-once delivery would, and every consumer of
    them deduplicates."""
    if not app.in_transaction or not partitions:
        return
    await flush_writes(app)
    producer = app.producer  # faust's transport producer: its per-id producers and locks (faust 0.15.3)
    for partition in sorted(partitions):
        transactional_id_ = transactional_id(app, partition)
        async with producer._trn_locks[transactional_id_]:  # faust's own commits take the same lock
            transaction = producer._transaction_producers.get(transactional_id_)
            try:
                if transaction is None:
                    raise KafkaError(f"no transactional producer for partition {partition}")
                await within_ownership(app, transaction.commit_transaction())
                await transaction.begin_transaction()
            except KafkaError as exc:
                await _stop(app, OwnershipLost(f"partition {partition}'s transaction could not be committed "
                                               f"({type(exc).__name__}): it may have another owner"))


def owned_partitions(app) -> set[int]:
    return {tp.partition for tp in app.assignor.assigned_actives()}


async def write_owned(table, store, points: Iterable[Point]) -> int:
    """Write the points derived from an athlete-keyed table's state, of the partitions this worker owns (the
    table's partition of their `athlete_id` tag); points of a partition no longer assigned here are dropped (its
    new owner writes them). OwnershipLost, and the worker stops, when the write does not complete in time
    (`within_ownership`). Points InfluxDB refuses are left out and counted in the log (`write_storable`): they
    are derived (trends, loads, alerts' marks), their record is in the tables and on the alerts topic, and a
    bulk import older than the database's retention policy stopped the clinical agent at every restart.
    Returns how many points were written."""
    app = table.app
    kept = list(points)
    if app.in_transaction:
        by_partition: dict[int, list[Point]] = defaultdict(list)
        for point in kept:
            by_partition[table.partition_for_key(point.tags["athlete_id"].encode())].append(point)
        owned = owned_partitions(app)
        kept = [point for partition, group in by_partition.items() if partition in owned for point in group]
        dropped = sum(len(group) for partition, group in by_partition.items() if partition not in owned)
        if dropped:
            log.warning("%d derived points of partitions no longer assigned here not written", dropped)
        refused = await within_ownership(app, write_storable(
            lambda group: store.write(group, before_attempt=lambda: await_lease(app)), kept))
    else:
        refused = await write_storable(store.write, kept)
    if refused:
        log.warning("%d derived points refused by InfluxDB were not written", refused)
    return len(kept) - refused


async def after_lease(app, request: Awaitable):
    """`request` (one attempt: a query, a delete), started once the session lease covers its flight."""
    await await_lease(app)
    return await request


async def within_ownership(app, write: Awaitable):
    """Await a write for at most the session timeout less two heartbeat intervals (the group hands a
    silent worker's partitions to another a session timeout after its last heartbeat, and a healthy worker's last
    heartbeat is at most one interval old); past that, stop the worker (OwnershipLost). At least once, await it
    as long as it retries (nothing would process its events again)."""
    if not app.in_transaction:
        return await write
    window_s = app.conf.broker_session_timeout - 2 * app.conf.broker_heartbeat_interval
    try:
        return await asyncio.wait_for(write, timeout=window_s)
    except asyncio.TimeoutError:
        await _stop(app, OwnershipLost(f"a write did not complete within {window_s:.1f} s (the session timeout less "
                                       "two heartbeats): the partitions may have another owner by now"))


class StopWhenFenced(Sensor):
    """Stops the worker (OwnershipLost) when the broker refuses one of its writes as fenced: its partition's
    transactional producer has a successor, or its transaction outlived the transaction timeout and was aborted.
    faust stops only when a commit is refused, and logs a refused write and goes on: a worker whose partition's
    commit had stalled (a CI run) went on handling the partition for minutes after its transaction timed out,
    every write of it refused and the group's offset never moving, so nothing else took the partition over.
    Stopped, its supervisor restarts it and whoever holds the partition next goes on from the last commit."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        self.app = app
        self._stopping: asyncio.Task | None = None

    def on_send_error(self, producer: Any, exc: BaseException, state: Any) -> None:
        if isinstance(exc, (ProducerFenced, InvalidProducerEpoch)) and self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(exc))

    async def _stop(self, exc: BaseException) -> None:
        try:
            await _stop(self.app, OwnershipLost(f"a write was refused ({type(exc).__name__}): the partition's "
                                                "transaction was aborted and it may have another owner"))
        except OwnershipLost:
            pass  # the worker is crashed; nothing awaits this task


async def _stop(app, error: OwnershipLost) -> None:
    log.error("OwnershipLost: %s; stopping", error)
    await app.crash(error)
    raise error
