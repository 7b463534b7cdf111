"""Clinical agent: the pure engine on the live timeline; alerts to the alerts topic once the input is in.

A thin faust wrapper around three pure parts:
- `clinical_timeline.AthleteTimeline`: the athlete's whole history in event-time order, re-folded from the last
  checkpoint when an event lands inside it, so its alerts are exactly `aromatrack evaluate`'s for the same events;
- `input_progress.PartitionProgress`: per timeline partition, whether every input path (each ingest topic, the
  summary topic, the FIT paths) has been consumed up to what was there (the watermark, from the stages'
  progress markers on the timeline);
- `alert_outbox.Outbox`: what has been sent; a release sends new and changed alerts and withdraws sent ones the
  history no longer raises.

Per batch: the timeline's messages (one event, or a stage's `timeline.batch` of one athlete's events:
schemas/timeline.py) are validated event by event, the events placed in their athletes' timelines (no fold yet) and the changed periods stored
(`clinical_codec`, versioned JSON in the `clinical_history` table, keyed by athlete and part so every key shares
its athlete's partition), the outbox marked `unreleased` ahead of them. Then, for each partition whose watermark is
complete, the athletes with a release due are folded once (from where their history changed), the outboxes
released, and the points whose values changed written before the release is confirmed. Live, where lag is near zero, the stage markers follow
their events within milliseconds, so alerts go out with the batch; in a bulk import, nothing is folded or sent
for a partition until all of its inputs are in (one fold per athlete instead of one per out-of-order batch), and
an event that arrives later still (a lab entered weeks late) is placed at its time and the difference released
with withdrawals.

Imports do not page: a release marks each alert version it sends for the first time `historical` when its time
is more than the `historical_after_days` setting before the release (`engine.is_historical`; the release time is
the raise time), so a bulk import's alerts are stored as history (alerts topic, InfluxDB) for the notifier to
summarise, while live alerts, released within seconds of their event, are not; `evaluate --as-of` marks the same
way for a history received whole at its as-of time. The engine settings (the labs' default assays, the
historical age) come from the worker's settings (`aromatrack worker --lab-method --historical-after`, or
AROMATRACK_LAB_METHODS and AROMATRACK_HISTORICAL_AFTER_DAYS), which evaluate takes by default.

Clocks: a release runs the athlete's clock on to the wall clock (`alerts(as_of_s=now)`: the same alerts as
`aromatrack evaluate --as-of`), and remembers when the next scheduled recheck falls due; a timer releases the
athletes whose due time has come, so a quiet athlete's recheck is not left waiting for the next event.

Restarts: the table holds every event, so a re-delivered event is recognised by its id whatever its age, and a
restore re-folds the events (no engine state is stored). An outbox stays `unreleased` from the store of new
events until its release is confirmed, so after a crash anywhere in between the athlete is released again once
the stages' markers (repeated every heartbeat) complete its partition, and that first fold of the restored
history rewrites all of its points. What each partition knows of bulk imports is stored with its batches too (the
`timeline_imports` table), so a worker that takes the partition over, or keeps it through a rebalance, still
knows which imports are open and which paths have closed them.

Holds: one athlete's history must not stop every other's. When an athlete's stored history cannot be read (an
event stored before the contract refused its kind, a newer format) or folded, or its new events cannot be placed (a
bug), that athlete is held: nothing is released for it, its record leaves memory, its unplaced events wait in its
`pending` part (placed by every restore, so the hold lasts as long as the cause), and the log names it by a digest
and the error's type, never its id or values. A worker without the cause places and releases it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import timezone
from typing import Awaitable, Callable, Iterable, Mapping, MutableMapping

import faust

from aromatrack.domain import engine
from aromatrack.schemas import series, topics
from aromatrack.schemas.events import Alert, EventBase, EventError, WorkoutSummary, dump_event
from aromatrack.schemas.timeline import parse_timeline_message
from aromatrack.schemas.progress import INPUT_HEADER, MARKER_HEADER, MarkerError, header, marker_found_on
from aromatrack.schemas.series import Point
from aromatrack.streams import fencing
from aromatrack.streams.alert_outbox import (
    AlertPointIdentity, OutboxMessage, stale_alert_points, standing_alerts_sharing,
)
from aromatrack.streams.app import PART_SEPARATOR, AthleteKeyedTable, Streams, part_key
from aromatrack.streams.delivery import DeliveryGaps
from aromatrack.streams.clinical_codec import (
    OUTBOX_PART, PENDING_PART, ClinicalRecord, decode_outbox, encode_imports, holds, outbox_write, pending_write,
    placement_writes, restore, resume_progress,
)
from aromatrack.streams.input_progress import PartitionProgress

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
BATCH_WINDOW_S = 0.02
# Records kept in memory (the least recently used are dropped; the table has them whole): memory stays flat in
# the number of athletes a worker owns but does not touch.
MAX_RECORDS = 1000
# How often the worker runs its athletes' clocks on to the wall clock (scheduled rechecks fall due with no event).
CLOCK_INTERVAL_S = 10.0
# Stale alert points removed per InfluxDB request (the statements travel in the request's URL).
STALE_DELETES_PER_REQUEST = 50


@dataclass
class Clinical:
    """The clinical agent's dependencies and its worker's state (`register` builds it)."""

    streams: Streams
    history_table: AthleteKeyedTable
    imports_table: MutableMapping[bytes, bytes]  # timeline partition -> its imports (`clinical_codec.encode_imports`)
    alerts_topic: faust.TopicT
    # The labs' default assays and the historical age, from the worker's settings (evaluate's by default too).
    engine_settings: engine.EngineSettings
    records: OrderedDict[bytes, ClinicalRecord] = field(default_factory=OrderedDict)
    progress: dict[int, PartitionProgress] = field(default_factory=dict)
    unreleased: dict[int, set[bytes]] = field(default_factory=dict)  # timeline partition -> athletes with a release due
    next_due: dict[bytes, float] = field(default_factory=dict)  # athlete -> when its clock makes a recheck fall due
    # Athletes whose alerts are held now (`_hold`) until a release of theirs succeeds: counted on /readyz.
    held: set[bytes] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    gaps: DeliveryGaps | None = None  # what faust skipped around a rebalance (streams/delivery.py); set by `register`
    # Events of one athlete kept in memory (the worker's `timeline_events` setting): a release settles a longer
    # timeline to about a third of it (1,500 and 500 by default; a year is ~500 events), so memory stays flat in
    # the length of the histories too. An event older than the kept part (a lab entered a year late) reads that
    # athlete's whole history back from the table.
    timeline_events: int = 1500
    # Each batch's workout summaries in arrival order, for the coaching boards' training-load model
    # (`workouts.count_summaries`), inside the batch so its table writes commit with the batch's offsets.
    on_summaries: Callable[[list[WorkoutSummary]], Awaitable[None]] | None = None


def alert_point(alert: Alert) -> Point:
    tags = {"athlete_id": alert.athlete_id, "kind": alert.kind, "rule": alert.rule, "severity": alert.severity}
    return series.ALERTS.point(
        alert.time, tags, {"alert_id": alert.alert_id, "summary": alert.summary, "historical": alert.historical})


def _influxql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def alert_points_delete(identities: Iterable[AlertPointIdentity]) -> str:
    """InfluxQL that removes alerts' points, one DELETE statement each in one request, so the open-alerts table
    and annotations stop showing an alert the whole history no longer supports, or an updated alert twice.
    One request per point cost ~20 ms each: 0.8 s of a bulk import's last release for 44 points."""
    statements = []
    for identity in identities:
        moment = identity.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        statements.append(
            f'DELETE FROM "{series.ALERTS.measurement}" WHERE "athlete_id" = {_influxql_string(identity.athlete_id)}'
            f' AND "kind" = {_influxql_string(identity.kind)} AND "rule" = {_influxql_string(identity.rule)}'
            f" AND time = '{moment}'"
        )
    return ";".join(statements)


def _without_values(cause: Exception) -> str:
    """What went wrong, never the values: the field an EventError names first (its message may go on to quote
    values), the part a StoredStateError names; of any other error only its type."""
    named = f": {str(cause).split(':')[0]}" if isinstance(cause, ValueError) else ""
    return f"{type(cause).__name__}{named}"


def _athlete_digest(athlete_key: bytes) -> str:
    """The athlete as logs name it, as they name workouts: an id may be a person's e-mail address."""
    return hashlib.sha256(athlete_key).hexdigest()[:12]


class HistoryUnreadable(Exception):
    """The athlete's stored history holds what this worker cannot read: an event stored before the contract
    refused its kind (a time InfluxDB cannot store, a label with a line break), a format newer than this worker,
    or what a bug in the restore trips on. Its alerts are held rather than released from part of the history, and
    the agent goes on with the other athletes: such a history stopped the whole worker at every restart."""

    def __init__(self, athlete_key: bytes, cause: Exception) -> None:
        self.reason = _without_values(cause)
        super().__init__(f"the stored history of athlete {_athlete_digest(athlete_key)} cannot be read "
                         f"({self.reason}); its alerts are held until it is repaired")


@dataclass(frozen=True)
class ReadyRelease:
    """An athlete's folded record, its alerts with the clock run on to the release's time, and when its clock next
    makes a recheck fall due (None: nothing is scheduled)."""

    record: ClinicalRecord
    alerts: dict[str, Alert]
    next_due_s: float | None


def _hold(ctx: Clinical, athlete_key: bytes, cause: Exception, failed: str = "the history cannot be folded",
          kept: str = "") -> None:
    """Hold the athlete: its alerts are not released from part of its history while the other athletes' go out. Its
    record leaves memory (its timeline may be half changed), it is counted among the held (`Clinical.held`, on
    /readyz) until one of its releases succeeds, and the log names it by a digest, with what failed and why without
    the values, and what is kept. The table keeps every event and the stored outbox still owes a release, so the
    athlete's next event, or a restart, tries again."""
    ctx.records.pop(athlete_key, None)
    ctx.held.add(athlete_key)
    held = str(cause) if isinstance(cause, HistoryUnreadable) else (
        f"athlete {_athlete_digest(athlete_key)}: {failed} ({_without_values(cause)}); its alerts are held until a "
        "worker can")
    log.error("%s%s", held, f"; {kept}" if kept else "")


def _keep_pending(ctx: Clinical, athlete_key: bytes, events: list[EventBase], cause: Exception) -> None:
    """Events that could not be placed (the athlete's stored history cannot be read, or a bug while placing):
    stored in the athlete's pending part, which every restore places among its history (and fails on, holding
    the athlete, while the cause lasts), so nothing is lost and nothing is released from part of the history."""
    key = part_key(athlete_key, PENDING_PART)
    _, value = pending_write(ctx.history_table.get(key), events)
    ctx.history_table[key] = value
    _hold(ctx, athlete_key, cause, "new events cannot be placed", f"{len(events)} new events are kept pending")


def _load(ctx: Clinical, athlete_key: bytes, athlete_id: str) -> ClinicalRecord:
    """The athlete's record, from memory or restored from the table (`clinical_codec.restore`); HistoryUnreadable
    when the stored history cannot be read."""
    record = ctx.records.get(athlete_key)
    if record is None:
        try:
            record = restore(athlete_id, lambda part: ctx.history_table.get(part_key(athlete_key, part)),
                             ctx.engine_settings)
        except Exception as exc:  # noqa: BLE001 - EventError, StoredStateError, a bug: the same hold for each
            raise HistoryUnreadable(athlete_key, exc) from None
        record = record or ClinicalRecord.new(athlete_id, ctx.engine_settings)
        if record.pending:  # placed at last (a worker without the bug): into their periods, with a release owed
            _store(ctx, athlete_key, placement_writes(record, record.pending))
            ctx.history_table.pop(part_key(athlete_key, PENDING_PART), None)
            ctx.unreleased.setdefault(_partition_of(ctx, athlete_key), set()).add(athlete_key)
            record.pending = ()
        ctx.records[athlete_key] = record
        while len(ctx.records) > MAX_RECORDS:
            ctx.records.popitem(last=False)
    ctx.records.move_to_end(athlete_key)
    return record


def _load_holding(ctx: Clinical, athlete_key: bytes, events: list[EventBase]) -> ClinicalRecord:
    """The athlete's record with the events' periods whole in memory: read back from the table whole when its
    timeline has settled past them (every placed event is stored with its batch, so the table has it all)."""
    record = _load(ctx, athlete_key, events[0].athlete_id)
    if holds(record, events):
        return record
    log.info("an event older than the timeline kept in memory: the athlete's history is read back whole")
    del ctx.records[athlete_key]
    return _load(ctx, athlete_key, events[0].athlete_id)


def _store(ctx: Clinical, athlete_key: bytes, writes: list[tuple[bytes, bytes]]) -> None:
    for part, value in writes:
        ctx.history_table[part_key(athlete_key, part)] = value


def _imports_key(partition: int) -> bytes:
    return str(partition).encode()


def _progress(ctx: Clinical, partition: int) -> PartitionProgress:
    """The partition's progress; after a (re)assignment, resumed from the imports stored with the last batch."""
    progress = ctx.progress.get(partition)
    if progress is None:
        progress = ctx.progress[partition] = resume_progress(ctx.imports_table.get(_imports_key(partition)))
    return progress


def _store_imports(ctx: Clinical, partitions: Iterable[int]) -> None:
    """The partitions' imports, where they changed, stored with the batch that changed them."""
    for partition in partitions:
        if partition in ctx.progress:
            encoded = encode_imports(ctx.progress[partition])
            if ctx.imports_table.get(_imports_key(partition)) != encoded:
                ctx.imports_table[_imports_key(partition)] = encoded


def forget_on_revoke(ctx: Clinical) -> None:
    """A rebalance may move athletes to another worker; the tables are the source of truth after it, and the
    markers start each partition's watermark afresh (its imports are resumed from the table)."""
    ctx.records.clear()
    ctx.progress.clear()
    ctx.unreleased.clear()
    ctx.next_due.clear()
    ctx.held.clear()


def track_unreleased_at_the_last_stop(ctx: Clinical) -> None:
    """Once the table is recovered: athletes whose stored outbox has a release due are released again once their
    partition's watermark is complete (the stages repeat their markers every heartbeat), and every athlete's
    clock is run on at the next clock tick (what fell due while no worker ran)."""
    suffix = PART_SEPARATOR + OUTBOX_PART
    for key in [key for key in ctx.history_table.keys() if key.endswith(suffix)]:
        athlete_key = key[: -len(suffix)]
        ctx.next_due[athlete_key] = 0.0
        if decode_outbox(athlete_key.decode(), ctx.history_table[key]).unreleased:
            ctx.unreleased.setdefault(ctx.history_table.partition_for_key(key), set()).add(athlete_key)


def _partition_of(ctx: Clinical, athlete_key: bytes) -> int:
    return ctx.history_table.partition_for_key(part_key(athlete_key, OUTBOX_PART))


async def run_clocks(ctx: Clinical) -> None:
    """Release the athletes whose clock has reached a scheduled recheck (the release runs it on to now)."""
    now = time.time()
    async with ctx.lock:
        partitions = set()
        for athlete_key in [key for key, due in ctx.next_due.items() if due <= now]:
            del ctx.next_due[athlete_key]
            partition = _partition_of(ctx, athlete_key)
            partitions.add(partition)
            ctx.unreleased.setdefault(partition, set()).add(athlete_key)
        await _release(ctx, partitions)


async def _release(ctx: Clinical, partitions: set[int]) -> None:
    """For the partitions whose inputs are in: fold the histories of the athletes with a release due, send what
    their outboxes owe with the clock run on to now (stored in flight first), write the points that changed, then
    confirm the release."""
    due = [
        athlete_key
        for partition in partitions
        if _progress(ctx, partition).complete()
        for athlete_key in sorted(ctx.unreleased.pop(partition, set()))
    ]
    records: dict[bytes, ClinicalRecord] = {}
    points: list[Point] = []
    for athlete_key in due:
        try:
            record = _load(ctx, athlete_key, athlete_key.decode())
            points += record.timeline.fold()
        except Exception as exc:  # noqa: BLE001 - one athlete's history must not stop every other's release
            _hold(ctx, athlete_key, exc)
            continue
        records[athlete_key] = record
    now = time.time()
    ready: dict[bytes, ReadyRelease] = {}
    for athlete_key, record in records.items():
        try:
            ready[athlete_key] = ReadyRelease(
                record, record.timeline.alerts(as_of_s=now), record.timeline.next_due_s(now))
        except Exception as exc:  # noqa: BLE001 - as above: the clock run on is the engine too
            _hold(ctx, athlete_key, exc)
            continue
        ctx.held.discard(athlete_key)
    if not ready:
        return
    sent: list[OutboxMessage] = []
    stale: list[AlertPointIdentity] = []
    restored: list[Alert] = []  # standing alerts whose point a stale point's removal takes with it
    released: set[int] = set()  # partitions with messages sent
    acks = []
    for athlete_key, release in ready.items():
        record, current = release.record, release.alerts
        previous = {**record.outbox.in_flight, **record.outbox.sent}
        messages = record.outbox.release(
            current, lambda alert: engine.is_historical(alert.time, now, ctx.engine_settings))
        athlete_stale = stale_alert_points(previous, messages)
        stale += athlete_stale
        restored += standing_alerts_sharing(athlete_stale, current, record.outbox.sent, messages)
        if release.next_due_s is not None:
            ctx.next_due[athlete_key] = release.next_due_s
        if len(record.timeline) > ctx.timeline_events:
            record.timeline.settle(ctx.timeline_events // 3)
        if messages:
            released.add(_partition_of(ctx, athlete_key))
            _store(ctx, athlete_key, [outbox_write(record)])  # in flight: sent again if we crash before confirming
            # In the partition's transaction: a fenced worker's alerts are aborted (streams/fencing.py).
            acks += [await fencing.send(ctx.streams.app, ctx.alerts_topic.get_topic_name(), athlete_key,
                                        dump_event(message), _partition_of(ctx, athlete_key)) for message in messages]
        sent += messages
    # Every athlete's messages on the broker before any confirmation is even written; awaited together, not one
    # round trip per athlete (a bulk import releases tens of athletes at once).
    for ack in acks:
        await ack
    # The fold's points after the alerts are on their way (a bulk import's are thousands: the write is not in the
    # alerts' way), before the release is confirmed: a crash before the confirmation releases and writes again.
    await fencing.write_owned(ctx.history_table, ctx.streams.influx(), points)
    for athlete_key, release in ready.items():
        release.record.outbox.confirm()
        _store(ctx, athlete_key, [outbox_write(release.record)])
    # The alert points mirror what was sent and confirmed: only once that is committed (a fenced worker stops here).
    await fencing.commit_now(ctx.streams.app, released)
    # Stale points go before the new points are written: a new point can share a stale one's identity.
    for start in range(0, len(stale), STALE_DELETES_PER_REQUEST):
        try:
            await fencing.within_ownership(ctx.streams.app, fencing.after_lease(
                ctx.streams.app, ctx.streams.influx().client(series.ALERTS.audience).query(
                    alert_points_delete(stale[start:start + STALE_DELETES_PER_REQUEST]), method="POST")))
        except fencing.OwnershipLost:
            raise
        except Exception as exc:  # noqa: BLE001 - the alerts topic is the record; a stale point must not stop the agent
            log.warning("could not remove stale alert points (%s)", type(exc).__name__)
    alerts = [message for message in sent if isinstance(message, Alert)] + restored
    if alerts:
        await fencing.write_owned(ctx.history_table, ctx.streams.influx(), [alert_point(alert) for alert in alerts])


def _place(ctx: Clinical, partition: int, athlete_key: bytes, events: list[EventBase],
           canonical: Mapping[str, bytes | None] | None = None) -> None:
    """Place a batch's events in their athlete's timeline and store the periods they changed, with a release owed;
    events that cannot be placed are kept pending (`_keep_pending`). `canonical`: the events' bytes the timeline's
    reader made, by event id."""
    try:
        record = _load_holding(ctx, athlete_key, events)
        added = record.timeline.add(events, canonical)
        writes = placement_writes(record, added) if added else []
    except Exception as exc:  # noqa: BLE001 - one athlete's events must not stop every other's
        _keep_pending(ctx, athlete_key, events, exc)
        return
    if added:
        _store(ctx, athlete_key, writes)
        ctx.unreleased.setdefault(partition, set()).add(athlete_key)


async def clinical(ctx: Clinical, stream: faust.StreamT) -> None:
    async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WINDOW_S):
        by_athlete: dict[tuple[int, bytes], list[EventBase]] = {}
        # Per athlete, the bytes the reader made of each event id's first event (the one a timeline places).
        canonical: dict[tuple[int, bytes], dict[str, bytes | None]] = {}
        summaries: list[WorkoutSummary] = []
        partitions: set[int] = set()
        for message in await ctx.streams.delivered(ctx.gaps, batch):
            partition = message.partition
            partitions.add(partition)
            progress = _progress(ctx, partition)
            if header(message.headers, MARKER_HEADER) is not None:
                try:
                    progress.on_marker(marker_found_on(message.value, partition))
                except MarkerError as exc:  # another partition's marker must not complete this one
                    await ctx.streams.dead_letter(message.value, str(exc), topics.TIMELINE_TOPIC)
                continue
            try:
                items = parse_timeline_message(message.value)
            except EventError as exc:
                await ctx.streams.dead_letter(message.value, str(exc), topics.TIMELINE_TOPIC)
                continue
            for item in items:
                if item.error is not None:
                    await ctx.streams.dead_letter(item.original, str(item.error), topics.TIMELINE_TOPIC)
                    continue
                event = item.event
                athlete = (partition, event.athlete_id.encode())
                by_athlete.setdefault(athlete, []).append(event)
                canonical.setdefault(athlete, {}).setdefault(event.event_id, item.canonical)
                if isinstance(event, WorkoutSummary):
                    summaries.append(event)
            if any(item.event is not None for item in items):
                progress.on_event(header(message.headers, INPUT_HEADER))
        async with ctx.lock:
            for (partition, athlete_key), events in by_athlete.items():
                _place(ctx, partition, athlete_key, events, canonical[partition, athlete_key])
            if ctx.on_summaries is not None:
                await ctx.on_summaries(summaries)
            await _release(ctx, partitions)
            _store_imports(ctx, partitions)
            ctx.gaps.record()
            await fencing.flush_writes(ctx.streams.app)  # in the transaction that commits the batch's offsets
            ctx.gaps.vouch()


def register(
    streams: Streams, on_summaries: Callable[[list[WorkoutSummary]], Awaitable[None]] | None = None
) -> Clinical:
    """The clinical agent, its table and its clock timer on the worker's app; `on_summaries` gets each batch's
    workout summaries."""
    ctx = Clinical(streams, streams.athlete_keyed_table("clinical_history"),
                   streams.partition_keyed_table("timeline_imports"), streams.topic(topics.ALERTS_TOPIC),
                   streams.settings.engine_settings(), gaps=streams.delivery_gaps("clinical"),
                   timeline_events=streams.settings.worker.timeline_events, on_summaries=on_summaries)
    app = streams.app

    @app.on_partitions_revoked.connect
    async def forget_clinical_state_on_revoke(app: faust.App, revoked: set, **kwargs: object) -> None:
        forget_on_revoke(ctx)

    @ctx.history_table.on_recover
    async def track_unreleased_on_recover() -> None:
        track_unreleased_at_the_last_stop(ctx)

    @app.timer(interval=CLOCK_INTERVAL_S)
    async def run_clinical_clocks() -> None:
        await run_clocks(ctx)

    @app.agent(streams.timeline_topic, name="aromatrack.clinical")
    async def clinical_agent(stream: faust.StreamT) -> None:
        await clinical(ctx, stream)

    return ctx
