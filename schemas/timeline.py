"""The timeline topic's event messages: several events of one athlete, forwarded along one input path, in one message.

The ingest consumer forwards every event it accepts to the timeline, where the
clinical agent reads them through faust, whose per-message machinery (fetch hand-over, event wrapping, stream
buffers, acks) cost more than the agent's own work on each event; a bulk import sent one message per event.
A `timeline.batch` message carries the events of one athlete that a stage's batch forwards along one input path
(the message's INPUT_HEADER, as for a single event: schemas/progress.py), in order, each in the event contract's
canonical JSON. The consumer validates each event again on its own, with the same limits as if it had come alone
(`parse_event`), and dead-letters only the events that fail. A message holding one plain event is still a valid
timeline message (what earlier workers forwarded).

A batch is read in one pass of pydantic's parser over its bytes when every event in it is valid and certainly
within the limits (7.6 us an event of the demo cohort's batches against 10.1 for decoding the message and
validating each event's dict, most of the rest being the canonical dump that checks each event's size); otherwise
event by event, which decides and names what fails exactly as before. Both ways read every message the same
(tests/unit/test_timeline_messages.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .events import Event, EventBase, EventError, certainly_as_sent_alone, decode_json, parse_event

BATCH_TYPE = "timeline.batch"
BATCH_SCHEMA_VERSION = 1
# Far below Kafka's 1 MB message limit (an event is at most MAX_EVENT_BYTES, 64 kB).
MAX_BATCH_BYTES = 256 * 1024
_HEAD = b'{"type":"%s","schema_version":%d,"events":[' % (BATCH_TYPE.encode(), BATCH_SCHEMA_VERSION)
_TAIL = b"]}"


def batch_messages(events: Iterable[bytes]) -> list[bytes]:
    """Events (each its canonical JSON, as `dump_event` gives) in as few `timeline.batch` messages as fit within
    MAX_BATCH_BYTES each, in order."""
    messages: list[bytes] = []
    chunk: list[bytes] = []
    size = len(_HEAD) + len(_TAIL)
    for event in events:
        if chunk and size + len(event) + 1 > MAX_BATCH_BYTES:
            messages.append(_HEAD + b",".join(chunk) + _TAIL)
            chunk, size = [], len(_HEAD) + len(_TAIL)
        chunk.append(event)
        size += len(event) + 1
    if chunk:
        messages.append(_HEAD + b",".join(chunk) + _TAIL)
    return messages


@dataclass(frozen=True)
class TimelineItem:
    """One event of a timeline message: the event, or why it is not one (with its bytes, for the dead letters)."""

    original: bytes
    event: EventBase | None = None
    error: EventError | None = None
    canonical: bytes | None = None  # the event's `dump_event` bytes, when the read made them


class _Batch(BaseModel):
    """A whole `timeline.batch` message, for validating all its events in one pass over its bytes."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["timeline.batch"]
    schema_version: Literal[1]
    events: list[Event]


def parse_timeline_message(raw: bytes) -> list[TimelineItem]:
    """The events of a timeline message (a `timeline.batch` or a single event), each validated on its own.
    EventError when the message as a whole is neither."""
    return _read_at_once(raw) or _read_event_by_event(raw)


def _read_at_once(raw: bytes) -> list[TimelineItem] | None:
    """A batch's events from one pass of pydantic's parser, or None when any event fails or is not certainly read
    as it would be alone (the caller then reads it event by event)."""
    if not raw.startswith(_HEAD):
        return None
    try:
        events = _Batch.model_validate_json(raw).events
    except ValidationError:
        return None
    read = [certainly_as_sent_alone(event) for event in events]
    if None in read:
        return None
    return [TimelineItem(b"", event=item.event, canonical=item.canonical) for item in read]


def _read_event_by_event(raw: bytes) -> list[TimelineItem]:
    body = decode_json(raw)
    if not (isinstance(body, dict) and body.get("type") == BATCH_TYPE):
        try:
            return [TimelineItem(raw, event=parse_event(raw))]
        except EventError as exc:
            return [TimelineItem(raw, error=exc)]
    if body.get("schema_version") != BATCH_SCHEMA_VERSION or set(body) != {"type", "schema_version", "events"} \
            or not isinstance(body["events"], list):
        raise EventError(f"{BATCH_TYPE}: expected schema_version {BATCH_SCHEMA_VERSION} and a list of events, nothing else")
    items = []
    for item in body["events"]:
        try:
            items.append(TimelineItem(b"", event=parse_event(item)))
        except EventError as exc:
            items.append(TimelineItem(json.dumps(item, separators=(",", ":")).encode(), error=exc))
    return items
