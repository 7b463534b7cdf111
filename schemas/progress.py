"""Input progress on the timeline: which input paths of a partition are consumed up to what was there.

An athlete's events reach the timeline topic along several paths (each ingest topic directly; the summary topic
through the workouts agent; FIT uploads through the FIT agent and then the summary or scale topic), each at its
own speed. The clinical agent releases an athlete's alerts only once every path of the athlete's partition has
been consumed up to the end of its input (the watermark), so a bulk import gives the alerts of the whole
history, not of whichever topic happened to be read first.

Each stage that forwards to the timeline (or to a topic on a FIT path) reports, per input partition, a
`ProgressMarker` on the downstream partition of the same number (every topic is partitioned by athlete with the
same count, so an athlete's input partition and timeline partition share a number). A marker is produced after
the forwards it covers, so on the downstream partition it follows them. Markers travel with MARKER_HEADER and
forwarded events with INPUT_HEADER naming their path, so a consumer sees which path is busy until its next
marker.

"Consumed up to what was there" cannot tell a worker that keeps up with a sender mid-import from the import's
end. A sender of a bulk import says so (`ImportMarker`): it opens the import on every input partition before its
first event, renews that lease while it sends, and closes it after its last event was acknowledged. The stages
forward these markers like their own, relabelled with the path they came along, so a close reaches the clinical
agent after every event the import sent along that path.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from . import topics

MARKER_HEADER = "aromatrack-progress"
INPUT_HEADER = "aromatrack-input"
PATH_SEPARATOR = ">"

FIT_TOPIC = topics.topic_for("workout.fit")
SUMMARY_TOPIC = topics.topic_for("workout.summary")
SCALE_TOPIC = topics.topic_for("scale.reading")


def via(upstream: str, topic: str) -> str:
    """The path of what `upstream` produced onto `topic` and the stage consuming `topic` forwarded."""
    return f"{upstream}{PATH_SEPARATOR}{topic}"


# Every path by which an event can reach the timeline; a partition is complete when each has reported.
TIMELINE_INPUTS: frozenset[str] = frozenset({
    *topics.INGEST_TOPICS,
    via(FIT_TOPIC, SUMMARY_TOPIC),
    via(FIT_TOPIC, SCALE_TOPIC),
})


class ProgressMarker(BaseModel):
    """`input` (a topic or path) on `partition` was consumed, and what it gave forwarded, up to the end of what
    its consumer had seen (`caught_up`), or not yet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["progress"] = "progress"
    schema_version: Literal[1] = 1
    input: str
    partition: int
    caught_up: bool


# The longest lease a sender may ask for: a sender that dies holds its partitions' alerts back at most this long.
MAX_IMPORT_LEASE_S = 600.0


class ImportMarker(BaseModel):
    """A sender's bulk import `import_id` on input `partition`: open (renewed every third of `lease_s` while the
    sender sends; the clinical agent forgets an import it has heard nothing of for `lease_s` while caught up on
    everything, a sender that died), or closed (`lease_s` 0: whatever the import sent to this partition precedes
    the marker). `input` is the path it came along, empty as the sender writes it: each stage that forwards it
    extends it (`arrived_via`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["import"] = "import"
    schema_version: Literal[1] = 1
    import_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    input: str = ""
    partition: Annotated[int, Field(ge=0)]
    lease_s: Annotated[float, Field(ge=0, le=MAX_IMPORT_LEASE_S)]

    @property
    def closes(self) -> bool:
        return self.lease_s == 0


Marker = Annotated[Union[ProgressMarker, ImportMarker], Field(discriminator="type")]
_MARKER_ADAPTER: TypeAdapter[Marker] = TypeAdapter(Marker)


def dump_marker(marker: ProgressMarker | ImportMarker) -> bytes:
    return marker.model_dump_json().encode()


def parse_marker(raw: bytes) -> ProgressMarker | ImportMarker:
    """Raises pydantic's ValidationError for anything but a v1 progress or import marker."""
    return _MARKER_ADAPTER.validate_json(raw)


class MarkerError(ValueError):
    """A marker a stage cannot take; the message is the reason for the dead letter (no marker content)."""


def marker_found_on(raw: bytes, partition: int) -> ProgressMarker | ImportMarker:
    """A marker as a stage reads it from `partition` of its input: MarkerError when it is not a v1 marker or is
    for another partition (a stage forwards a marker to the downstream partition it names)."""
    try:
        marker = parse_marker(raw)
    except ValidationError:
        raise MarkerError("progress marker: not a valid v1 marker") from None
    if marker.partition != partition:
        raise MarkerError(f"progress marker: for partition {marker.partition}, found on partition {partition}")
    return marker


def arrived_via(marker: ProgressMarker | ImportMarker, topic: str) -> ProgressMarker | ImportMarker:
    """The marker as the stage consuming `topic` forwards it: labelled with the path it came along."""
    return marker.model_copy(update={"input": via(marker.input, topic) if marker.input else topic})


def header(headers: object, name: str) -> str | None:
    """A header's value as text, from faust's or aiokafka's header forms (a mapping or (name, bytes) pairs)."""
    items = headers.items() if isinstance(headers, dict) else (headers or ())
    for key, value in items:
        if key == name:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None
