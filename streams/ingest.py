"""Ingest agents: validate, store and forward every input event except FIT files.

Pipeline per input topic: raw bytes -> `parse_event` (the schemas contract) -> InfluxDB points ->
the validated event forwarded to the athlete's timeline topic. Anything that fails validation goes to
the dead-letter topic with its original bytes and the reason, and the agent carries on.

Delivery is at-least-once. Re-processing after a restart rewrites the same InfluxDB points (same
measurement, tags and time) and forwards events with the same stable event_id, which downstream
consumers deduplicate, so nothing is double-counted.
"""

from __future__ import annotations

import os
from typing import Any

import faust

from aromatrack.schemas import topics
from aromatrack.schemas.events import EventError, dump_event, parse_event
from aromatrack.streams.app import app, dead_letter, influx, timeline_topic
from aromatrack.streams.points import event_points

# Events are validated one by one but written to InfluxDB in batches: one HTTP request per batch is what
# makes >10k events/s possible (benchmarks/bench_ingest.py compares it with one write per event).
# AROMATRACK_INGEST_BATCH=1 turns batching off for that comparison.
BATCH_SIZE = int(os.environ.get("AROMATRACK_INGEST_BATCH", "1000"))
BATCH_WINDOW_S = 0.05


async def ingest_batch(source_topic: str, raw_values: list[Any]) -> None:
    """Validate a batch, write its points in one request, then forward the valid events."""
    accepted = []
    for raw in raw_values:
        try:
            event = parse_event(raw)
        except EventError as exc:
            await dead_letter(raw if isinstance(raw, bytes) else str(raw).encode(), str(exc), source_topic)
            continue
        if topics.topic_for(event.type) != source_topic:
            await dead_letter(raw, f"type: {event.type} events do not belong on {source_topic}", source_topic)
            continue
        accepted.append(event)
    points = [point for event in accepted for point in event_points(event)]
    await influx().write(points)
    for event in accepted:
        await timeline_topic.send(key=event.athlete_id.encode(), value=dump_event(event))


def _make_ingest_agent(event_type: str) -> None:
    source_topic = topics.topic_for(event_type)
    topic = app.topic(source_topic, value_serializer="raw", key_serializer="raw")

    async def ingest(stream: faust.StreamT) -> None:
        async for batch in stream.take(BATCH_SIZE, within=BATCH_WINDOW_S):
            await ingest_batch(source_topic, batch)

    ingest.__name__ = f"ingest_{event_type.replace('.', '_')}"
    app.agent(topic, name=f"aromatrack.ingest.{event_type}")(ingest)


# workout.fit and workout.summary have their own agents (streams/workouts.py: decoding, load, dedupe).
for _event_type in topics.INPUT_TOPICS:
    if _event_type not in ("workout.fit", "workout.summary"):
        _make_ingest_agent(_event_type)
