"""Watermarks: when every input path of a timeline partition has been consumed up to what was there.

Stage side (`StageProgress`): a stage that consumes an input topic and forwards to the next one records the
offsets it has handled (forwards produced); `markers` says, per input partition it owns, whether it has handled
everything up to the partition's end offset. Those markers go onto the downstream partition after the forwards
they cover (schemas/progress.py), together with the upstream markers found in its input, re-labelled with the
path they came along.

Clinical side (`PartitionProgress`): per timeline partition, the last word of every input path. An event that
arrives along a path makes that path busy until its stage's next marker (its batch may be only half forwarded);
the partition is `complete` when every path has reported caught up since. Only then are its athletes' alerts
released, so what is released is what the whole history sent so far gives, not what the fastest topic gave.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from aromatrack.schemas.progress import TIMELINE_INPUTS, ProgressMarker

# A stage repeats its markers this often even when nothing changed, so a consumer that (re)starts or takes over
# a partition learns every path's state, and an idle path (no FIT uploads at all) still counts as caught up.
HEARTBEAT_S = 2.0


@dataclass
class PartitionProgress:
    """One timeline partition: input path -> caught up (absent: not heard from yet)."""

    expected: frozenset[str] = TIMELINE_INPUTS
    caught_up: dict[str, bool] = field(default_factory=dict)

    def on_event(self, path: str | None) -> None:
        if path is not None:
            self.caught_up[path] = False

    def on_marker(self, marker: ProgressMarker) -> None:
        self.caught_up[marker.input] = marker.caught_up

    @property
    def complete(self) -> bool:
        return all(self.caught_up.get(path, False) for path in self.expected)


@dataclass(frozen=True)
class InputPartition:
    topic: str
    partition: int


@dataclass
class StageProgress:
    """One stage's progress over its input partitions: the next offset after the last message handled (its
    forwards produced), and the state last reported per partition, so markers are sent only when they say
    something: a state change, a partition that forwarded events while caught up (its path is busy downstream
    until this marker), or a heartbeat."""

    handled: dict[InputPartition, int] = field(default_factory=dict)
    reported: dict[InputPartition, bool] = field(default_factory=dict)
    last_heartbeat: float = 0.0

    def handle(self, topic: str, partition: int, offset: int) -> None:
        key = InputPartition(topic, partition)
        self.handled[key] = max(self.handled.get(key, 0), offset + 1)

    def markers(
        self,
        end_offsets: Mapping[InputPartition, int | None],
        start_offsets: Mapping[InputPartition, int | None],
        forwarded: Iterable[InputPartition] = (),
        now: float | None = None,
    ) -> list[ProgressMarker]:
        """The markers due for the owned input partitions (the keys of `end_offsets`). A partition is caught up
        when the handled offset (or, before this stage handled anything there, the offset it started from) has
        reached the end offset; an unknown end or start is not caught up."""
        now = time.monotonic() if now is None else now
        heartbeat = now - self.last_heartbeat >= HEARTBEAT_S
        if heartbeat:
            self.last_heartbeat = now
        forwarded = set(forwarded)
        markers = []
        for key, end in end_offsets.items():
            position = self.handled.get(key, start_offsets.get(key))
            caught_up = end is not None and position is not None and position >= end
            if heartbeat or self.reported.get(key) != caught_up or (caught_up and key in forwarded):
                markers.append(ProgressMarker(input=key.topic, partition=key.partition, caught_up=caught_up))
                self.reported[key] = caught_up
        for key in set(self.reported) - set(end_offsets):  # no longer owned (a rebalance)
            del self.reported[key]
            self.handled.pop(key, None)
        return markers
