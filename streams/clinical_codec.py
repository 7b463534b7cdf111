"""The clinical agent's stored state, as versioned JSON parts of one athlete (no pickled engine internals).

An athlete's state is its events and its outbox; the engine state is derived (a restore re-folds the events), so
renaming or reshaping a domain field cannot break a restore. The parts, each `{"v": FORMAT_VERSION, ...}`:

- `periods`: the numbers of the periods (PERIOD_DAYS of event time) that hold events;
- `p<number>`: that period's events, in the event contract's JSON (each event keeps its own schema_version);
- `outbox`: the alerts sent (id -> digest, time, kind, rule, historical), those of a release not yet confirmed,
  and whether a release is due.

Beside the athletes, one part per timeline partition in the `timeline_imports` table:
- `imports`: the bulk imports open on the partition (lease, the paths each was closed along) and the last ones
  closed along every path (streams/input_progress.py: a worker that takes the partition over needs them).

Format 2 added `historical` to the outbox's alerts; parts of format 1 are still read (their alerts as sent live).

A batch rewrites only the periods it added events to, so the changelog grows by a period (~10 events) per
athlete per batch, not by the history. A period is written from the events in memory, so once the timeline has
settled (dropped its oldest events from memory), an event in the period the kept part starts in, or before, is
placed only in the whole history read back from the table (`holds`).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterable

from aromatrack.domain.engine import EngineSettings
from aromatrack.schemas.events import EventBase, dump_event, parse_event
from aromatrack.streams.alert_outbox import Outbox, SentAlert
from aromatrack.streams.clinical_timeline import AthleteTimeline, OrderKey
from aromatrack.streams.input_progress import OpenImport, PartitionProgress

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
PERIOD_DAYS = 7
PERIOD_S = PERIOD_DAYS * 86400
PERIODS_PART = b"periods"
OUTBOX_PART = b"outbox"
# Events a batch could not place (a bug): kept for the restore to place, and the athlete held until one can.
PENDING_PART = b"pending"
IMPORTS_PART = b"imports"


class StoredStateError(ValueError):
    """A stored part that this code cannot read (another format version, or damaged)."""


@dataclass(repr=False)
class ClinicalRecord:
    """One athlete's clinical state: the timeline (all events, folded), the outbox, the periods stored, and the
    events the restore placed from the pending part (not stored in their periods yet)."""

    timeline: AthleteTimeline
    outbox: Outbox
    periods: set[int]
    pending: tuple[EventBase, ...] = ()

    @classmethod
    def new(cls, athlete_id: str, settings: EngineSettings | None = None) -> "ClinicalRecord":
        return cls(AthleteTimeline(athlete_id, settings or EngineSettings()), Outbox(athlete_id), set())


def period_of(event: EventBase) -> int:
    return int(event.time.timestamp() // PERIOD_S)


def holds(record: ClinicalRecord, events: Iterable[EventBase]) -> bool:
    """Whether the events' periods are whole in memory: false for one in or before the period the settled timeline's
    kept part starts in (that period's earlier events, and the ones before, are in the table only)."""
    base = record.timeline.base
    if base is None:
        return True
    first_whole = int(base.before.time_s // PERIOD_S) + 1
    return all(period_of(event) >= first_whole for event in events)


def period_part(period: int) -> bytes:
    return b"p%d" % period


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps({"v": FORMAT_VERSION, **body}, separators=(",", ":")).encode()


def _decode(part: bytes, raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise StoredStateError(f"stored part {part.decode()!r} is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") not in READABLE_VERSIONS:
        version = body.get("v") if isinstance(body, dict) else None
        raise StoredStateError(
            f"stored part {part.decode()!r} has format version {version!r}; this code reads {READABLE_VERSIONS}")
    return body


def encode_periods(periods: Iterable[int]) -> bytes:
    return _encode({"periods": sorted(set(periods))})


def encode_events(encoded: Iterable[bytes]) -> bytes:
    """The same JSON as `_encode({"events": [...]})` of the events' JSON bodies, joined from their canonical bytes
    (`dump_event`, serialised by pydantic's core, as the timeline keeps them): a period is rewritten whole whenever
    it gains an event, and going through Python dicts and `json.dumps` cost twice as much."""
    return b'{"v":%d,"events":[' % FORMAT_VERSION + b",".join(encoded) + b"]}"


def _encode_sent(alerts: dict[str, SentAlert]) -> dict[str, Any]:
    return {
        alert_id: {"digest": sent.digest, "time": sent.time.isoformat(), "kind": sent.kind, "rule": sent.rule,
                   "historical": sent.historical}
        for alert_id, sent in alerts.items()
    }


def _decode_sent(body: dict[str, Any]) -> dict[str, SentAlert]:
    return {
        alert_id: SentAlert(item["digest"], datetime.fromisoformat(item["time"]), item["kind"], item["rule"],
                            bool(item.get("historical", False)))
        for alert_id, item in body.items()
    }


def encode_outbox(outbox: Outbox) -> bytes:
    return _encode({
        "unreleased": outbox.unreleased, "sent": _encode_sent(outbox.sent), "in_flight": _encode_sent(outbox.in_flight),
    })


def decode_outbox(athlete_id: str, raw: bytes) -> Outbox:
    body = _decode(OUTBOX_PART, raw)
    return Outbox(athlete_id, _decode_sent(body["sent"]), bool(body["unreleased"]), _decode_sent(body["in_flight"]))


def encode_imports(progress: PartitionProgress) -> bytes:
    return _encode({
        "open": {import_id: {"lease_s": open_import.lease_s, "closed_along": sorted(open_import.closed_along)}
                 for import_id, open_import in progress.imports.items()},
        "closed": list(progress.closed),
    })


def resume_progress(raw: bytes | None) -> PartitionProgress:
    """A partition's progress as a worker that takes it over starts it: the imports stored (`encode_imports`; their
    leases run afresh) and no path heard from yet."""
    progress = PartitionProgress()
    if raw is not None:
        body = _decode(IMPORTS_PART, raw)
        progress.imports = {import_id: OpenImport(float(item["lease_s"]), set(item["closed_along"]))
                            for import_id, item in body["open"].items()}
        progress.closed.extend(body["closed"])
    return progress


def period_events(timeline: AthleteTimeline, period: int) -> list[bytes]:
    """The canonical bytes of the period's events, in event-time order."""
    start = bisect.bisect_left(timeline.keys, OrderKey.first_at(period * PERIOD_S))
    end = bisect.bisect_left(timeline.keys, OrderKey.first_at((period + 1) * PERIOD_S))
    return timeline.encoded[start:end]


def event_writes(record: ClinicalRecord, added: Iterable[EventBase]) -> list[tuple[bytes, bytes]]:
    """The (part, value) writes that store the periods the `added` events fall in (each period whole, in
    event-time order), and the period list if it grew."""
    touched = {period_of(event) for event in added}
    writes = [(period_part(period), encode_events(period_events(record.timeline, period))) for period in sorted(touched)]
    if not touched <= record.periods:
        record.periods |= touched
        writes.append((PERIODS_PART, encode_periods(record.periods)))
    return writes


def pending_write(stored: bytes | None, events: Iterable[EventBase]) -> tuple[bytes, bytes]:
    """The pending part with the events added to what it held."""
    kept = [json.dumps(item, separators=(",", ":")).encode() for item in _decode(PENDING_PART, stored)["events"]] \
        if stored else []
    return PENDING_PART, encode_events([*kept, *(dump_event(event) for event in events)])


def outbox_write(record: ClinicalRecord) -> tuple[bytes, bytes]:
    return OUTBOX_PART, encode_outbox(record.outbox)


def placement_writes(record: ClinicalRecord, added: Iterable[EventBase]) -> list[tuple[bytes, bytes]]:
    """The writes that store newly placed events, with the outbox marked `unreleased` first when it was not
    already (in a bulk import an athlete gains events in many batches before its release: the mark is stored once).
    The mark goes ahead of the events it is for: a crash can keep the first writes of a batch and lose the rest,
    and stored events under an outbox that says their release is done would never have their points written (a
    restore takes a released history's points as written, and the events delivered again are recognised as
    placed)."""
    marked = record.outbox.unreleased
    record.outbox.unreleased = True
    return [*([] if marked else [outbox_write(record)]), *event_writes(record, added)]


def restore(
    athlete_id: str, read: Callable[[bytes], bytes | None], settings: EngineSettings | None = None
) -> ClinicalRecord | None:
    """The athlete's stored record, ready to place events in: folded at once when no release is due (a confirmed
    release wrote its points, so the next fold returns only what changes), else left for the release's fold,
    which then returns every point (a crash may have come before some were written)."""
    record = read_record(athlete_id, read, settings)
    if record is not None and not record.outbox.unreleased:
        record.timeline.fold()
    return record


def read_record(
    athlete_id: str, read: Callable[[bytes], bytes | None], settings: EngineSettings | None = None
) -> ClinicalRecord | None:
    """The athlete's record rebuilt from `read(part)` (the events re-folded with `settings`; the pending part's
    events placed among them), or None for an athlete never stored."""
    periods_raw = read(PERIODS_PART)
    outbox_raw = read(OUTBOX_PART)
    pending_raw = read(PENDING_PART)
    if periods_raw is None and outbox_raw is None and pending_raw is None:
        return None
    events: list[EventBase] = []
    periods = set(_decode(PERIODS_PART, periods_raw)["periods"]) if periods_raw else set()
    for period in sorted(periods):
        raw = read(period_part(period))
        if raw is not None:
            events.extend(parse_event(item) for item in _decode(period_part(period), raw)["events"])
    pending = [parse_event(item) for item in _decode(PENDING_PART, pending_raw)["events"]] if pending_raw else []
    outbox = decode_outbox(athlete_id, outbox_raw) if outbox_raw else Outbox(athlete_id)
    return ClinicalRecord(AthleteTimeline.of(athlete_id, [*events, *pending], settings), outbox, periods, tuple(pending))
