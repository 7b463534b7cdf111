"""Produce validated events to their input topics (acks=all, idempotent producer, keyed by athlete).

A bulk import goes inside `bulk_import()`: the stream then holds the alerts of every partition back until the
whole import is in, instead of releasing (and later withdrawing) what the part read so far gives whenever the
worker keeps up with the sender (schemas/progress.py `ImportMarker`, streams/input_progress.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import AsyncIterator, Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from aromatrack.schemas import topics
from aromatrack.schemas.events import EventBase, dump_event
from aromatrack.schemas.progress import MARKER_HEADER, ImportMarker, dump_marker
from aromatrack.streams.admin import ensure_topics

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 1_048_576
# A sender that died mid-import holds the stream's alerts back this long once the worker has consumed what it
# sent (streams/input_progress.py). Renewed three times per lease while the import is open.
IMPORT_LEASE_S = 30.0
IMPORT_RENEW_S = IMPORT_LEASE_S / 3


class EventProducer:
    """An aiokafka producer that only accepts validated events, so nothing half-formed reaches Kafka."""

    def __init__(self, bootstrap: str):
        self._bootstrap = bootstrap
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            max_request_size=MAX_MESSAGE_BYTES,
            linger_ms=5,
        )

    async def __aenter__(self) -> "EventProducer":
        # Topics auto-created by a first send would get the broker's default of one partition.
        await ensure_topics(self._bootstrap)
        await self._producer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._producer.stop()

    async def send(self, event: EventBase) -> None:
        """Send one event and wait until the broker has acknowledged it."""
        await self._producer.send_and_wait(
            topics.topic_for(event.type), dump_event(event), key=event.athlete_id.encode()
        )

    async def send_all(self, events: Iterable[EventBase]) -> int:
        """Send many events pipelined, then wait for every acknowledgement; returns the count."""
        futures = [
            await self._producer.send(topics.topic_for(e.type), dump_event(e), key=e.athlete_id.encode())
            for e in events
        ]
        for future in futures:
            await future
        return len(futures)

    @contextlib.asynccontextmanager
    async def bulk_import(self) -> AsyncIterator[str]:
        """Send a bulk import inside this: it is opened on every partition of every input topic before the first
        event, renewed while open, and closed once the block's sends were acknowledged (also when the block
        fails: what was sent is what there is). Yields the import's id."""
        import_id = uuid.uuid4().hex
        await self._import_markers(import_id, IMPORT_LEASE_S)
        renewing = asyncio.create_task(self._renew(import_id))
        try:
            yield import_id
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            try:
                await self._import_markers(import_id, 0.0)
            except KafkaError as exc:  # the lease lapses instead: alerts come at most IMPORT_LEASE_S later
                log.warning("the import's close was not sent (%s); its lease lapses %.0f s after the worker is done",
                            type(exc).__name__, IMPORT_LEASE_S)

    async def _renew(self, import_id: str) -> None:
        while True:
            await asyncio.sleep(IMPORT_RENEW_S)
            try:
                await self._import_markers(import_id, IMPORT_LEASE_S)
            except KafkaError as exc:  # the next renewal repeats it; the sends report the broker's failure
                log.warning("the import's lease was not renewed (%s)", type(exc).__name__)

    async def _import_markers(self, import_id: str, lease_s: float) -> None:
        sends = [
            await self._producer.send(
                topic, dump_marker(ImportMarker(import_id=import_id, partition=partition, lease_s=lease_s)),
                partition=partition, headers=[(MARKER_HEADER, b"1")])
            for topic in topics.INPUT_TOPICS.values()
            for partition in range(topics.PARTITIONS)
        ]
        await asyncio.gather(*sends)

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Send bytes unvalidated: for replaying dead letters and for poison-message tests."""
        await self._producer.send_and_wait(topic, value, key=key)
