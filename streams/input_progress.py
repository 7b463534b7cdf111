"""Watermarks: when every input path of a timeline partition has been consumed up to what was there.

Stage side (`StageProgress`): a stage that consumes an input topic and forwards to the next one records the
offsets it has handled (forwards produced); `markers` says, per input partition it owns, whether it has handled
everything up to the partition's end offset. Those markers go onto the downstream partition after the forwards
they cover (schemas/progress.py), together with the upstream markers found in its input, re-labelled with the
path they came along.

Clinical side (`PartitionProgress`): per timeline partition, the last word of every input path. An event that
arrives along a path makes that path busy until its stage's next marker (its batch may be only half forwarded);
the partition is `complete` when every path has reported caught up since, and no sender's bulk import is open
on it. Only then are its athletes' alerts released, so what is released is what the whole history sent so far
gives, not what the fastest topic gave, nor the first part of an import that the worker read as fast as it came.

An import (`schemas.progress.ImportMarker`) is open from its first marker along any path until it is closed
along every path (each close follows that path's share of the import) or its lease lapses: a sender that died
holds the partition back for at most its lease. The leases run on this worker's clock from when their markers
arrive, so the sender's clock does not matter. A worker that (re)starts or takes the partition over learns of
an open import at the sender's next renewal; until then it releases as the watermark alone allows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from aromatrack.schemas.progress import TIMELINE_INPUTS, ImportMarker, ProgressMarker

# A stage repeats its markers this often even when nothing changed, so a consumer that (re)starts or takes over
# a partition learns every path's state, and an idle path (no FIT uploads at all) still counts as caught up.
HEARTBEAT_S = 2.0


@dataclass
class OpenImport:
    """A sender's import as one partition knows it: open until `open_until` (monotonic seconds) unless closed
    along every path first."""

    open_until: float
    closed_along: set[str] = field(default_factory=set)


@dataclass
class PartitionProgress:
    """One timeline partition: input path -> caught up (absent: not heard from yet), and the imports open on it."""

    expected: frozenset[str] = TIMELINE_INPUTS
    caught_up: dict[str, bool] = field(default_factory=dict)
    imports: dict[str, OpenImport] = field(default_factory=dict)

    def on_event(self, path: str | None) -> None:
        if path is not None:
            self.caught_up[path] = False

    def on_marker(self, marker: ProgressMarker | ImportMarker, now: float | None = None) -> None:
        if isinstance(marker, ProgressMarker):
            self.caught_up[marker.input] = marker.caught_up
            return
        now = time.monotonic() if now is None else now
        known = self.imports.get(marker.import_id)
        if marker.closes:
            if known is not None:
                known.closed_along.add(marker.input)
                if self.expected <= known.closed_along:
                    del self.imports[marker.import_id]
        elif known is None:
            self.imports[marker.import_id] = OpenImport(now + marker.lease_s)
        else:
            known.open_until = max(known.open_until, now + marker.lease_s)

    def complete(self, now: float | None = None) -> bool:
        """Every path caught up and no import open (lapsed leases are forgotten here)."""
        now = time.monotonic() if now is None else now
        for import_id in [import_id for import_id, open_import in self.imports.items() if open_import.open_until <= now]:
            del self.imports[import_id]
        return not self.imports and all(self.caught_up.get(path, False) for path in self.expected)


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
