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

# Who consumes what in a worker: every input topic but the FIT files goes to the batch ingest consumer
# (streams/ingest.py) in its own consumer group; the FIT files and the timeline to faust agents in the app's group,
# and the profiles to both (the workouts keep them for the athlete numbers a workout's load needs).
INGEST_TOPICS = tuple(name for event_type, name in INPUT_TOPICS.items() if event_type != "workout.fit")
AGENT_TOPICS = (INPUT_TOPICS["workout.fit"], INPUT_TOPICS["athlete.profile"], TIMELINE_TOPIC)

def ingest_group(app_id: str) -> str:
    """The batch ingest consumer's group: its own, since the faust app's group uses faust's partition assignor."""
    return f"{app_id}.ingest"


def topic_for(event_type: str) -> str:
    """The input topic for an event type; KeyError names the unknown type."""
    return INPUT_TOPICS[event_type]
