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
along every path (each close follows that path's share of the import), or until it lapses: its lease has
passed with every path caught up and no marker of it arriving, so a sender that died holds the partition back
for one lease once the worker has consumed what it sent. The lease does not run while a path is busy: a path
that lags (the FIT agent decoding the import's uploads) brings its renewals and its close late, and must not
see the import lapse in between. Leases run on this worker's clock, so the sender's clock does not matter. A
worker that (re)starts or takes the partition over learns of an open import at the sender's next renewal; until
then it releases as the watermark alone allows. What a partition knows of imports is stored with its batches
(`clinical_codec.encode_imports`): a worker that takes the partition over, or keeps it through a rebalance, starts
after the last batch handled, and a close it did not read again must not leave the import open until it lapses.
The imports closed along every path are remembered too (the last CLOSED_IMPORTS_KEPT), so that a batch handled
again after a takeover cannot open one of them again with a renewal it reads a second time.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from aromatrack.schemas.progress import TIMELINE_INPUTS, ImportMarker, ProgressMarker

# A stage repeats its markers this often even when nothing changed, so a consumer that (re)starts or takes over
# a partition learns every path's state, and an idle path (no FIT uploads at all) still counts as caught up.
HEARTBEAT_S = 2.0
# Imports closed along every path that a partition remembers: what is read again after a takeover goes back a few
# batches (seconds), and senders open a handful of imports in that time.
CLOSED_IMPORTS_KEPT = 64


@dataclass
class OpenImport:
    """A sender's import as one partition knows it: the paths it was closed along, and since when (monotonic
    seconds) the partition has been caught up on every path with no marker of it arriving (None: not so)."""

    lease_s: float
    closed_along: set[str] = field(default_factory=set)
    idle_since: float | None = None


@dataclass
class PartitionProgress:
    """One timeline partition: input path -> caught up (absent: not heard from yet), the imports open on it, and
    the last imports closed along every path (oldest first)."""

    expected: frozenset[str] = TIMELINE_INPUTS
    caught_up: dict[str, bool] = field(default_factory=dict)
    imports: dict[str, OpenImport] = field(default_factory=dict)
    closed: deque[str] = field(default_factory=lambda: deque(maxlen=CLOSED_IMPORTS_KEPT))

    def on_event(self, path: str | None) -> None:
        if path is not None:
            self.caught_up[path] = False
            for open_import in self.imports.values():
                open_import.idle_since = None

    def on_marker(self, marker: ProgressMarker | ImportMarker) -> None:
        if isinstance(marker, ProgressMarker):
            self.caught_up[marker.input] = marker.caught_up
            return
        if marker.import_id in self.closed:
            return
        known = self.imports.get(marker.import_id)
        if marker.closes:
            if known is not None:
                known.closed_along.add(marker.input)
                known.idle_since = None
                if self.expected <= known.closed_along:
                    del self.imports[marker.import_id]
                    self.closed.append(marker.import_id)
        elif known is None:
            self.imports[marker.import_id] = OpenImport(marker.lease_s)
        else:
            known.lease_s, known.idle_since = marker.lease_s, None

    def complete(self, now: float | None = None) -> bool:
        """Every path caught up and no import open (an import lapses here; see the module's docstring)."""
        if not all(self.caught_up.get(path, False) for path in self.expected):
            for open_import in self.imports.values():
                open_import.idle_since = None
            return False
        now = time.monotonic() if now is None else now
        for import_id, open_import in list(self.imports.items()):
            if open_import.idle_since is None:
                open_import.idle_since = now
            elif now - open_import.idle_since >= open_import.lease_s:
                del self.imports[import_id]
        return not self.imports


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
