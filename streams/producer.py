"""Produce validated events to their input topics (acks=all, idempotent producer, keyed by athlete)."""

from __future__ import annotations

from typing import Iterable

from aiokafka import AIOKafkaProducer

from aromatrack.schemas import topics
from aromatrack.schemas.events import EventBase, dump_event
from aromatrack.streams.admin import ensure_topics

MAX_MESSAGE_BYTES = 1_048_576


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

    async def send_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        """Send bytes unvalidated: for replaying dead letters and for poison-message tests."""
        await self._producer.send_and_wait(topic, value, key=key)
