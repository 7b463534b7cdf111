"""Workouts: FIT files -> `workout.summary` events -> training load in InfluxDB; the timeline gets them all.

- `workout.fit` agent: base64 (optionally gzip, see README "Large FIT files") -> `streams.fit.decode_fit`.
  The sha256 of the athlete and the file is its workout id (two athletes with byte-identical files get two
  workouts): an upload already seen for the athlete is skipped. Samples go to
  InfluxDB as 10 s means; weigh-ins become `scale.reading` events on their input topic; the workout becomes a
  `workout.summary` event (event_id derived from the content hash) on the `workout.summary` topic. Uploads are
  handled in batches (`UploadBatch`: one InfluxDB write and one wait for the forwards per batch). Anything
  undecodable goes to the dead-letter topic with the decoder's reason; no exception stops the agent.
- Summaries (FIT-derived or sent directly by a tracker) are validated and forwarded to the timeline by the
  ingest consumer (streams/ingest.py), like every other input. The clinical agent hands each timeline batch's
  summaries to `count_summaries`, which adds `trimp`, `load`, `modality` when absent, skips event ids already
  counted (the load history itself keeps the ids it counted in its kept days, so a batch delivered again after a
  crash is not counted twice whichever table writes reached the changelog; `workout_seen` recognises older
  repeats), updates the athlete's daily loads in the `workout_state` table and writes WORKOUT,
  TRAINING_LOAD_DAILY (from the workout's day to the athlete's latest day) and MODALITY_WEEKLY points. A
  summary agent of its own consumed every summary a second time through faust, at twice the worker CPU of any
  other event on a bulk send (BENCHMARKS.md, "Speed session 4").
- `write_rest_days` timer: carries each athlete's model from the latest workout through today (the athlete's
  local today), so a resting athlete's fatigue falls and form rises on the boards (`training_load.rest_days`).
  It and `count_summaries` take `load_lock` in turn, so rest days never overwrite a workout's day in flight.
- Progress: what the FIT agent produces carries `INPUT_HEADER` (the FIT topic); every `FIT_PROGRESS_POLL_S` the
  agent measures its owned FIT partitions against their end offsets and puts a `ProgressMarker` onto the summary
  and scale topics when a partition's state changes (every `HEARTBEAT_S` regardless), whose ingest consumer
  forwards them to the timeline, so the clinical agent knows when the FIT paths are consumed
  (streams/input_progress.py). Uploads that arrive while the FIT paths last said "caught up" must be reported
  busy before the other paths of a bulk import are in, or the clinical agent releases (and later withdraws) alerts
  from a history without its workouts: measured every 2 s, a demo's bulk send released 20 such alerts. A bulk
  import's markers (`schemas.progress.ImportMarker`, from its sender) found on the FIT topic go the same way, onto
  the summary and scale topics after what the uploads before them gave (`forward_import_marker`).

- `athlete.profile` agent: keeps each athlete's profiles over time in the `athlete_profiles` table, so a
  workout's load uses the HR rest/max, FTP and sex in effect at its time (`training_load.athlete_at`, the same
  numbers the clinical engine and `evaluate` use); population defaults before an athlete's first profile.
  Invalid profiles are skipped here: the ingest consumer dead-letters them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass, field
from itertools import groupby
from datetime import date, datetime, timedelta, timezone
from typing import Any

import faust
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faust.exceptions import ProducerSendError
from pydantic import ValidationError

from aromatrack.domain import training_load as tl
from aromatrack.schemas import series, topics
from aromatrack.schemas.boundary import workout_summary
from aromatrack.schemas.events import AthleteProfile, EventError, ScaleReading, WorkoutFit, WorkoutSummary, dump_event, parse_event
from aromatrack.schemas.progress import (
    FIT_TOPIC, INPUT_HEADER, MARKER_HEADER, SCALE_TOPIC, SUMMARY_TOPIC, ImportMarker, MarkerError, ProgressMarker,
    arrived_via, header, marker_found_on,
)
from aromatrack.schemas.series import Point
from aromatrack.streams.app import Streams, part_key
from aromatrack.streams.delivery import Delivered, DeliveryGaps
from aromatrack.streams.input_progress import InputPartition, StageProgress
from aromatrack.streams import admin, fencing, fit
from aromatrack.streams.fit import FitDecodeError, Samples, decode_fit, fit_payload
from aromatrack.streams.influx import write_storable

# How often the FIT stage measures its progress (a marker is sent only when a partition's state changed, or every
# input_progress.HEARTBEAT_S): within this time of uploads arriving, the FIT paths are reported busy.
FIT_PROGRESS_POLL_S = 0.1
# Uploads handled as one batch (one InfluxDB write, one wait for their forwards), gathered for at most this long.
FIT_BATCH_SIZE = 20
FIT_BATCH_WINDOW_S = 0.05

log = logging.getLogger(__name__)

SAMPLE_BUCKET_S = 10
SEEN_MONTHS = 60  # months with workouts whose ids are remembered per athlete, for duplicate detection
STATE_VERSION = 3  # of the workout_state table's values (`history_to_json`)
# Decoded load histories a worker keeps between batches (the least recently used are dropped; the table has them
# whole): a batch re-parsed each athlete's stored history, a tenth of the summary stage's CPU on a bulk send.
MAX_CACHED_HISTORIES = 1000



@dataclass(frozen=True)
class WorkoutTables:
    """The agents' per-athlete state: faust tables in the worker (`register`), plain mappings in pure tests."""

    state: MutableMapping[bytes, bytes]  # `workout_state`: the load history (`history_to_json`)
    seen: MutableMapping[bytes, bytes]  # `workout_seen`: the ids already counted (`SeenIds`)
    profiles: MutableMapping[bytes, bytes]  # `athlete_profiles`: the profiles over time


@dataclass(frozen=True)
class CachedHistory:
    stored: bytes  # the table value it was read from or written as
    history: tl.LoadHistory


@dataclass
class HistoryCache:
    """Decoded load histories by athlete, each valid only while the table holds exactly the bytes it came from: a
    restore, a rebalance or another worker's write changes the value and the history is read again. Bounded (least
    recently used dropped) so memory stays flat in the number of athletes a worker owns but does not touch."""

    entries: OrderedDict[bytes, CachedHistory] = field(default_factory=OrderedDict)

    def load(self, table: MutableMapping[bytes, bytes], athlete_key: bytes) -> tl.LoadHistory:
        stored = table.get(athlete_key)
        cached = self.entries.get(athlete_key)
        if cached is not None and stored is not None and cached.stored == stored:
            self.entries.move_to_end(athlete_key)
            return cached.history
        if not stored:
            return tl.LoadHistory()
        history = history_from_json(json.loads(stored))
        self._keep(athlete_key, CachedHistory(stored, history))
        return history

    def save(self, table: MutableMapping[bytes, bytes], athlete_key: bytes, history: tl.LoadHistory) -> None:
        stored = json.dumps(history_to_json(history), separators=(",", ":")).encode()
        table[athlete_key] = stored
        self._keep(athlete_key, CachedHistory(stored, history))

    def _keep(self, athlete_key: bytes, cached: CachedHistory) -> None:
        self.entries[athlete_key] = cached
        self.entries.move_to_end(athlete_key)
        while len(self.entries) > MAX_CACHED_HISTORIES:
            self.entries.popitem(last=False)

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class Workouts:
    """The workout agents' dependencies and their worker's state (`register` builds it)."""

    streams: Streams
    tables: WorkoutTables
    fit_topic: faust.TopicT
    summary_topic: faust.TopicT
    scale_topic: faust.TopicT
    profile_topic: faust.TopicT
    fit_progress: StageProgress = field(default_factory=StageProgress)
    # Where the FIT agent started on each FIT partition it owns (the group's committed offset when it was assigned,
    # 0 when none), fetched once per assignment rather than at every progress poll.
    fit_starts: dict[TopicPartition, int] = field(default_factory=dict)
    # Held while the FIT stage handles a message, and while its markers are measured and sent: a marker sent in
    # the middle of an upload's forwards would vouch for a path whose upload is half forwarded.
    fit_stage_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Held while summaries are counted and while rest days are written, so rest days never overwrite a workout's
    # day in flight.
    load_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    rest_days_written: dict[bytes, tl.DailyLoad] = field(default_factory=dict)  # see `rest_day_points`
    histories: HistoryCache = field(default_factory=HistoryCache)
    # Each agent's tracker of what faust skipped around a rebalance (streams/delivery.py); set by `register`.
    profile_gaps: DeliveryGaps | None = None
    fit_gaps: DeliveryGaps | None = None


def _read_json(table: MutableMapping[bytes, bytes], key: bytes, empty: Any) -> Any:
    """A table entry's JSON value, or `empty` for a key never stored."""
    stored = table.get(key)
    return json.loads(stored) if stored else empty


class SeenIds:
    """The ids already counted of one kind (`fit` uploads, `summary` events) per athlete, filed by the workout's
    month in the `workout_seen` table, with a list of the months: a batch writes the months it touched. Kept in
    the athlete's state, the ids were rewritten whole on every batch, and that list (up to 5,000 ids) made the
    changelog grow with history. The newest SEEN_MONTHS months that have workouts are remembered; a repeat of a
    workout older than those is not recognised. One instance per message or batch (it caches what it read)."""

    def __init__(self, table: MutableMapping[bytes, bytes], kind: str) -> None:
        self.table = table
        self.kind = kind
        self.entries: dict[bytes, list[str]] = {}
        self.changed: set[bytes] = set()
        self.forgotten: set[bytes] = set()

    def _entry(self, key: bytes) -> list[str]:
        if key not in self.entries:
            self.entries[key] = _read_json(self.table, key, [])
        return self.entries[key]

    def _key(self, athlete_key: bytes, name: str) -> bytes:
        return part_key(athlete_key, f"{self.kind}:{name}".encode())

    def add(self, athlete_key: bytes, moment: datetime, item_id: str) -> bool:
        """Remember an id under its workout's month; False if it is already there (a repeat)."""
        month = f"{moment.astimezone(timezone.utc):%Y-%m}"
        ids = self._entry(self._key(athlete_key, month))
        if item_id in ids:
            return False
        ids.append(item_id)
        self.changed.add(self._key(athlete_key, month))
        self.forgotten.discard(self._key(athlete_key, month))
        months = self._entry(self._key(athlete_key, "months"))
        if month not in months:
            months.append(month)
            months.sort()
            self.forgotten.update(self._key(athlete_key, old) for old in months[:-SEEN_MONTHS])
            del months[:-SEEN_MONTHS]
            self.changed.add(self._key(athlete_key, "months"))
        return True

    def discard(self, athlete_key: bytes, moment: datetime, item_id: str) -> None:
        """Forget an id added since the last save (its handling failed: a repeat must be handled again)."""
        key = self._key(athlete_key, f"{moment.astimezone(timezone.utc):%Y-%m}")
        ids = self._entry(key)
        if item_id in ids:
            ids.remove(item_id)

    def save(self) -> None:
        for key in self.changed - self.forgotten:
            self.table[key] = json.dumps(self.entries[key], separators=(",", ":")).encode()
        for key in self.forgotten:
            self.table.pop(key, None)
        self.changed, self.forgotten = set(), set()


def _profile_history(tables: WorkoutTables, athlete_key: bytes) -> list[list[Any]]:
    return _read_json(tables.profiles, athlete_key, [])


def sample_points(athlete_id: str, workout_id: str, samples: Samples) -> list[Point]:
    """10 s means of the ~1 Hz samples, for boards (a bucket's mean per channel over the samples that have it)."""
    keys = [seconds - seconds % SAMPLE_BUCKET_S for seconds in samples.time_s]
    order = range(len(keys)) if keys == sorted(keys) else sorted(range(len(keys)), key=keys.__getitem__)
    columns = [(name, getattr(samples, name)) for name in Samples.CHANNELS]
    tags = {"athlete_id": athlete_id, "workout_id": workout_id}
    points = []
    for key, group in groupby(order, keys.__getitem__):
        indices = list(group)
        fields = {}
        for name, column in columns:
            values = [column[index] for index in indices if column[index] is not None]
            if values:
                fields[name] = sum(values) / len(values)
        if fields:
            points.append(series.WORKOUT_SAMPLES.point(datetime.fromtimestamp(key, timezone.utc), tags, fields))
    return points


def with_load(summary: WorkoutSummary, athlete: tl.Athlete) -> dict[str, Any]:
    """The summary as a dict, with `trimp`, `load`, `modality` computed with the athlete's numbers when the
    sender did not give them (`training_load.summary_load`, as the clinical engine does)."""
    body = summary.model_dump(mode="json", exclude_none=True)
    loaded = tl.summary_load(workout_summary(summary), athlete)
    body.setdefault("trimp", loaded.trimp)
    body.update(load=loaded.load, modality=loaded.modality)
    return {name: value for name, value in body.items() if value is not None}


def new_session(body: dict[str, Any], time_zone: str | None = None) -> tl.NewSession:
    """A summary (with its load and modality) as the load model's session. Days and weeks are the athlete's own
    (`tl.local_time`: the profile's time zone, else the event's offset); the points of a local day are stamped at
    that date's 00:00 UTC."""
    start = tl.local_time(datetime.fromisoformat(body["time"]), time_zone)
    return tl.NewSession(tl.Session(start, body["modality"], float(body["load"]), body["duration_s"] / 60), body["event_id"])


def record_workout(history: tl.LoadHistory, body: dict[str, Any], time_zone: str | None = None) -> tl.LoadUpdate:
    """One summary added to the athlete's load history."""
    return tl.add_sessions(history, [new_session(body, time_zone)])


def history_to_json(history: tl.LoadHistory) -> dict[str, Any]:
    """The stored form of a load history (the `workout_state` table's value), versioned. Days are counted from
    `first` (the earliest day kept): `daily` holds a load per day from it (null where the athlete has none) and
    `counted` each workout id's day number. Written for every athlete in every summary batch, so kept compact
    (version 2 spelled out every date and field name, ~45% more bytes to encode and to send to the changelog)."""
    carry = history.carry
    days = [*history.daily, *history.counted.values()]
    first = min(days).toordinal() if days else 0
    loads: list[float | None] = [None] * (max(history.daily).toordinal() - first + 1 if history.daily else 0)
    for day, load in history.daily.items():
        loads[day.toordinal() - first] = load
    return {
        "version": STATE_VERSION,
        "first": date.fromordinal(first).isoformat() if days else None,
        "daily": loads,
        "sessions": [[s.start.isoformat(), s.modality, s.load, s.minutes] for s in history.sessions],
        "carry": [carry.day.isoformat(), carry.ctl, carry.atl] if carry else None,
        "counted": {workout: day.toordinal() - first for workout, day in history.counted.items()},
        "counted_since": history.counted_since.isoformat() if history.counted_since else None,
    }


def history_from_json(stored: dict[str, Any]) -> tl.LoadHistory:
    """A stored load history, of this version or an older one. Version 2 spelled out dates as keys and fields
    by name; the unversioned form kept each session as a `[start, modality, load, minutes]` list, and before
    version 2 the counted workout ids were not kept, so the history vouches only for workouts after its newest
    day (older repeats are recognised by the `workout_seen` table, as they were)."""
    version = stored.get("version")
    if version == STATE_VERSION:
        return _history_from_compact(stored)
    if version is not None and version > STATE_VERSION:
        raise ValueError(f"workout_state version {version} is newer than this worker ({STATE_VERSION})")
    sessions = stored.get("sessions", [])
    if version is None:
        sessions = [dict(zip(("start", "modality", "load", "minutes"), session)) for session in sessions]
    carry = stored.get("carry")
    daily = {date.fromisoformat(day): float(load) for day, load in stored.get("daily", {}).items()}
    if version == 2:
        counted_since = date.fromisoformat(stored["counted_since"]) if stored.get("counted_since") else None
    else:
        counted_since = max(daily) + timedelta(days=1) if daily else None
    return tl.LoadHistory(
        daily=daily,
        sessions=tuple(
            tl.Session(datetime.fromisoformat(s["start"]), s["modality"], float(s["load"]), float(s["minutes"]))
            for s in sessions
        ),
        carry=tl.CarriedFitness(date.fromisoformat(carry["day"]), carry["ctl"], carry["atl"]) if carry else None,
        counted={workout: date.fromisoformat(day) for workout, day in stored.get("counted", {}).items()},
        counted_since=counted_since,
    )


def _history_from_compact(stored: dict[str, Any]) -> tl.LoadHistory:
    first = date.fromisoformat(stored["first"]).toordinal() if stored["first"] else 0
    carry = stored["carry"]
    return tl.LoadHistory(
        daily={date.fromordinal(first + n): float(load) for n, load in enumerate(stored["daily"]) if load is not None},
        sessions=tuple(
            tl.Session(datetime.fromisoformat(start), modality, float(load), float(minutes))
            for start, modality, load, minutes in stored["sessions"]
        ),
        carry=tl.CarriedFitness(date.fromisoformat(carry[0]), carry[1], carry[2]) if carry else None,
        counted={workout: date.fromordinal(first + n) for workout, n in stored["counted"].items()},
        counted_since=date.fromisoformat(stored["counted_since"]) if stored["counted_since"] else None,
    )


def daily_points(athlete_id: str, days: list[tl.DailyLoad]) -> list[Point]:
    return [
        series.TRAINING_LOAD_DAILY.point(
            datetime.combine(d.day, datetime.min.time(), timezone.utc),
            {"athlete_id": athlete_id},
            {"load": d.load, "ctl": d.ctl, "atl": d.atl, "tsb": d.tsb, "acwr": d.acwr},
        )
        for d in days
    ]


def workout_point(athlete_id: str, body: dict[str, Any]) -> Point:
    fields = {name: body.get(name) for name in series.WORKOUT.fields if name != "workout_id"}
    fields["workout_id"] = body.get("workout_id", body["event_id"])
    fields["salvaged"] = bool(body.get("salvaged", False))
    return series.WORKOUT.point(
        datetime.fromisoformat(body["time"]),
        {"athlete_id": athlete_id, "sport": body["sport"], "modality": body["modality"]},
        fields,
    )


def load_points(athlete_id: str, bodies: list[dict[str, Any]], update: tl.LoadUpdate) -> list[Point]:
    """The workouts' points and those of the days and weeks their update changed."""
    athlete = {"athlete_id": athlete_id}
    points = [workout_point(athlete_id, body) for body in bodies]
    points += daily_points(athlete_id, update.days)
    points += [
        series.MODALITY_WEEKLY.point(
            datetime.combine(w.week_start, datetime.min.time(), timezone.utc),
            {**athlete, "modality": w.modality},
            {"load": w.load, "minutes": w.minutes, "share": w.share},
        )
        for w in update.week
    ]
    return points


@dataclass
class UploadBatch:
    """A batch of FIT uploads handled together: their sample points go to InfluxDB in one write and their forwards
    are awaited together (`flush`); one write and one wait per upload were most of the FIT stage's time
    (BENCHMARKS.md, "Backfill of Garmin Connect exports"). The uploads are remembered (`seen`) only once both are
    done: a crash before that decodes them again, and their summaries keep their ids."""

    ctx: Workouts
    seen: SeenIds
    points: list[Point] = field(default_factory=list)
    sent: list[Any] = field(default_factory=list)  # the forwards' delivery futures
    pending: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, raw) of the uploads counted

    async def flush(self) -> None:
        """Write the points, await the forwards, remember the uploads. Sample points InfluxDB refuses (older than
        the retention policy, a field stored with another type) are left out and counted in the log, as derived
        points are (`influx.write_storable`): they come from the upload, whose summaries went on, and a refusal
        dead-lettered every upload of the batch as an internal error. On any other failure the batch's uploads
        are dead-lettered with the error's type, as one failing upload is (`_dead_letter_bug`)."""
        if not self.pending:
            return
        try:
            refused = await write_storable(self.ctx.streams.influx().write, self.points)
            for delivery in self.sent:
                await delivery
        except Exception as exc:  # noqa: BLE001 - the worker must keep going; the reason goes with each upload
            for athlete_key, raw in self.pending:
                await _dead_letter_bug(self.ctx, exc, raw, FIT_TOPIC, athlete_key)
            self.seen = SeenIds(self.ctx.tables.seen, "fit")  # forget what the failed batch added
        else:
            if refused:
                log.warning("%d workout sample points refused by InfluxDB were not written", refused)
            self.seen.save()
        self.points, self.sent, self.pending = [], [], []


async def handle_fit(batch: UploadBatch, athlete_key: bytes | None, raw: bytes) -> None:
    """Decode one upload and start its forwards; its points and its forwards' acknowledgements wait for the batch's
    `flush`."""
    ctx = batch.ctx
    try:
        event = parse_event(raw)
        if not isinstance(event, WorkoutFit):
            raise EventError(f"type: {event.type} events do not belong on {FIT_TOPIC}")
        data = fit_payload(event)
        decoded = decode_fit(data)
    except (EventError, FitDecodeError, OSError) as exc:
        await ctx.streams.dead_letter(raw, str(exc), FIT_TOPIC, athlete_key)
        return
    key = event.athlete_id.encode()
    workout_id = fit.workout_id(event.athlete_id, data)
    recorded_at = decoded.workouts[0].start if decoded.workouts else min(weigh_in.time for weigh_in in decoded.weigh_ins)
    if not batch.seen.add(key, recorded_at, workout_id):
        log.info("duplicate FIT upload skipped (workout %s)", workout_id[:8])
        return
    try:
        await _forward_upload(batch, event, data, decoded, raw)
    except BaseException:
        batch.seen.discard(key, recorded_at, workout_id)
        raise
    batch.pending.append((athlete_key, raw))


async def _forward_upload(batch: UploadBatch, event: WorkoutFit, data: bytes, decoded: fit.DecodedFit, raw: bytes) -> None:
    """The upload's weigh-ins and summaries sent on, its sample points added to the batch's write."""
    ctx, key = batch.ctx, event.athlete_id.encode()
    for weigh_in in decoded.weigh_ins:
        try:
            reading = ScaleReading(athlete_id=event.athlete_id, time=weigh_in.time, device="fit", **{
                name: value for name, value in vars(weigh_in).items() if name != "time" and value is not None
            })
        except ValidationError as exc:
            await ctx.streams.dead_letter(raw, f"weight_scale message is not a valid scale.reading: {exc.errors()[0]['msg']}", FIT_TOPIC, key)
            continue
        batch.sent.append(await ctx.scale_topic.send(key=key, value=dump_event(reading), headers={INPUT_HEADER: FIT_TOPIC.encode()}))
    if decoded.workouts:
        # One profile for all of a file's sessions: the one in effect when its first session started.
        athlete = tl.athlete_at(_profile_history(ctx.tables, key), decoded.workouts[0].start.timestamp())
        summaries = fit.upload_summaries(decoded, event.athlete_id, data, athlete)
        batch.points += [
            point
            for workout, summary in zip(decoded.workouts, summaries)
            for point in sample_points(event.athlete_id, summary["workout_id"], workout.samples)
        ]
        for summary in summaries:
            batch.sent.append(await ctx.summary_topic.send(key=key, value=json.dumps(summary).encode(),
                                                       headers={INPUT_HEADER: FIT_TOPIC.encode()}))


@dataclass(frozen=True)
class AcceptedSummary:
    """A summary to count: the event, its body with load and modality, and its session for the load model."""

    event: WorkoutSummary
    body: dict[str, Any]
    session: tl.NewSession


def summary_step(batch: "SummaryBatch", event: WorkoutSummary) -> AcceptedSummary | None:
    """Decide whether one validated summary counts (None for a repeat). The batch's histories change only in
    `SummaryBatch.count`, once per athlete."""
    key = event.athlete_id.encode()
    history = batch.history(key)
    athlete = tl.athlete_at(batch.profiles(key), event.time.timestamp())
    first_time = batch.seen.add(key, event.time, event.event_id)
    if event.event_id in history.counted or event.event_id in batch.pending_ids(key):
        return None
    if not first_time and not tl.within_kept_days(history, tl.local_time(event.time, athlete.time_zone).date()):
        return None  # a repeat older than what the history itself remembers
    body = with_load(event, athlete)
    accepted = AcceptedSummary(event, body, new_session(body, athlete.time_zone))
    batch.pending.setdefault(key, []).append(accepted)
    return accepted


class SummaryBatch:
    """One batch's per-athlete state: histories loaded once, summaries accepted, then counted with one load
    model per athlete (`count`), and the seen ids."""

    def __init__(self, tables: WorkoutTables, cache: HistoryCache | None = None) -> None:
        self.tables = tables
        self.cache = HistoryCache() if cache is None else cache
        self.histories: dict[bytes, tl.LoadHistory] = {}
        self.pending: dict[bytes, list[AcceptedSummary]] = {}
        self.changed: set[bytes] = set()  # athletes whose history `count` changed
        self.seen = SeenIds(tables.seen, "summary")
        self._profiles: dict[bytes, list[list[Any]]] = {}

    def profiles(self, athlete_key: bytes) -> list[list[Any]]:
        """The athlete's profiles over time, read from the table once per batch (each summary needs them)."""
        if athlete_key not in self._profiles:
            self._profiles[athlete_key] = _profile_history(self.tables, athlete_key)
        return self._profiles[athlete_key]

    def history(self, athlete_key: bytes) -> tl.LoadHistory:
        if athlete_key not in self.histories:
            self.histories[athlete_key] = self.cache.load(self.tables.state, athlete_key)
        return self.histories[athlete_key]

    def save(self) -> None:
        """Store the histories the batch changed, and the seen ids."""
        for key in self.changed:
            self.cache.save(self.tables.state, key, self.histories[key])
        self.seen.save()

    def pending_ids(self, athlete_key: bytes) -> set[str]:
        return {accepted.event.event_id for accepted in self.pending.get(athlete_key, [])}

    def count(self) -> list[Point]:
        """Add every athlete's accepted summaries to its history; the points of the workouts, days and weeks."""
        points: list[Point] = []
        for key, accepted in self.pending.items():
            update = tl.add_sessions(self.histories[key], [item.session for item in accepted])
            if update.history is not self.histories[key]:
                self.histories[key] = update.history
                self.changed.add(key)
            points += load_points(key.decode(), [item.body for item in accepted], update)
        self.pending = {}
        return points


async def count_summaries(ctx: Workouts, summaries: list[WorkoutSummary]) -> None:
    """The timeline batch's summaries, in arrival order, counted into their athletes' load histories: each
    athlete's history loaded, modelled and saved once, one InfluxDB write (one write per workout was a fifth of a
    backfill's time). Called by the clinical agent inside its batch, so the table writes share the transaction
    that commits the timeline offsets; a batch delivered again is recognised by the ids counted."""
    if not summaries:
        return
    async with ctx.load_lock:
        batch = SummaryBatch(ctx.tables, ctx.histories)
        for event in summaries:
            try:
                summary_step(batch, event)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the batch
                await _dead_letter_bug(ctx, exc, dump_event(event), SUMMARY_TOPIC, event.athlete_id.encode())
        await fencing.write_owned(ctx.tables.state, ctx.streams.influx(), batch.count())
        batch.save()


async def _dead_letter_bug(ctx: Workouts, exc: Exception, raw: bytes, source: str, athlete_key: bytes | None) -> None:
    """A bug or a decoder surprise dead-letters the message (with the exception's type) instead of stopping the worker."""
    log.exception("workout message failed")
    await ctx.streams.dead_letter(raw, f"internal error while processing: {type(exc).__name__}; report this message", source, athlete_key)


async def _guarded(ctx: Workouts, handling: Awaitable[None], athlete_key: bytes | None, raw: bytes, source: str) -> None:
    """Await one message's handling; an exception dead-letters the message instead of stopping the agent."""
    try:
        await handling
    except Exception as exc:  # noqa: BLE001 - the worker must keep going; the reason goes with the message
        await _dead_letter_bug(ctx, exc, raw, source, athlete_key)


async def handle_profile(ctx: Workouts, _athlete_key: bytes | None, raw: bytes) -> None:
    """Adds a profile to its athlete's history (keyed by the event's athlete, as every handler here)."""
    try:
        event = parse_event(raw)
    except EventError:
        return  # the ingest consumer dead-letters it
    if not isinstance(event, AthleteProfile):
        return
    key = event.athlete_id.encode()
    history = tl.with_profile(_profile_history(ctx.tables, key), event.time.timestamp(), event.model_dump())
    ctx.tables.profiles[key] = json.dumps(history, separators=(",", ":")).encode()


async def workouts_profiles(ctx: Workouts, stream: faust.StreamT) -> None:
    async for event in stream.events():
        for message in await ctx.streams.delivered(ctx.profile_gaps, [event]):
            await _guarded(ctx, handle_profile(ctx, message.key, message.value), message.key, message.value,
                           topics.topic_for("athlete.profile"))
        ctx.profile_gaps.record()
        await fencing.flush_writes(ctx.streams.app)  # in the transaction that commits the event's offset
        ctx.profile_gaps.vouch()


async def forward_import_marker(ctx: Workouts, message: Delivered) -> None:
    """A sender's import marker on the FIT topic, forwarded to the summary and scale topics after what the agent
    produced from the uploads before it (the ingest consumer takes it on to the timeline)."""
    try:
        marker = marker_found_on(message.value, message.partition)
    except MarkerError as exc:
        reason = str(exc)
    else:
        if isinstance(marker, ImportMarker):
            forwarded = arrived_via(marker, FIT_TOPIC)
            await ctx.streams.send_markers(SUMMARY_TOPIC, [forwarded])
            await ctx.streams.send_markers(SCALE_TOPIC, [forwarded])
            return
        reason = "progress marker: only a sender's import markers belong on the FIT topic"
    await ctx.streams.dead_letter(message.value, reason, FIT_TOPIC, message.key)


async def workouts_fit(ctx: Workouts, stream: faust.StreamT) -> None:
    async for events in stream.take_events(FIT_BATCH_SIZE, within=FIT_BATCH_WINDOW_S):
        async with ctx.fit_stage_lock:
            batch = UploadBatch(ctx, SeenIds(ctx.tables.seen, "fit"))
            for message in await ctx.streams.delivered(ctx.fit_gaps, events):
                if header(message.headers, MARKER_HEADER) is not None:
                    await batch.flush()  # the marker follows the forwards of the uploads before it
                    await forward_import_marker(ctx, message)
                else:
                    await _guarded(ctx, handle_fit(batch, message.key, message.value), message.key, message.value,
                                   FIT_TOPIC)
                ctx.fit_progress.handle(message.topic, message.partition, message.offset)
            await batch.flush()
            ctx.fit_gaps.record()
            await fencing.flush_writes(ctx.streams.app)
            ctx.fit_gaps.vouch()


def rest_day_points(
    written: dict[bytes, tl.DailyLoad], athlete_key: bytes, history: tl.LoadHistory, today: date
) -> list[Point]:
    """The athlete's rest days from the latest workout through `today` (the athlete's local date), unless this
    worker already wrote exactly those (`written`: per athlete, the last rest day this worker wrote; the model
    after the last workout changes only with a workout or a day)."""
    carry = history.carry
    days = tl.rest_days(history.daily, today, start=carry.day if carry else None,
                        carry=(carry.ctl, carry.atl) if carry else (0.0, 0.0))
    if not days or written.get(athlete_key) == days[-1]:
        return []
    written[athlete_key] = days[-1]
    return daily_points(athlete_key.decode(), days)


async def write_rest_days(ctx: Workouts) -> None:
    """Carry every athlete's load model through today, in one InfluxDB write."""
    now = datetime.now(timezone.utc)
    # Only athletes whose timeline this worker consumes (it counts their summaries): a standby copy of another
    # worker's state may lag behind a workout that worker has just written, and its rest days would overwrite that
    # workout's day.
    timeline = ctx.streams.timeline_topic.get_topic_name()
    active = {tp.partition for tp in ctx.streams.app.assignor.assigned_actives() if tp.topic == timeline}
    async with ctx.load_lock:
        points = []
        for key in list(ctx.tables.state.keys()):
            if ctx.tables.state.partition_for_key(key) not in active:
                continue
            time_zone = tl.athlete_at(_profile_history(ctx.tables, key), now.timestamp()).time_zone
            points += rest_day_points(ctx.rest_days_written, key, ctx.histories.load(ctx.tables.state, key),
                                      tl.local_time(now, time_zone).date())
        await fencing.write_owned(ctx.tables.state, ctx.streams.influx(), points)


async def _fit_markers(ctx: Workouts) -> list[ProgressMarker]:
    """The FIT stage's markers due for its owned FIT partitions: handled offsets (or where the agent started, where
    nothing was handled since the assignment) against the partitions' end offsets."""
    progress = ctx.fit_progress
    consumer = ctx.streams.app.consumer
    owned = [tp for tp in consumer.assignment() if tp.topic == FIT_TOPIC]
    if not owned:
        return []
    ends = {tp: consumer.highwater(tp) for tp in owned}  # as of the last fetch: no request per report
    unknown = [TopicPartition(tp.topic, tp.partition) for tp in owned
               if InputPartition(tp.topic, tp.partition) not in progress.handled
               and TopicPartition(tp.topic, tp.partition) not in ctx.fit_starts]
    committed = await committed_offsets(ctx, unknown)
    ctx.fit_starts.update({tp: committed.get(tp, 0) for tp in unknown})
    return progress.markers(
        {InputPartition(tp.topic, tp.partition): ends.get(tp) for tp in owned},
        {InputPartition(tp.topic, tp.partition): ctx.fit_starts.get(TopicPartition(tp.topic, tp.partition), 0)
         for tp in owned},
    )


async def committed_offsets(ctx: Workouts, partitions: list) -> dict[TopicPartition, int]:
    """The app group's committed offsets for these partitions (missing where nothing was committed yet)."""
    if not partitions:
        return {}
    settings = ctx.streams.settings
    return await admin.committed_offsets(
        await ctx.streams.admin(), settings.app_id, [TopicPartition(tp.topic, tp.partition) for tp in partitions])


async def report_workout_progress(ctx: Workouts) -> None:
    """The FIT stage's markers onto the summary and scale topics (the ingest consumer forwards them to the
    timeline after what the FIT agent produced before them)."""
    try:
        await _report_workout_progress(ctx)
    except (KafkaError, ProducerSendError, asyncio.TimeoutError) as exc:  # the broker away: the next tick repeats
        log.warning("workout progress markers not sent (%s)", type(exc).__name__)


async def _report_workout_progress(ctx: Workouts) -> None:
    async with ctx.fit_stage_lock:
        fit_markers = await _fit_markers(ctx)
        await ctx.streams.send_markers(SUMMARY_TOPIC, fit_markers)
        await ctx.streams.send_markers(SCALE_TOPIC, fit_markers)


def register(streams: Streams) -> Workouts:
    """The workout agents, their tables and timers on the worker's app."""
    ctx = Workouts(
        streams,
        WorkoutTables(
            state=streams.athlete_keyed_table("workout_state"),
            seen=streams.athlete_keyed_table("workout_seen"),
            profiles=streams.athlete_keyed_table("athlete_profiles"),
        ),
        fit_topic=streams.topic(topics.topic_for("workout.fit")),
        summary_topic=streams.topic(topics.topic_for("workout.summary")),
        scale_topic=streams.topic(topics.topic_for("scale.reading")),
        profile_topic=streams.topic(topics.topic_for("athlete.profile")),
        profile_gaps=streams.delivery_gaps("profile"),
        fit_gaps=streams.delivery_gaps("fit"),
    )
    app = streams.app

    @app.on_partitions_revoked.connect
    async def forget_on_revoke(app: faust.App, revoked: set, **kwargs: object) -> None:
        ctx.histories.clear()
        ctx.fit_starts.clear()

    @app.agent(ctx.profile_topic, name="aromatrack.workouts.profiles")
    async def profiles_agent(stream: faust.StreamT) -> None:
        await workouts_profiles(ctx, stream)

    @app.agent(ctx.fit_topic, name="aromatrack.workouts.fit")
    async def fit_agent(stream: faust.StreamT) -> None:
        await workouts_fit(ctx, stream)

    @app.timer(interval=streams.settings.worker.rest_days_interval_s)
    async def rest_days_timer() -> None:
        await write_rest_days(ctx)

    @app.timer(interval=FIT_PROGRESS_POLL_S)
    async def workout_progress_timer() -> None:
        await report_workout_progress(ctx)

    return ctx
