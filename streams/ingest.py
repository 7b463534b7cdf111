"""Ingest: validate, store and forward every input event except FIT files, consumed in batches.

Pipeline: raw bytes -> `parse_event` (the schemas contract) -> InfluxDB points, one write per batch ->
the validated events forwarded to the timeline topic. Anything that fails validation goes to the
dead-letter topic with its original bytes and the reason, and the batch carries on.

Why a batch consumer and not faust agents: this path is stateless, and faust's per-message machinery
(consumer thread, event wrapping, acks, sensors, one `send` per forwarded event) was its ceiling. With
faust agents a worker ingested 2.7k events/s, and 3.9k/s even without forwarding, while parsing,
points and line protocol run at 40k+/s and the broker serves ~200k messages/s (BENCHMARKS.md,
benchmarks/bench_ingest.py). Here one aiokafka `getmany` yields up to BATCH_SIZE records, their
forwards are produced without a wait each and awaited together. Measured in one run, alternating, on 2
shared cores: the worker spent 0.23-0.28 ms of CPU per event against faust agents' 1.26-1.37 ms (4.5-6x),
and ingested 4-8x the events/s.

Delivery is at-least-once. The consumer runs inside the faust worker but in its own consumer group,
`topics.ingest_group(app_id)`, on `topics.INGEST_TOPICS`; offsets are committed only after the batch's
InfluxDB write, its forwards and its dead letters are acknowledged. Re-processing (after a crash, a
failed commit or a rebalance) rewrites the same InfluxDB points (same measurement, tags and time) and
forwards events with the same stable event_id, which downstream consumers deduplicate, so nothing is
double-counted.
"""

from __future__ import annotations

import asyncio
import logging
import os

import faust
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError

from aromatrack.schemas import topics
from aromatrack.schemas.events import EventError, dump_event, parse_event
from aromatrack.streams.app import app, dead_letter, influx, session_timeouts_ms, settings
from aromatrack.streams.points import event_points

log = logging.getLogger(__name__)

# One InfluxDB request per batch is what makes thousands of events/s possible (benchmarks/bench_ingest.py
# compares it with one write per event). AROMATRACK_INGEST_BATCH=1 turns batching off for that comparison.
BATCH_SIZE = int(os.environ.get("AROMATRACK_INGEST_BATCH", "1000"))
BATCH_WINDOW_MS = 50
RETRY_DELAY_S = 1.0


async def ingest_batch(records: list[ConsumerRecord]) -> None:
    """Validate a batch, write its points in one request, forward the valid events; returns once all of
    it (dead letters included) is acknowledged."""
    accepted = []
    dead_lettered = False
    for record in records:
        raw = record.value if isinstance(record.value, bytes) else str(record.value).encode()
        try:
            event = parse_event(raw)
        except EventError as exc:
            reason = str(exc)
        else:
            if topics.topic_for(event.type) == record.topic:
                accepted.append(event)
                continue
            reason = f"type: {event.type} events do not belong on {record.topic}"
        await dead_letter(raw, reason, record.topic)
        dead_lettered = True
    await influx().write([point for event in accepted for point in event_points(event)])
    forwards = [
        await app.producer.send(topics.TIMELINE_TOPIC, event.athlete_id.encode(), dump_event(event), None, None, None)
        for event in accepted
    ]
    await asyncio.gather(*forwards)
    if dead_lettered:
        await app.producer.flush()


@app.service
class IngestConsumer(faust.Service):
    """Consumes INGEST_TOPICS in batches and commits each batch's offsets once it is stored and forwarded."""

    @faust.Service.task
    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            *topics.INGEST_TOPICS,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=topics.ingest_group(settings.app_id),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **session_timeouts_ms(),
        )
        await consumer.start()
        try:
            while not self.should_stop:
                fetched = await consumer.getmany(timeout_ms=BATCH_WINDOW_MS, max_records=BATCH_SIZE)
                if fetched:
                    await self._process(consumer, fetched)
        finally:
            await consumer.stop()

    async def _process(self, consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """On a Kafka error the batch is not committed: its partitions are rewound and it is fetched again."""
        try:
            await ingest_batch([record for records in fetched.values() for record in records])
            await consumer.commit({tp: records[-1].offset + 1 for tp, records in fetched.items()})
        except (KafkaError, ProducerSendError) as exc:
            log.warning("ingest batch not committed (%s); fetching it again in %.0fs", type(exc).__name__, RETRY_DELAY_S)
            assigned = consumer.assignment()
            for tp, records in fetched.items():
                if tp in assigned:
                    consumer.seek(tp, records[0].offset)
            await asyncio.sleep(RETRY_DELAY_S)
