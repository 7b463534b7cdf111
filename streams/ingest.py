"""Ingest: validate, store and forward every input event except FIT files, consumed in batches.

Pipeline: raw bytes -> `parse_event` (the schemas contract) -> InfluxDB points, one write per batch ->
the validated events forwarded to the timeline topic. Anything that fails validation goes to the
dead-letter topic with its original bytes and the reason, and the batch carries on. An event InfluxDB will not
store (it refuses the batch's write: a field stored with another type, a time outside the retention policy) is
found by writing the batch's events one by one; it goes on to the timeline, whose alerts must not miss it, and a
copy goes to the dead-letter topic saying its points were not stored. A refused write stopped the consumer, and
it stopped again on the same batch at every restart.

Why a batch consumer and not faust agents: this path is stateless, and faust's per-message machinery
(consumer thread, event wrapping, acks, sensors, one `send` per forwarded event) was its ceiling. With
faust agents a worker ingested 2.7k events/s, and 3.9k/s even without forwarding, while parsing,
points and line protocol run at 40k+/s and the broker serves ~200k messages/s (BENCHMARKS.md,
benchmarks/bench_ingest.py). Here one aiokafka `getmany` yields up to BATCH_SIZE records, and the batch's
forwards go out as one `timeline.batch` message per athlete and input path (schemas/timeline.py), produced
without a wait each and awaited together. Measured in one run, alternating, on 2
shared cores: the worker spent 0.23-0.28 ms of CPU per event against faust agents' 1.26-1.37 ms (4.5-6x),
and ingested 4-8x the events/s.

Progress: every forwarded message carries its input path (`schemas.progress.INPUT_HEADER`), and after each
batch (and every `HEARTBEAT_S` when idle) the consumer puts a `ProgressMarker` per owned input partition on the
timeline partition of the same number, saying whether that partition is consumed up to its end offset; markers
found on an input (the FIT agent's on the summary and scale topics, a bulk import's `ImportMarker` from its
sender) are forwarded after the batch's events, re-labelled with the path they came along. The clinical agent
releases alerts from these (streams/input_progress.py).

Delivery is at-least-once. The consumer runs inside the faust worker (`register`) but in its own consumer group,
`topics.ingest_group(app_id)`, on `topics.INGEST_TOPICS`; offsets are committed only after the batch's
InfluxDB write, its forwards and its dead letters are acknowledged. Re-processing (after a crash, a
failed commit or a rebalance) rewrites the same InfluxDB points (same measurement, tags and time) and
forwards events with the same stable event_id, which downstream consumers deduplicate, so nothing is
double-counted.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError


from aromatrack.deploy.settings import Settings
from aromatrack.schemas import topics
from aromatrack.schemas.events import EventBase, EventError, dump_event, parse_event
from aromatrack.schemas.progress import INPUT_HEADER, MARKER_HEADER, MarkerError, arrived_via, header, marker_found_on, via
from aromatrack.streams.app import Streams, session_timeouts_ms
from aromatrack.streams.influx import PointsRefused
from aromatrack.streams.input_progress import InputPartition, StageProgress
from aromatrack.streams.points import event_points
from aromatrack.streams.rewinding_consumer import FETCH_MAX_WAIT_MS

log = logging.getLogger(__name__)

# One InfluxDB request per batch of up to `ingest_batch_size` records is what makes thousands of events/s possible
# (benchmarks/bench_ingest.py compares it with one write per event: AROMATRACK_INGEST_BATCH=1).
BATCH_WINDOW_MS = 50
RETRY_DELAY_S = 1.0
POSITION_WAIT_S = 1.0  # a partition's position is local once known; unknown (just assigned), it is fetched


def input_path(record: ConsumerRecord) -> str:
    """The path an input record came along: its topic, after the upstream stage that produced it, if any."""
    upstream = header(record.headers, INPUT_HEADER)
    return via(upstream, record.topic) if upstream else record.topic


@dataclass(frozen=True)
class Accepted:
    """A valid event of a batch, with its bytes as read, the topic it was read from and the input path it came
    along."""

    event: EventBase
    raw: bytes
    topic: str
    path: str


async def store_points(streams: Streams, accepted: list[Accepted]) -> bool:
    """The events' points in one write; if InfluxDB refuses it, event by event, each refused event's bytes to the
    dead-letter topic with the reason (which never quotes its values). Whether any was dead-lettered."""
    try:
        await streams.influx().write([point for item in accepted for point in event_points(item.event)])
        return False
    except PointsRefused as exc:
        log.warning("InfluxDB refused a batch's points (%s); writing its %d events one by one", exc, len(accepted))
    dead_lettered = False
    for item in accepted:
        try:
            await streams.influx().write(event_points(item.event))
        except PointsRefused as exc:
            await streams.dead_letter(item.raw, f"its points were not stored ({exc}); the event went on to the "
                                      "clinical timeline", item.topic, item.event.athlete_id.encode())
            dead_lettered = True
    return dead_lettered


async def ingest_batch(streams: Streams, records: list[ConsumerRecord]) -> None:
    """Validate a batch, write its points in one request (`store_points`), forward the valid events and then the
    upstream progress markers it carried; returns once all of it (dead letters included) is acknowledged."""
    accepted = []
    upstream_markers = []
    dead_lettered = False
    for record in records:
        raw = record.value if isinstance(record.value, bytes) else str(record.value).encode()
        if header(record.headers, MARKER_HEADER) is not None:
            try:
                marker = marker_found_on(raw, record.partition)
            except MarkerError as exc:
                reason = str(exc)
            else:
                upstream_markers.append(arrived_via(marker, record.topic))
                continue
        else:
            try:
                event = parse_event(raw)
            except EventError as exc:
                reason = str(exc)
            else:
                if topics.topic_for(event.type) == record.topic:
                    accepted.append(Accepted(event, raw, record.topic, input_path(record)))
                    continue
                reason = f"type: {event.type} events do not belong on {record.topic}"
        await streams.dead_letter(raw, reason, record.topic)
        dead_lettered = True
    dead_lettered = await store_points(streams, accepted) or dead_lettered
    await streams.forward([(item.event.athlete_id.encode(), item.path, dump_event(item.event)) for item in accepted])
    await streams.send_markers(topics.TIMELINE_TOPIC, upstream_markers)
    if dead_lettered:
        await streams.app.producer.flush()


def new_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The ingest consumer, in its own group, committing by hand."""
    return AIOKafkaConsumer(
        *topics.INGEST_TOPICS,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=topics.ingest_group(settings.app_id),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,  # a busy partition waits at most this behind a fetch of idle ones
        **session_timeouts_ms(settings.worker.session_timeout_s),
    )


class IngestConsumer(faust.Service):
    """Consumes INGEST_TOPICS in batches and commits each batch's offsets once it is stored and forwarded."""

    def __init__(self, streams: Streams) -> None:
        super().__init__()
        self.streams = streams
        self.running: AIOKafkaConsumer | None = None  # the consumer while it runs

    def assignment(self) -> set[TopicPartition]:
        """The input partitions this worker's ingest consumer holds now (none before it joined its group)."""
        return set(self.running.assignment()) if self.running is not None else set()

    @faust.Service.task
    async def _consume(self) -> None:
        settings = self.streams.settings
        consumer = new_consumer(settings)
        await consumer.start()
        self.running = consumer
        progress = StageProgress()
        try:
            while not self.should_stop:
                fetched = await consumer.getmany(timeout_ms=BATCH_WINDOW_MS, max_records=settings.worker.ingest_batch_size)
                if fetched:
                    await self._process(consumer, fetched)
                await self._report_progress(consumer, progress, fetched)
        finally:
            self.running = None
            await consumer.stop()

    async def _report_progress(
        self, consumer: AIOKafkaConsumer, progress: StageProgress, fetched: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        """The markers due: each owned input partition's consumed position against the end offset last fetched.
        A failure (the broker away, a position not known yet) leaves them to the next round: the consumer loop
        must outlive it, and a partition without a marker only holds its athletes' alerts back."""
        try:
            assigned = consumer.assignment()
            ends = {InputPartition(tp.topic, tp.partition): consumer.highwater(tp) for tp in assigned}
            positions = {
                InputPartition(tp.topic, tp.partition): await asyncio.wait_for(consumer.position(tp), POSITION_WAIT_S)
                for tp in assigned
            }
            await self.streams.send_markers(
                topics.TIMELINE_TOPIC, progress.markers(ends, positions, [InputPartition(tp.topic, tp.partition) for tp in fetched]))
        except (KafkaError, ProducerSendError, asyncio.TimeoutError) as exc:
            log.warning("progress markers not sent (%s); the next round repeats them", type(exc).__name__)

    async def _process(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """On a Kafka error the batch is not committed: its partitions are rewound and it is fetched again."""
        try:
            await ingest_batch(self.streams, [record for records in fetched.values() for record in records])
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
        except (KafkaError, ProducerSendError) as exc:
            log.warning("ingest batch not committed (%s); fetching it again in %.0fs", type(exc).__name__, RETRY_DELAY_S)
            assigned = consumer.assignment()
            for tp, records in fetched.items():
                if tp in assigned:
                    consumer.seek(tp, records[0].offset)
            await asyncio.sleep(RETRY_DELAY_S)


def register(streams: Streams) -> IngestConsumer:
    """The worker's ingest consumer, started with the app once its tables are recovered (as faust starts its
    own services)."""
    consumer = IngestConsumer(streams)

    @streams.app.task
    async def start_ingest_consumer() -> None:
        await streams.app.add_runtime_dependency(consumer)

    return consumer
