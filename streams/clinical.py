"""Clinical agent: the pure engine (`domain.engine`) on the live timeline, alerts to the alerts topic.

Ordering. One athlete's events reach the timeline from several input topics, so arrival order can differ from
event-time order, while `aromatrack evaluate` sorts by event time. To give the same alerts, each athlete's
record (stored in the `clinical_journal` table, below) keeps a snapshot of the engine state, the tail of recent events (sorted
by event time) and the engine state after the tail. An event that arrives in order is stepped onto that state
(the common, O(1) case); one that arrives out of order is inserted into the tail and the engine is re-folded
from the snapshot (once per batch), exactly as `evaluate` would order it. New alerts are not sent at once: they are held for a
reorder grace (`CLINICAL_GRACE_S`, arrival time) in the record, and an alert that a re-fold no longer produces
is dropped before it is sent. A worker timer sends the alerts whose grace has passed and records their ids as
emitted, so replays and restarts never send an alert id twice (a crash between the send and the table update can
resend one; consumers drop repeats by `Alert.delivery_key`, the alert id and version: held and emitted alerts
are keyed by it too, since an update of an alert shares its id). The table chooses each key's partition from the athlete
(`streams.app.AthleteKeyedTable`), so the timer may update it outside stream iteration and every key's
changelog partition still matches its timeline partition. Athletes with held alerts are tracked in memory, and again from the table once it is
recovered, so alerts held at a stop go out after a fresh grace.

Bounded memory: when the tail grows past `MAX_TAIL` events, its oldest half goes into the snapshot, so at
least `MAX_TAIL // 2` events (about a month of a typical athlete's history) can still be placed in order.
An event older than the snapshot can no longer be placed in order; it is applied on arrival and counted in
the log (without values), the one case where the stream can differ from `evaluate`. It is folded into the
snapshot too, so re-folds and restarts keep it (there, before the tail).

Storage: a record is stored in parts, so the changelog grows by about an event per event, not by a record per
batch (the whole pickled record, ~60 kB, written on every batch made the changelog 117,000 x 76 kB after 160,000
backfill events: 8 GB, and the local broker keeps its topics in memory). The `clinical_journal` table holds per
athlete the `base` (snapshot, the tail at the last compaction, an epoch number, and the re-delivery guards:
the highest timeline offset applied and the last ids compacted), the `alerts` (held and emitted ids) and one
journal entry per event added to the tail since that compaction (`e<epoch>.<n>`).
A compaction writes a new base with the next epoch, then deletes the old epoch's entries (a crash in between
leaves entries that the next load deletes). The current state is not stored: a load folds the tail onto the
snapshot again, and holds what that fold raises that is neither held nor emitted (alerts of events stored just
before a crash).

Cost: the worker keeps the records it owns in memory (`_records`, dropped at every rebalance), with the tail's
events parsed. Unpickling a record with faust's restricted unpickler and re-parsing its tail on every batch cost
more than the engine itself (a backfill profile: ~0.9 ms and ~0.5 ms per event of ~3.5 ms). In memory too, every
`CHECKPOINT_EVERY` events the tail keeps the engine state before that event, so a re-fold starts at the last
checkpoint before the earliest inserted event instead of at the snapshot, and compaction takes a checkpoint
as the new snapshot.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Callable

import faust
from faust.serializers.codecs import RestrictedUnpickler, dumps, loads

from aromatrack.domain import engine
from aromatrack.schemas import series, topics
from aromatrack.schemas.events import Alert, EventBase, EventError, dump_event, parse_event
from aromatrack.schemas.series import Point
from aromatrack.streams.app import (
    PART_SEPARATOR, app, athlete_keyed_table, dead_letter, influx, part_key, timeline_topic,
)

log = logging.getLogger(__name__)

# Live events arrive within milliseconds of each other across topics; a bulk backfill skews topics by
# seconds, so it should run with a longer grace (or the earliest alerts can precede an earlier event).
CLINICAL_GRACE_S = float(os.environ.get("AROMATRACK_CLINICAL_GRACE_S", "0.3"))
MAX_TAIL = 128
CHECKPOINT_EVERY = 16
EMITTED_MEMORY = 2000  # alert ids remembered per athlete (newest kept)
# Ids of the events last folded into the snapshot: an upstream stage that forwards again after a restart (at
# least once) re-sends recent events under new offsets; without this they were applied a second time.
COMPACTED_MEMORY = 256
SETTINGS = engine.EngineSettings()

alerts_topic = app.topic(topics.ALERTS_TOPIC, value_serializer="raw", key_serializer="raw")
# The record holds engine dataclasses, so the changelog is pickled, with faust's restricted unpickler
# allowing only these classes (a forged changelog message cannot construct anything else).
RestrictedUnpickler.ALLOWED_CLASSES.update({
    "aromatrack.domain.engine": frozenset({"AthleteState", "OpenAlert", "LoadState"}),
    "aromatrack.domain.rules": frozenset({"EventRef", "Symptoms"}),
    "aromatrack.domain.labs": frozenset({"Lab"}),
    "aromatrack.domain.bodycomp": frozenset({"BodyFatTrend"}),
    "aromatrack.domain.correlation": frozenset({"E2Pair"}),
    "pydantic_core._pydantic_core": frozenset({"TzInfo"}),
})
journal_table = athlete_keyed_table("clinical_journal")
# Athletes with held alerts -> when their earliest held alert was held (monotonic), so the timer loads only
# records with something due; and one lock so the agent and the timer never interleave a record update.
with_held: dict[bytes, float] = {}
record_lock = asyncio.Lock()



@dataclass(repr=False)  # no lab values or doses in crash logs
class ClinicalRecord:
    """One athlete's stream state (see the module docstring); stored in parts by `stored_changes`."""

    athlete_id: str
    snapshot: engine.AthleteState
    current: engine.AthleteState
    tail: list[tuple[tuple, bytes]] = field(default_factory=list)  # (order key, event JSON), sorted
    tail_ids: set[str] = field(default_factory=set)
    held: dict[str, tuple[bytes, float]] = field(default_factory=dict)  # delivery key -> (alert JSON, held since)
    emitted: dict[str, float] = field(default_factory=dict)  # delivery key -> alert time (epoch s)
    parsed: dict[str, EventBase] = field(default_factory=dict)  # the tail's events, parsed
    # (tail key, pickled engine state before that tail event), in tail order
    checkpoints: list[tuple[tuple, bytes]] = field(default_factory=list)
    # What the stored parts lack: tail events not yet journaled, a changed snapshot, changed alerts.
    unsaved: list[bytes] = field(default_factory=list)
    snapshot_changed: bool = True
    saved_held: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    epoch: int = 0
    journal_length: int = 0
    applied_offset: int = -1  # the highest timeline offset applied (all of an athlete's events share a partition)
    compacted_ids: list[str] = field(default_factory=list)  # newest last, COMPACTED_MEMORY kept

    def tail_events(self, entries: list[tuple[tuple, bytes]]) -> list[EventBase]:
        """The events of these tail entries, parsed once per worker."""
        return [
            self.parsed.get(key[2]) or self.parsed.setdefault(key[2], parse_event(raw)) for key, raw in entries
        ]


def _key(event: EventBase) -> tuple:
    return (event.time.timestamp(), engine.type_rank(event), event.event_id or "")


def _fold(state: engine.AthleteState, events: list[EventBase]) -> list[tuple[EventBase, engine.Outcome]]:
    return [(event, engine.step(state, event, SETTINGS)[1]) for event in events]


def _checkpoint_index(record: ClinicalRecord, checkpoint: tuple[tuple, bytes]) -> int:
    return bisect.bisect_left(record.tail, (checkpoint[0],))


def _fold_tail(record: ClinicalRecord, state: engine.AthleteState, start: int) -> list[tuple[EventBase, engine.Outcome]]:
    """Fold tail[start:] onto `state`, leaving a checkpoint every CHECKPOINT_EVERY events. A checkpoint sits only
    where the event time strictly increases, so "alert time < checkpoint time" means "raised before it"."""
    last = _checkpoint_index(record, record.checkpoints[-1]) if record.checkpoints else 0
    results = []
    for index in range(start, len(record.tail)):
        key, _ = record.tail[index]
        if index - last >= CHECKPOINT_EVERY and record.tail[index - 1][0][0] < key[0]:
            record.checkpoints.append((key, pickle.dumps(state)))
            last = index
        results.extend(_fold(state, record.tail_events(record.tail[index : index + 1])))
    return results


def _remember_compacted(record: ClinicalRecord, event_ids: list[str]) -> None:
    record.compacted_ids = [*record.compacted_ids, *event_ids][-COMPACTED_MEMORY:]


def _compact(record: ClinicalRecord) -> None:
    """Drop the oldest half of a long tail into the snapshot (its alerts were already held or sent): the
    checkpoint nearest the middle becomes the snapshot, or the old events are folded into it if there is none."""
    if len(record.tail) <= MAX_TAIL:
        return
    cut = len(record.tail) // 2
    usable = [c for c in record.checkpoints if _checkpoint_index(record, c) <= cut]
    if usable:
        cut = _checkpoint_index(record, usable[-1])
        record.snapshot = pickle.loads(usable[-1][1])
    else:
        _fold(record.snapshot, record.tail_events(record.tail[:cut]))
    _remember_compacted(record, [key[2] for key, _ in record.tail[:cut]])
    record.tail = record.tail[cut:]
    record.snapshot_changed = True
    record.checkpoints = [c for c in record.checkpoints if c[0] > record.tail[0][0]]
    record.tail_ids = {key[2] for key, _ in record.tail}
    record.parsed = {event_id: event for event_id, event in record.parsed.items() if event_id in record.tail_ids}


def delivered_once(record: ClinicalRecord, delivered: list[tuple[int, EventBase]]) -> list[EventBase]:
    """The (timeline offset, event) pairs past the record's applied offset, as events; the offset advances.

    After a restart, the timeline is delivered again from the last committed offset, which can reach back past
    events already folded into the snapshot: no tail id catches those, and they were applied twice. Every
    event in the snapshot has an offset at or below the one stored with it (the base), and the tail's ids
    catch the rest."""
    fresh = [event for offset, event in delivered if offset > record.applied_offset]
    record.applied_offset = max([record.applied_offset, *(offset for offset, _ in delivered)])
    return fresh


def apply_events(
    record: ClinicalRecord, events: list[EventBase], now: float
) -> list[tuple[EventBase, engine.Outcome]]:
    """Place a batch of one athlete's events in event-time order and return the engine outcomes that changed.

    Events that extend the tail are stepped on the current state; if any lands inside the tail, the engine is
    re-folded from the snapshot once for the whole batch (a backfill scrambles arrival order across input
    topics, and one re-fold per event made that quadratic)."""
    outcomes: list[tuple[EventBase, engine.Outcome]] = []
    old_length = len(record.tail)
    first_position = old_length
    for event in events:
        if event.event_id in record.tail_ids or event.event_id in record.compacted_ids:
            continue  # a replayed or retried event
        key, raw = _key(event), dump_event(event)
        if record.tail and key < record.tail[0][0] and record.snapshot.last_time_s is not None:
            log.info("clinical: an event arrived older than the compacted history; applied out of order")
            outcomes.append((event, engine.step(record.current, event, SETTINGS)[1]))
            engine.step(record.snapshot, event, SETTINGS)
            _remember_compacted(record, [event.event_id or ""])
            record.checkpoints, record.snapshot_changed = [], True
            continue
        position = bisect.bisect(record.tail, (key, raw))
        record.tail.insert(position, (key, raw))
        record.tail_ids.add(event.event_id)
        record.parsed[event.event_id] = event
        record.unsaved.append(raw)
        first_position = min(first_position, position)
    if first_position >= old_length:
        return outcomes + _fold_tail(record, record.current, old_length)
    # Checkpoints after the earliest inserted event lack it; re-fold from the last one before it.
    record.checkpoints = [c for c in record.checkpoints if c[0] < record.tail[first_position][0]]
    start, state = 0, pickle.dumps(record.snapshot)  # pickle round trip: a deep copy, much faster than deepcopy
    if record.checkpoints:
        start, state = _checkpoint_index(record, record.checkpoints[-1]), record.checkpoints[-1][1]
    record.current = pickle.loads(state)
    refolded = _fold_tail(record, record.current, start)
    _replace_held(record, refolded, now, record.tail[start][0][0])
    return outcomes + refolded[first_position - start :]


def _replace_held(
    record: ClinicalRecord, outcomes: list[tuple[EventBase, engine.Outcome]], now: float, refold_start: float
) -> None:
    """After a re-fold from `refold_start` (event time), hold what the corrected order raises (an alert whose id
    is already held takes the corrected content and keeps its hold time); drop what it no longer raises, except
    alerts from events before the re-fold (in the snapshot or before the checkpoint), which it cannot see."""
    kept = {
        alert_id: held
        for alert_id, held in record.held.items()
        if Alert.model_validate_json(held[0]).time.timestamp() < refold_start
    }
    for _, outcome in outcomes:
        for alert in outcome.alerts:
            if alert.delivery_key not in record.emitted:
                since = record.held.get(alert.delivery_key, (b"", now))[1]
                kept[alert.delivery_key] = (dump_event(alert), since)
    record.held = kept


def hold_new_alerts(record: ClinicalRecord, outcomes: list[tuple[EventBase, engine.Outcome]], now: float) -> None:
    """Hold the alerts not yet emitted or held."""
    for _, outcome in outcomes:
        for alert in outcome.alerts:
            if alert.delivery_key not in record.emitted and alert.delivery_key not in record.held:
                record.held[alert.delivery_key] = (dump_event(alert), now)


def due_alerts(record: ClinicalRecord, now: float) -> list[Alert]:
    """Held alerts whose grace has passed, moved to emitted (oldest ids forgotten past EMITTED_MEMORY)."""
    due = [key for key, (_, since) in record.held.items() if now - since >= CLINICAL_GRACE_S]
    alerts = [Alert.model_validate_json(record.held.pop(key)[0]) for key in due]
    for alert in alerts:
        record.emitted[alert.delivery_key] = alert.time.timestamp()
    if len(record.emitted) > EMITTED_MEMORY:
        newest = sorted(record.emitted.items(), key=lambda item: item[1])[-EMITTED_MEMORY:]
        record.emitted = dict(newest)
    return sorted(alerts, key=lambda alert: (alert.time, alert.rule))


def outcome_points(event: EventBase, outcome: engine.Outcome) -> list[Point]:
    """Derived series for one engine outcome: the body-fat trend and the E2 correlation context."""
    tags = {"athlete_id": event.athlete_id}
    points = []
    if outcome.trend is not None:
        trend = outcome.trend
        points.append(series.BODY_FAT_TREND.point(event.time, tags, {
            "smoothed_pct": trend.smoothed_pct,
            "slope_pct_per_week": trend.slope_pct_per_week,
            "change_since_e2_pct": trend.change_since_e2_pct,
        }))
    if outcome.e2 is not None:
        e2 = outcome.e2
        points.append(series.E2_CORRELATION.point(event.time, tags, {
            "e2_pg_ml": e2.e2_pg_ml,
            "body_fat_pct": e2.body_fat_pct,
            "body_fat_change_pct": e2.body_fat_change_pct,
            "weekly_load": e2.weekly_load,
            "anastrozole_weekly_mg": e2.anastrozole_weekly_mg,
            "slope_pg_ml_per_pct": e2.slope_pg_ml_per_pct,
            "pairs": e2.pairs,
            "predicted_e2_pg_ml": e2.predicted_e2_pg_ml,
        }))
    return points


def alert_point(alert: Alert) -> Point:
    tags = {"athlete_id": alert.athlete_id, "kind": alert.kind, "rule": alert.rule, "severity": alert.severity}
    return series.ALERTS.point(alert.time, tags, {"alert_id": alert.alert_id, "summary": alert.summary})


def _journal_part(epoch: int, index: int) -> bytes:
    return b"e%d.%d" % (epoch, index)


def stored_changes(record: ClinicalRecord) -> list[tuple[bytes, bytes | None]]:
    """The (part, value) writes that bring an athlete's stored parts up to date with the record (None deletes),
    in the order they must be written; the record counts as saved afterwards."""
    writes: list[tuple[bytes, bytes | None]] = []
    if record.snapshot_changed:
        base = (
            record.snapshot, [raw for _, raw in record.tail], record.epoch + 1, record.applied_offset,
            record.compacted_ids,
        )
        writes.append((b"base", dumps("pickle_restricted", base)))
        writes += [(_journal_part(record.epoch, index), None) for index in range(record.journal_length)]
        record.epoch, record.journal_length, record.snapshot_changed = record.epoch + 1, 0, False
    else:
        for raw in record.unsaved:
            writes.append((_journal_part(record.epoch, record.journal_length), raw))
            record.journal_length += 1
    record.unsaved = []
    if record.held != record.saved_held:
        writes.append((b"alerts", dumps("pickle_restricted", (record.held, record.emitted))))
        record.saved_held = dict(record.held)
    return writes


def restored_record(
    athlete_id: str, read: Callable[[bytes], bytes | None], now: float
) -> tuple[ClinicalRecord | None, list[bytes]]:
    """The record rebuilt from its stored parts (`read(part)`), or None for an athlete never stored; and the parts
    to delete (journal entries of an epoch before the base's, left by a crash during a compaction)."""
    stored_base = read(b"base")
    if stored_base is None:
        return None, []
    snapshot, base_tail, epoch, applied_offset, compacted_ids = loads("pickle_restricted", stored_base)
    journal: list[bytes] = []
    while (raw := read(_journal_part(epoch, len(journal)))) is not None:
        journal.append(raw)
    stale: list[bytes] = []
    while read(_journal_part(epoch - 1, len(stale))) is not None:
        stale.append(_journal_part(epoch - 1, len(stale)))
    stored_alerts = read(b"alerts")
    held, emitted = loads("pickle_restricted", stored_alerts) if stored_alerts else ({}, {})
    # Held since `now`: the stored times are another process's monotonic clock (another host's, after a move).
    held = {alert_id: (alert, now) for alert_id, (alert, _) in held.items()}
    record = ClinicalRecord(
        athlete_id, snapshot, pickle.loads(pickle.dumps(snapshot)), held=held, emitted=emitted,
        snapshot_changed=False, saved_held=dict(held), epoch=epoch, journal_length=len(journal),
        applied_offset=applied_offset, compacted_ids=compacted_ids,
    )
    events = sorted((parse_event(raw) for raw in base_tail + journal), key=_key)
    hold_new_alerts(record, apply_events(record, events, now), now)
    record.unsaved = []
    return record, stale


_records: dict[bytes, ClinicalRecord] = {}


def load_record(athlete_key: bytes) -> ClinicalRecord | None:
    record = _records.get(athlete_key)
    if record is None:
        record, stale = restored_record(
            athlete_key.decode(), lambda part: journal_table.get(part_key(athlete_key, part)), time.monotonic()
        )
        for part in stale:
            del journal_table[part_key(athlete_key, part)]
        if record is not None:
            _records[athlete_key] = record
    return record


def save_record(athlete_key: bytes, record: ClinicalRecord) -> None:
    for part, value in stored_changes(record):
        if value is None:
            journal_table.pop(part_key(athlete_key, part), None)
        else:
            journal_table[part_key(athlete_key, part)] = value


@app.on_partitions_revoked.connect
async def forget_records_on_revoke(app: faust.App, revoked: set, **kwargs: object) -> None:
    """A rebalance may move an athlete to another worker; the table is the source of truth after it."""
    _records.clear()


@app.on_partitions_assigned.connect
async def forget_records_on_assign(app: faust.App, assigned: set, **kwargs: object) -> None:
    _records.clear()


def track_held(athlete_key: bytes, record: ClinicalRecord) -> None:
    if record.held:
        with_held[athlete_key] = min(since for _, since in record.held.values())
    else:
        with_held.pop(athlete_key, None)


@journal_table.on_recover
async def track_alerts_held_at_the_last_stop() -> None:
    """Once the table is recovered (worker start, rebalance): athletes whose stored alerts include held ones are
    tracked again, so those alerts go out after a fresh grace instead of waiting for the athlete's next event."""
    suffix = PART_SEPARATOR + b"alerts"
    async with record_lock:
        for key in [key for key in journal_table.keys() if key.endswith(suffix)]:
            held, _ = loads("pickle_restricted", journal_table[key])
            if held:
                athlete_key = key[: -len(suffix)]
                record = load_record(athlete_key)
                if record is not None:
                    track_held(athlete_key, record)


@app.timer(interval=CLINICAL_GRACE_S / 4)
async def send_due_alerts() -> None:
    """Send held alerts whose grace has passed, record them as emitted, and store them in one InfluxDB write.

    Only records with a due alert are unpickled: with many athletes holding alerts (a bulk replay with a long
    grace), loading every one on every tick took longer than the tick. One write per tick, not per athlete: 200
    athletes' alerts falling due together took ~2 s of serial writes (benchmarks/bench_alert_latency.py)."""
    sent: list[Alert] = []
    for athlete_key, held_since in list(with_held.items()):
        if time.monotonic() - held_since < CLINICAL_GRACE_S:
            continue
        async with record_lock:
            record = load_record(athlete_key)
            if record is None:
                with_held.pop(athlete_key, None)
                continue
            alerts = due_alerts(record, time.monotonic())
            for alert in alerts:
                await alerts_topic.send(key=athlete_key, value=dump_event(alert))
            if alerts and not (record.unsaved or record.snapshot_changed):
                save_record(athlete_key, record)  # else the agent saves it once its batch's points are written
            track_held(athlete_key, record)
        sent.extend(alerts)
    if sent:
        await influx().write([alert_point(alert) for alert in sent])


BATCH_SIZE = 500
BATCH_WINDOW_S = 0.02


@app.agent(timeline_topic, name="aromatrack.clinical")
async def clinical(stream: faust.StreamT) -> None:
    """Per batch: each athlete's record is loaded and saved once and the derived points are written in one
    request (per event, the pickled record and an InfluxDB request each cost more than the engine step)."""
    async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WINDOW_S):
        by_athlete: dict[bytes, list[tuple[int, EventBase]]] = {}
        for message in batch:
            try:
                parsed = parse_event(message.value)
            except EventError as exc:
                await dead_letter(message.value, str(exc), topics.TIMELINE_TOPIC)
                continue
            by_athlete.setdefault(parsed.athlete_id.encode(), []).append((message.message.offset, parsed))
        points = []
        async with record_lock:
            for athlete_key, delivered in by_athlete.items():
                athlete_id = delivered[0][1].athlete_id
                record = load_record(athlete_key) or ClinicalRecord(
                    athlete_id, engine.AthleteState(athlete_id), engine.AthleteState(athlete_id)
                )
                try:
                    outcomes = apply_events(record, delivered_once(record, delivered), time.monotonic())
                    _compact(record)
                except Exception:
                    _records.pop(athlete_key, None)  # half-applied in memory; the table has the last saved one
                    raise
                hold_new_alerts(record, outcomes, time.monotonic())
                _records[athlete_key] = record
                track_held(athlete_key, record)
                points.extend(point for event, outcome in outcomes for point in outcome_points(event, outcome))
        # Points first, records after: a crash in between re-delivers the batch to records that lack it, which
        # rewrite the same points, instead of to records that skip it as seen and leave its points unwritten.
        await influx().write(points)
        async with record_lock:
            for athlete_key in by_athlete:
                if athlete_key in _records:
                    save_record(athlete_key, _records[athlete_key])
