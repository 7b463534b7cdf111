"""Kafka topic contract: one topic per input event type, plus the derived and output topics.

Every message is keyed by `athlete_id`, so one athlete's events stay in one partition and in order.
"""

from __future__ import annotations

from .events import EVENT_TYPES

PREFIX = "aromatrack.v1."
PARTITIONS = 4

INPUT_TOPICS: dict[str, str] = {event_type: PREFIX + event_type for event_type in EVENT_TYPES}
# Validated events of every type for one athlete, in the order the ingest stage accepted them.
TIMELINE_TOPIC = PREFIX + "timeline"
ALERTS_TOPIC = PREFIX + "alerts"
# Original bytes of anything that could not be processed, with headers saying why and from where.
DEAD_LETTER_TOPIC = PREFIX + "deadletter"

ALL_TOPICS = (*INPUT_TOPICS.values(), TIMELINE_TOPIC, ALERTS_TOPIC, DEAD_LETTER_TOPIC)


def topic_for(event_type: str) -> str:
    """The input topic for an event type; KeyError names the unknown type."""
    return INPUT_TOPICS[event_type]
