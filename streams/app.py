"""The faust application and what its agents share: topics, the InfluxDB writer, dead-lettering.

Nothing is built at import: `streams.worker.create_app(settings)` builds the faust app (`faust_app`) and the
`Streams` context its agents share, then has each agent module (ingest, workouts, clinical, health) register
its agents, tables and timers on it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import faust
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from aromatrack.deploy import influx_access
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import topics
from aromatrack.schemas.progress import INPUT_HEADER, MARKER_HEADER, ImportMarker, ProgressMarker, dump_marker
from aromatrack.schemas.timeline import batch_messages
from aromatrack.streams.admin import ensure_topics, topic_replicas
from aromatrack.streams.delivery import Delivered, DeliveryGaps, PartitionKeyedTable
from aromatrack.streams import fencing
from aromatrack.streams.influx import SeriesStore
from aromatrack.streams.rewinding_consumer import RewindingApp
from aromatrack.streams.table_store import DiskStore

log = logging.getLogger(__name__)


def session_timeouts_ms(session_timeout_s: float | None) -> dict[str, int]:
    """aiokafka consumer arguments for the worker's session timeout (heartbeats a quarter of it, at most every 3 s)."""
    if session_timeout_s is None:
        return {}
    return {"session_timeout_ms": int(session_timeout_s * 1000),
            "heartbeat_interval_ms": int(min(3.0, session_timeout_s / 4) * 1000)}


class ServiceWorker(faust.Worker):
    """faust's worker without its terminal spinner. To spin once per log record, the spinner sets the root logger
    to DEBUG whatever `--loglevel` says (only the output handler keeps the level), so every debug call of aiokafka
    and faust built a record that was then dropped: 0.7 s of a one-worker bulk send's ~10 s of CPU (py-spy),
    and a stream of terminal escape codes in the worker's log."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None

    @property
    def label(self) -> str:
        """faust's own name in the log: the demo, the benchmarks and the tests wait for "[^Worker]: Ready"."""
        return "Worker"


def faust_app(settings: Settings) -> faust.App:
    worker = settings.worker
    return RewindingApp(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # The athlete tables are on disk (`AthleteKeyedTable`); the small ones stay in memory. faust's RocksDB store
        # (rocksdict) was tried and refuses every write the agents make outside a single event's context (batches,
        # timers): BENCHMARKS.md "Table recovery". Tables are rebuilt from their changelogs.
        store="memory://",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=topics.PARTITIONS,
        topic_replication_factor=topic_replicas(),
        topic_allow_declare=True,
        web_enabled=worker.web_port is not None,
        web_port=worker.web_port or 6066,
        web_bind=worker.web_bind,
        # The health routes (streams/health.py) and faust's counters only: the table and router views would answer
        # table contents (health data) to anyone who reaches the port.
        web_tables_enabled=False,
        web_router_enabled=False,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=worker.session_timeout_s and min(3.0, worker.session_timeout_s / 4),
        producer_acks=-1,
        # Transactions per partition fence a worker that lost its partitions (streams/fencing.py).
        **fencing.faust_settings(settings.processing_guarantee),
        # Forwarded events are small and many: letting the producer gather them for 5 ms turns thousands of
        # produce requests into a few (measured: benchmarks/bench_ingest.py, see BENCHMARKS.md).
        producer_linger=0.005,
        broker_commit_every=1000,
        broker_commit_interval=0.5,
        datadir=str(settings.worker_dir),
        Worker=ServiceWorker,
    )


PART_SEPARATOR = b"\x1f"
_ALL_PARTITIONS = list(range(topics.PARTITIONS))
_partitioner = DefaultPartitioner()  # the producers' default: how every topic is partitioned by athlete


class AthleteKeyedTable(faust.Table):
    """A table keyed by athlete, `athlete key` or `athlete key + PART_SEPARATOR + part`: every key goes to the
    changelog partition of its athlete (the athlete's partition of every topic), so one athlete's state can be
    split over several keys and a change writes one small part instead of the whole state.

    The partition is computed here, as the producers' default partitioner would: faust's `use_partitioner`
    asks the producer, whose metadata may not hold the changelog topic yet (after a rebalance on Apache
    Kafka that failed the write with a TypeError).

    Its values are kept on disk (`table_store.DiskStore`): they are every athlete's history."""

    def partition_for_key(self, key: bytes) -> int:
        athlete_key, separator, _ = key.rpartition(PART_SEPARATOR)
        return _partitioner(athlete_key if separator else key, _ALL_PARTITIONS, _ALL_PARTITIONS)

    def _new_store_by_url(self, url: str) -> DiskStore:
        return DiskStore(url, self.app, self, table_name=self.name, key_type=self.key_type, value_type=self.value_type,
                         key_serializer=self.key_serializer, value_serializer=self.value_serializer, loop=self.loop,
                         options=self.options)


# The changelogs' segments roll at 64 MB or 6 hours: the broker compacts only closed segments, and with Kafka's
# 1 GB default a table's changelog would grow to a gigabyte per partition (every write of every athlete's state)
# before the first compaction, and a worker taking over a partition would replay all of it.
CHANGELOG_TOPIC_CONFIG = {"segment.bytes": str(64 * 2**20), "segment.ms": str(6 * 3600 * 1000)}


def part_key(athlete_key: bytes, part: bytes) -> bytes:
    return athlete_key + PART_SEPARATOR + part


@dataclass
class Streams:
    """What every agent module gets from the worker: its settings, the faust app, the shared topics, forwarding
    to the timeline, the InfluxDB writer and dead-lettering."""

    settings: Settings
    app: faust.App
    dead_letter_topic: faust.TopicT = field(init=False)
    timeline_topic: faust.TopicT = field(init=False)
    _influx: SeriesStore | None = field(default=None, init=False, repr=False)
    _delivered_offsets: PartitionKeyedTable | None = field(default=None, init=False, repr=False)
    _gaps: list[DeliveryGaps] = field(default_factory=list, init=False, repr=False)
    _admin: AIOKafkaAdminClient | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.dead_letter_topic = self.topic(topics.DEAD_LETTER_TOPIC)
        self.timeline_topic = self.topic(topics.TIMELINE_TOPIC)
        self.app.on_before_shutdown.connect(self._close_clients)

    def topic(self, name: str) -> faust.TopicT:
        return self.app.topic(name, value_serializer="raw", key_serializer="raw")

    def athlete_keyed_table(self, name: str) -> AthleteKeyedTable:
        app = self.app
        return app.tables.add(AthleteKeyedTable(
            app, name=name, beacon=app.tables.beacon, partitions=topics.PARTITIONS, key_type=bytes, value_type=bytes,
            extra_topic_configs=CHANGELOG_TOPIC_CONFIG,
        ))

    def partition_keyed_table(self, name: str) -> PartitionKeyedTable:
        app = self.app
        return app.tables.add(PartitionKeyedTable(
            app, name=name, beacon=app.tables.beacon, partitions=topics.PARTITIONS, key_type=bytes, value_type=bytes,
            extra_topic_configs=CHANGELOG_TOPIC_CONFIG,
        ))

    def delivery_gaps(self, agent: str) -> DeliveryGaps:
        """An agent's tracker of skipped messages (streams/delivery.py), told of every new assignment."""
        if self._delivered_offsets is None:
            # Per agent and input partition, the next offset the agent has to handle (`delivery.offsets_key`).
            self._delivered_offsets = self.partition_keyed_table("delivered_offsets")

        gaps = DeliveryGaps(self.settings.kafka_bootstrap, self.settings.app_id, agent, self._delivered_offsets,
                            held=lambda: self.app.consumer.assignment(),
                            vouch=lambda tp, offset: self.app.consumer.handled_up_to(tp, offset))

        async def on_assigned(app: faust.App, assigned: set, **kwargs: object) -> None:
            gaps.on_assigned(assigned)

        self.app.on_partitions_assigned.connect(on_assigned)
        self._gaps.append(gaps)
        return gaps

    async def delivered(self, gaps: DeliveryGaps, events: list) -> list[Delivered]:
        """A batch of faust events as the agent handles them, with what faust skipped before them in front."""
        return await gaps.complete([Delivered.of(event) for event in events])

    def influx(self) -> SeriesStore:
        """One writer per worker, created lazily inside the worker's event loop."""
        if self._influx is None:
            # Bytes of a write reach InfluxDB soon or never (streams/fencing.py: a cut-off worker's write must not
            # land after its successor's).
            self._influx = influx_access.writer_store(
                self.settings, unacknowledged_limit_s=fencing.unacknowledged_limit_s(self.app))
        return self._influx

    async def admin(self) -> AIOKafkaAdminClient:
        """One admin client per worker, started on first use."""
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await admin.start()
            self._admin = admin
        return self._admin

    async def _close_clients(self, app: faust.App, **kwargs: object) -> None:
        """At shutdown, once the agents have stopped: the clients this context started."""
        for gaps in self._gaps:
            await gaps.close()
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self._influx is not None:
            await self._influx.close()
            self._influx = None

    async def forward(self, events: list[tuple[bytes, str, bytes]]) -> None:
        """Forward events to the timeline, given as (athlete key, input path, event bytes): each athlete's events
        of one path together in `timeline.batch` messages (schemas/timeline.py; one message per event made faust's
        per-message cost the clinical agent's largest), each with its path's INPUT_HEADER, produced without a wait
        each. Returns once the broker has acknowledged them all."""
        grouped: dict[tuple[bytes, str], list[bytes]] = {}
        for key, path, event in events:
            grouped.setdefault((key, path), []).append(event)
        sends = [
            await self.app.producer.send(topics.TIMELINE_TOPIC, key, message, None, None, {INPUT_HEADER: path.encode()})
            for (key, path), group in grouped.items()
            for message in batch_messages(group)
        ]
        await asyncio.gather(*sends)

    async def send_markers(self, topic: str, markers: list[ProgressMarker | ImportMarker]) -> None:
        """Progress markers onto `topic`, each on its partition, produced without a wait each; returns once the
        broker has acknowledged them all."""
        sends = [
            await self.app.producer.send(topic, None, dump_marker(marker), marker.partition, None, {MARKER_HEADER: b"1"})
            for marker in markers
        ]
        await asyncio.gather(*sends)

    async def dead_letter(self, original: bytes, reason: str, source_topic: str, key: bytes | None = None) -> None:
        """Send the original bytes with the reason; the reason never includes field values (PHI)."""
        await self.dead_letter_topic.send(
            key=key,
            value=original,
            headers={"reason": reason.encode()[:2000], "source_topic": source_topic.encode()},
        )
        log.warning("dead-lettered a message from %s: %s", source_topic, reason.split(":")[0])


def changelog_topics(app: faust.App) -> dict[str, dict[str, str]]:
    """The app's table changelogs with the configs faust declares them with (its cleanup policy from the topic's
    compacting and deleting flags, and the table's extra configs)."""
    changelogs = {}
    for table in app.tables.values():
        topic = table.changelog_topic
        policy = ",".join(flag for flag, on in (("compact", topic.compacting), ("delete", topic.deleting)) if on)
        changelogs[topic.get_topic_name()] = {**({"cleanup.policy": policy} if policy else {}), **(topic.config or {})}
    return changelogs


async def prepare_storage(settings: Settings, app: faust.App) -> None:
    """Create the topics with their partition count, the app's table changelogs included, and check the writer's
    credentials; run before the worker.

    faust creates a missing changelog itself as the worker starts, a moment before its consumer joins the group;
    once, the consumer's cluster metadata did not list the new clinical history changelog yet, so the group's
    assignment left that table without partitions (faust logs "Ignoring missing topic") until the metadata was
    refreshed five minutes later: nothing restored it when a worker took over another's partitions. Created here,
    before the worker starts, the changelogs are in the metadata the consumer first reads.

    The databases, users and grants are the deployment's (`aromatrack stack up`, compose's InfluxDB init):
    the worker writes as a user that may not create them.
    """
    await ensure_topics(settings.kafka_bootstrap, changelog_topics(app))
    influx_access.user(settings, influx_access.Role.WRITER)
