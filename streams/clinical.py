"""Clinical agent: the pure engine on the live timeline; alerts to the alerts topic once the input is in.

A thin faust wrapper around three pure parts:
- `clinical_timeline.AthleteTimeline`: the athlete's whole history in event-time order, re-folded from the last
  checkpoint when an event lands inside it, so its alerts are exactly `aromatrack evaluate`'s for the same events;
- `input_progress.PartitionProgress`: per timeline partition, whether every input path (each ingest topic, the
  summary topic, the FIT paths) has been consumed up to what was there (the watermark, from the stages'
  progress markers on the timeline);
- `alert_outbox.Outbox`: what has been sent; a release sends new and changed alerts and withdraws sent ones the
  history no longer raises.

Per batch: events are placed in their athletes' timelines (no fold yet) and the changed periods stored
(`clinical_codec`, versioned JSON in the `clinical_history` table, keyed by athlete and part so every key shares
its athlete's partition) with the outbox marked `unreleased`. Then, for each partition whose watermark is
complete, the athletes with a release due are folded once (from where their history changed), the points whose
values changed are written, and the outboxes released. Live, where lag is near zero, the stage markers follow
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
history rewrites all of its points.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import timezone

import faust
from pydantic import ValidationError

from aromatrack.domain import engine
from aromatrack.schemas import series, topics
from aromatrack.schemas.events import Alert, EventBase, EventError, dump_event, parse_event
from aromatrack.schemas.progress import INPUT_HEADER, MARKER_HEADER, header, parse_marker
from aromatrack.schemas.series import Point
from aromatrack.streams import fencing
from aromatrack.streams.alert_outbox import AlertPointIdentity, OutboxMessage, stale_alert_points
from aromatrack.streams.app import (
    PART_SEPARATOR, app, athlete_keyed_table, dead_letter, influx, part_key, settings, timeline_topic,
)
from aromatrack.streams.clinical_codec import (
    OUTBOX_PART, ClinicalRecord, decode_outbox, event_writes, outbox_write, read_record,
)
from aromatrack.streams.input_progress import PartitionProgress

log = logging.getLogger(__name__)

BATCH_SIZE = 1000
BATCH_WINDOW_S = 0.02
# Records kept in memory (the least recently used are dropped; the table has them whole): memory stays flat in
# the number of athletes a worker owns but does not touch.
MAX_RECORDS = 1000
# The labs' default assays and the historical age, from the worker's settings (evaluate's by default too).
ENGINE_SETTINGS = settings.engine_settings()

history_table = athlete_keyed_table("clinical_history")

# How often the worker runs its athletes' clocks on to the wall clock (scheduled rechecks fall due with no event).
CLOCK_INTERVAL_S = 10.0

_records: OrderedDict[bytes, ClinicalRecord] = OrderedDict()
_progress: dict[int, PartitionProgress] = {}
_unreleased: dict[int, set[bytes]] = {}  # timeline partition -> athletes with a release due
_next_due: dict[bytes, float] = {}  # athlete -> when its clock next makes a scheduled recheck fall due
_lock = asyncio.Lock()


def alert_point(alert: Alert) -> Point:
    tags = {"athlete_id": alert.athlete_id, "kind": alert.kind, "rule": alert.rule, "severity": alert.severity}
    return series.ALERTS.point(
        alert.time, tags, {"alert_id": alert.alert_id, "summary": alert.summary, "historical": alert.historical})


def _influxql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def alert_point_delete(identity: AlertPointIdentity) -> str:
    """InfluxQL that removes an alert's point, so the open-alerts table and annotations stop showing an alert the
    whole history no longer supports, or an updated alert twice."""
    moment = identity.time.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        f'DELETE FROM "{series.ALERTS.measurement}" WHERE "athlete_id" = {_influxql_string(identity.athlete_id)}'
        f' AND "kind" = {_influxql_string(identity.kind)} AND "rule" = {_influxql_string(identity.rule)}'
        f" AND time = '{moment}'"
    )


def _load(athlete_key: bytes, athlete_id: str) -> ClinicalRecord:
    """The athlete's record, from memory or restored from the table. A restored history is folded at once unless
    a release is due (then the release's fold writes every point: some may not have been written before a crash)."""
    record = _records.get(athlete_key)
    if record is None:
        record = read_record(athlete_id, lambda part: history_table.get(part_key(athlete_key, part)), ENGINE_SETTINGS)
        record = record or ClinicalRecord.new(athlete_id, ENGINE_SETTINGS)
        if not record.outbox.unreleased:
            record.timeline.fold()
        _records[athlete_key] = record
        while len(_records) > MAX_RECORDS:
            _records.popitem(last=False)
    _records.move_to_end(athlete_key)
    return record


def _store(athlete_key: bytes, writes: list[tuple[bytes, bytes]]) -> None:
    for part, value in writes:
        history_table[part_key(athlete_key, part)] = value


@app.on_partitions_revoked.connect
async def forget_on_revoke(app: faust.App, revoked: set, **kwargs: object) -> None:
    """A rebalance may move athletes to another worker; the table is the source of truth after it, and another
    worker's markers start each partition's watermark afresh."""
    _records.clear()
    _progress.clear()
    _unreleased.clear()
    _next_due.clear()


@history_table.on_recover
async def track_unreleased_at_the_last_stop() -> None:
    """Once the table is recovered: athletes whose stored outbox has a release due are released again once their
    partition's watermark is complete (the stages repeat their markers every heartbeat), and every athlete's
    clock is run on at the next clock tick (what fell due while no worker ran)."""
    suffix = PART_SEPARATOR + OUTBOX_PART
    for key in [key for key in history_table.keys() if key.endswith(suffix)]:
        athlete_key = key[: -len(suffix)]
        _next_due[athlete_key] = 0.0
        if decode_outbox(athlete_key.decode(), history_table[key]).unreleased:
            _unreleased.setdefault(history_table.partition_for_key(key), set()).add(athlete_key)


def _partition_of(athlete_key: bytes) -> int:
    return history_table.partition_for_key(part_key(athlete_key, OUTBOX_PART))


@app.timer(interval=CLOCK_INTERVAL_S)
async def run_clocks() -> None:
    """Release the athletes whose clock has reached a scheduled recheck (the release runs it on to now)."""
    now = time.time()
    async with _lock:
        partitions = set()
        for athlete_key in [key for key, due in _next_due.items() if due <= now]:
            del _next_due[athlete_key]
            partition = _partition_of(athlete_key)
            partitions.add(partition)
            _unreleased.setdefault(partition, set()).add(athlete_key)
        await _release(partitions)


async def _release(partitions: set[int]) -> None:
    """For the partitions whose inputs are in: fold the histories of the athletes with a release due, write the
    points that changed, then send what their outboxes owe with the clock run on to now (stored in flight first,
    confirmed after)."""
    due = [
        athlete_key
        for partition in partitions
        if _progress.get(partition, PartitionProgress()).complete
        for athlete_key in sorted(_unreleased.pop(partition, set()))
    ]
    if not due:
        return
    records = {athlete_key: _load(athlete_key, athlete_key.decode()) for athlete_key in due}
    await fencing.write_owned(history_table, influx(), [point for record in records.values() for point in record.timeline.fold()])
    sent: list[OutboxMessage] = []
    stale: list[AlertPointIdentity] = []
    released: set[int] = set()  # partitions with messages sent
    now = time.time()
    for athlete_key, record in records.items():
        previous = {**record.outbox.in_flight, **record.outbox.sent}
        messages = record.outbox.release(
            record.timeline.alerts(as_of_s=now), lambda alert: engine.is_historical(alert, now, ENGINE_SETTINGS))
        stale += stale_alert_points(previous, messages)
        next_due = record.timeline.next_due_s(now)
        if next_due is not None:
            _next_due[athlete_key] = next_due
        if messages:
            released.add(_partition_of(athlete_key))
            _store(athlete_key, [outbox_write(record)])  # in flight: sent again if we crash before confirming
            # In the partition's transaction: a fenced worker's alerts are aborted (streams/fencing.py).
            acks = [await fencing.send(app, topics.ALERTS_TOPIC, athlete_key, dump_event(message),
                                       _partition_of(athlete_key)) for message in messages]
            for ack in acks:  # on the broker before the confirmation is even written
                await ack
        record.outbox.confirm()
        _store(athlete_key, [outbox_write(record)])
        sent += messages
    # The alert points mirror what was sent and confirmed: only once that is committed (a fenced worker stops here).
    await fencing.commit_now(app, released)
    # Stale points go before the new points are written: a new point can share a stale one's identity.
    for identity in stale:
        try:
            await fencing.within_ownership(
                app, influx().client(series.ALERTS.audience).query(alert_point_delete(identity), method="POST"))
        except fencing.OwnershipLost:
            raise
        except Exception as exc:  # noqa: BLE001 - the alerts topic is the record; a stale point must not stop the agent
            log.warning("could not remove a stale alert point (%s)", type(exc).__name__)
    alerts = [message for message in sent if isinstance(message, Alert)]
    if alerts:
        await fencing.write_owned(history_table, influx(), [alert_point(alert) for alert in alerts])


@app.agent(timeline_topic, name="aromatrack.clinical")
async def clinical(stream: faust.StreamT) -> None:
    async for batch in stream.take_events(BATCH_SIZE, within=BATCH_WINDOW_S):
        by_athlete: dict[tuple[int, bytes], list[EventBase]] = {}
        partitions: set[int] = set()
        for message in batch:
            partition = message.message.partition
            partitions.add(partition)
            progress = _progress.setdefault(partition, PartitionProgress())
            if header(message.headers, MARKER_HEADER) is not None:
                try:
                    progress.on_marker(parse_marker(message.value))
                except ValidationError:
                    await dead_letter(message.value, "progress marker: not a valid v1 marker", topics.TIMELINE_TOPIC)
                continue
            try:
                event = parse_event(message.value)
            except EventError as exc:
                await dead_letter(message.value, str(exc), topics.TIMELINE_TOPIC)
                continue
            progress.on_event(header(message.headers, INPUT_HEADER))
            by_athlete.setdefault((partition, event.athlete_id.encode()), []).append(event)
        async with _lock:
            for (partition, athlete_key), events in by_athlete.items():
                record = _load(athlete_key, events[0].athlete_id)
                added = record.timeline.add(events)
                if added:
                    record.outbox.unreleased = True
                    _store(athlete_key, [*event_writes(record, added), outbox_write(record)])
                    _unreleased.setdefault(partition, set()).add(athlete_key)
            await _release(partitions)
            await fencing.flush_writes(app)  # in the transaction that commits the batch's offsets
