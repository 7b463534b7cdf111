"""Workout agents: FIT files -> `workout.summary` events -> training load in InfluxDB and on the timeline.

- `workout.fit` agent: base64 (optionally gzip, see README "Large FIT files") -> `streams.fit.decode_fit`.
  The sha256 of the athlete and the file is its workout id (two athletes with byte-identical files get two
  workouts): an upload already seen for the athlete is skipped. Samples go to
  InfluxDB as 10 s means; weigh-ins become `scale.reading` events on their input topic; the workout becomes a
  `workout.summary` event (event_id derived from the content hash) on the `workout.summary` topic. Anything
  undecodable goes to the dead-letter topic with the decoder's reason; no exception stops the agent.
- `workout.summary` agent (FIT-derived or sent directly by a tracker): adds `trimp`, `load`, `modality` when
  absent, skips event ids already counted, updates the athlete's daily loads in the `workout_state` table and
  writes WORKOUT, TRAINING_LOAD_DAILY (from the workout's day to the athlete's latest day) and
  MODALITY_WEEKLY points, then forwards the event to the timeline for the clinical engine.
- `write_rest_days` timer: carries each athlete's model from the latest workout through today (the athlete's
  local today), so a resting athlete's fatigue falls and form rises on the boards (`training_load.rest_days`).
  It and the summary agent take `model_lock` in turn, so rest days never overwrite a workout's day in flight.

- `athlete.profile` agent: keeps each athlete's profiles over time in the `athlete_profiles` table, so a
  workout's load uses the HR rest/max, FTP and sex in effect at its time (`training_load.athlete_at`, the same
  numbers the clinical engine and `evaluate` use); population defaults before an athlete's first profile.
  Invalid profiles are skipped here: the ingest consumer dead-letters them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from datetime import date, datetime, timedelta, timezone
from itertools import groupby
from typing import Any

import faust
from pydantic import ValidationError

from aromatrack.domain import training_load as tl
from aromatrack.schemas import series, topics
from aromatrack.schemas.events import AthleteProfile, EventError, ScaleReading, WorkoutFit, WorkoutSummary, dump_event, parse_event
from aromatrack.schemas.series import Point
from aromatrack.streams.app import app, athlete_keyed_table, dead_letter, influx, part_key, timeline_topic
from aromatrack.streams import fit
from aromatrack.streams.fit import FitDecodeError, Samples, decode_fit, fit_payload

log = logging.getLogger(__name__)

SAMPLE_BUCKET_S = 10
SEEN_MONTHS = 60  # months with workouts whose ids are remembered per athlete, for duplicate detection
SESSION_MEMORY_DAYS = 70  # sessions kept for the weekly modality mix
SUMMARY_BATCH_SIZE = 500
SUMMARY_BATCH_WINDOW_S = 0.02
DAILY_MEMORY_DAYS = 200  # daily loads kept; older ones live on as the model's carried CTL/ATL
REST_DAYS_INTERVAL_S = float(os.environ.get("AROMATRACK_REST_DAYS_INTERVAL_S", "3600"))

fit_topic = app.topic(topics.topic_for("workout.fit"), value_serializer="raw", key_serializer="raw")
summary_topic = app.topic(topics.topic_for("workout.summary"), value_serializer="raw", key_serializer="raw")
scale_topic = app.topic(topics.topic_for("scale.reading"), value_serializer="raw", key_serializer="raw")
state_table = athlete_keyed_table("workout_state")
seen_table = athlete_keyed_table("workout_seen")
profile_topic = app.topic(topics.topic_for("athlete.profile"), value_serializer="raw", key_serializer="raw")
profile_table = athlete_keyed_table("athlete_profiles")


def _read_json(table: faust.Table, key: bytes, empty: Any) -> Any:
    """A table entry's JSON value, or `empty` for a key never stored."""
    stored = table.get(key)
    return json.loads(stored) if stored else empty


def _load_state(athlete_key: bytes) -> dict[str, Any]:
    return _read_json(state_table, athlete_key, {"daily": {}, "sessions": []})


def _save_state(athlete_key: bytes, state: dict[str, Any]) -> None:
    state_table[athlete_key] = json.dumps(state, separators=(",", ":")).encode()


class SeenIds:
    """The ids already counted of one kind (`fit` uploads, `summary` events) per athlete, filed by the workout's
    month in the `workout_seen` table, with a list of the months: a batch writes the months it touched. Kept in
    the athlete's state, the ids were rewritten whole on every batch, and that list (up to 5,000 ids) made the
    changelog grow with history. The newest SEEN_MONTHS months that have workouts are remembered; a repeat of a
    workout older than those is not recognised. One instance per message or batch (it caches what it read)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.entries: dict[bytes, list[str]] = {}
        self.changed: set[bytes] = set()
        self.forgotten: set[bytes] = set()

    def _entry(self, key: bytes) -> list[str]:
        if key not in self.entries:
            self.entries[key] = _read_json(seen_table, key, [])
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

    def save(self) -> None:
        for key in self.changed - self.forgotten:
            seen_table[key] = json.dumps(self.entries[key], separators=(",", ":")).encode()
        for key in self.forgotten:
            seen_table.pop(key, None)
        self.changed, self.forgotten = set(), set()


def _profile_history(athlete_key: bytes) -> list[list[Any]]:
    return _read_json(profile_table, athlete_key, [])


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
    sender did not give them."""
    body = summary.model_dump(mode="json", exclude_none=True)
    if "load" not in body or "modality" not in body:
        load = tl.workout_load(tl.WorkoutInput.from_summary(body), athlete)
        body.setdefault("trimp", load.trimp)
        body.setdefault("load", round(load.load, 3))
        body.setdefault("modality", load.modality)
    return {name: value for name, value in body.items() if value is not None}


def record_workout(
    state: dict[str, Any], body: dict[str, Any], time_zone: str | None = None
) -> tuple[list[tl.DailyLoad], list[tl.WeeklyModality]]:
    """Add one workout to the athlete's state; the days and weeks whose points must be rewritten.

    Days and weeks are the athlete's own (`tl.local_time`: the profile's time zone, else the event's offset); the
    points of a local day are stamped at that date's 00:00 UTC.

    Daily loads older than DAILY_MEMORY_DAYS before the newest are folded into `carry` (the CTL/ATL of the day
    before the first kept day), so the state stays bounded as history grows and the model stays exact. A
    workout older than the kept days is counted on the first kept day."""
    start = tl.local_time(datetime.fromisoformat(body["time"]), time_zone)
    carry = state.get("carry")
    first_kept = date.fromisoformat(carry["day"]) if carry else None
    day = max(start.date(), first_kept) if first_kept else start.date()
    state["daily"][day.isoformat()] = state["daily"].get(day.isoformat(), 0.0) + float(body["load"])
    state["sessions"].append([start.isoformat(), body["modality"], float(body["load"]), body["duration_s"] / 60])
    daily = {date.fromisoformat(d): load for d, load in state["daily"].items()}
    newest = max(date.fromisoformat(s[0][:10]) for s in state["sessions"])
    state["sessions"] = [s for s in state["sessions"] if date.fromisoformat(s[0][:10]) > newest - timedelta(days=SESSION_MEMORY_DAYS)]
    history = tl.daily_load_model(daily, start=first_kept, carry=(carry["ctl"], carry["atl"]) if carry else (0.0, 0.0))
    _forget_old_days(state, history)
    model = [d for d in history if d.day >= day]
    week = tl.week_start(day)
    sessions = (tl.Session(datetime.fromisoformat(s[0]), s[1], s[2], s[3]) for s in state["sessions"])
    mix = [w for w in tl.weekly_modality_mix(sessions) if w.week_start == week]
    return model, mix


def _forget_old_days(state: dict[str, Any], history: list[tl.DailyLoad]) -> None:
    cut = history[-1].day - timedelta(days=DAILY_MEMORY_DAYS)
    if history[0].day >= cut:
        return
    before_cut = history[(cut - history[0].day).days - 1]
    state["carry"] = {"day": cut.isoformat(), "ctl": before_cut.ctl, "atl": before_cut.atl}
    state["daily"] = {d: load for d, load in state["daily"].items() if date.fromisoformat(d) >= cut}


def daily_points(athlete_id: str, days: list[tl.DailyLoad]) -> list[Point]:
    return [
        series.TRAINING_LOAD_DAILY.point(
            datetime.combine(d.day, datetime.min.time(), timezone.utc),
            {"athlete_id": athlete_id},
            {"load": d.load, "ctl": d.ctl, "atl": d.atl, "tsb": d.tsb, "acwr": d.acwr},
        )
        for d in days
    ]


def load_points(athlete_id: str, body: dict[str, Any], days: list[tl.DailyLoad], mix: list[tl.WeeklyModality]) -> list[Point]:
    athlete = {"athlete_id": athlete_id}
    fields = {name: body.get(name) for name in series.WORKOUT.fields if name != "workout_id"}
    fields["workout_id"] = body.get("workout_id", body["event_id"])
    fields["salvaged"] = bool(body.get("salvaged", False))
    points = [
        series.WORKOUT.point(
            datetime.fromisoformat(body["time"]),
            {**athlete, "sport": body["sport"], "modality": body["modality"]},
            fields,
        )
    ]
    points += daily_points(athlete_id, days)
    points += [
        series.MODALITY_WEEKLY.point(
            datetime.combine(w.week_start, datetime.min.time(), timezone.utc),
            {**athlete, "modality": w.modality},
            {"load": w.load, "minutes": w.minutes, "share": w.share},
        )
        for w in mix
    ]
    return points


async def handle_fit(athlete_key: bytes | None, raw: bytes) -> None:
    source = topics.topic_for("workout.fit")
    try:
        event = parse_event(raw)
        if not isinstance(event, WorkoutFit):
            raise EventError(f"type: {event.type} events do not belong on {source}")
        data = fit_payload(event)
        decoded = decode_fit(data)
    except (EventError, FitDecodeError, OSError) as exc:
        await dead_letter(raw, str(exc), source, athlete_key)
        return
    key = event.athlete_id.encode()
    workout_id = fit.workout_id(event.athlete_id, data)
    seen = SeenIds("fit")
    recorded_at = decoded.workouts[0].start if decoded.workouts else min(weigh_in.time for weigh_in in decoded.weigh_ins)
    if not seen.add(key, recorded_at, workout_id):
        log.info("duplicate FIT upload skipped (workout %s)", workout_id[:8])
        return
    for weigh_in in decoded.weigh_ins:
        try:
            reading = ScaleReading(athlete_id=event.athlete_id, time=weigh_in.time, device="fit", **{
                name: value for name, value in vars(weigh_in).items() if name != "time" and value is not None
            })
        except ValidationError as exc:
            await dead_letter(raw, f"weight_scale message is not a valid scale.reading: {exc.errors()[0]['msg']}", source, key)
            continue
        await scale_topic.send(key=key, value=dump_event(reading))
    if decoded.workouts:
        # One profile for all of a file's sessions: the one in effect when its first session started.
        athlete = tl.athlete_at(_profile_history(key), decoded.workouts[0].start.timestamp())
        summaries = fit.upload_summaries(decoded, event.athlete_id, data, athlete)
        await influx().write([
            point
            for workout, summary in zip(decoded.workouts, summaries)
            for point in sample_points(event.athlete_id, summary["workout_id"], workout.samples)
        ])
        for summary in summaries:
            await summary_topic.send(key=key, value=json.dumps(summary).encode())
    seen.save()


def summary_step(
    states: dict[bytes, dict[str, Any]], seen: SeenIds, raw: bytes
) -> tuple[WorkoutSummary, dict[str, Any], list[Point]] | None:
    """Validate one summary and add it to its athlete's state (loaded once per batch into `states`); returns the
    event, the body to forward and its points, or None for a repeat. EventError for an invalid message."""
    event = parse_event(raw)
    if not isinstance(event, WorkoutSummary):
        raise EventError(f"type: {event.type} events do not belong on {topics.topic_for('workout.summary')}")
    key = event.athlete_id.encode()
    state = states[key] if key in states else states.setdefault(key, _load_state(key))
    if not seen.add(key, event.time, event.event_id):
        return None
    athlete = tl.athlete_at(_profile_history(key), event.time.timestamp())
    body = with_load(event, athlete)
    days, mix = record_workout(state, body, athlete.time_zone)
    return event, body, load_points(event.athlete_id, body, days, mix)


async def handle_summaries(messages: list[tuple[bytes | None, bytes]]) -> None:
    """A batch of summaries: each athlete's state loaded and saved once, one InfluxDB write (one write per
    workout was a fifth of a backfill's time), then the forwards to the timeline."""
    source = topics.topic_for("workout.summary")
    states: dict[bytes, dict[str, Any]] = {}
    seen = SeenIds("summary")
    points: list[Point] = []
    forwards = []
    for athlete_key, raw in messages:
        try:
            accepted = summary_step(states, seen, raw)
        except EventError as exc:
            await dead_letter(raw, str(exc), source, athlete_key)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad message must not stop the batch
            await _dead_letter_bug(exc, raw, source, athlete_key)
            continue
        if accepted is not None:
            event, body, event_points = accepted
            points += event_points
            forwards.append((event.athlete_id.encode(), body))
    await influx().write(points)
    # Forward before remembering: a crash in between re-sends (the clinical engine drops repeated event ids)
    # rather than losing the workout for the timeline.
    for key, body in forwards:
        await timeline_topic.send(key=key, value=json.dumps(body).encode())
    for key, state in states.items():
        _save_state(key, state)
    seen.save()


async def _dead_letter_bug(exc: Exception, raw: bytes, source: str, athlete_key: bytes | None) -> None:
    """A bug or a decoder surprise dead-letters the message (with the exception's type) instead of stopping the worker."""
    log.exception("workout message failed")
    await dead_letter(raw, f"internal error while processing: {type(exc).__name__}; report this message", source, athlete_key)


async def _guarded(handler: Any, athlete_key: bytes | None, raw: bytes, source: str) -> None:
    try:
        await handler(athlete_key, raw)
    except Exception as exc:  # noqa: BLE001 - the worker must keep going; the reason goes with the message
        await _dead_letter_bug(exc, raw, source, athlete_key)


async def handle_profile(_athlete_key: bytes | None, raw: bytes) -> None:
    """Adds a profile to its athlete's history (keyed by the event's athlete, as every handler here)."""
    try:
        event = parse_event(raw)
    except EventError:
        return  # the ingest consumer dead-letters it
    if not isinstance(event, AthleteProfile):
        return
    key = event.athlete_id.encode()
    history = tl.with_profile(_profile_history(key), event.time.timestamp(), event.model_dump())
    profile_table[key] = json.dumps(history, separators=(",", ":")).encode()


@app.agent(profile_topic, name="aromatrack.workouts.profiles")
async def workouts_profiles(stream: faust.StreamT) -> None:
    async for athlete_key, raw in stream.items():
        await _guarded(handle_profile, athlete_key, raw, topics.topic_for("athlete.profile"))


@app.agent(fit_topic, name="aromatrack.workouts.fit")
async def workouts_fit(stream: faust.StreamT) -> None:
    async for athlete_key, raw in stream.items():
        await _guarded(handle_fit, athlete_key, raw, topics.topic_for("workout.fit"))


@app.agent(summary_topic, name="aromatrack.workouts.summary")
async def workouts_summary(stream: faust.StreamT) -> None:
    async for batch in stream.take_events(SUMMARY_BATCH_SIZE, within=SUMMARY_BATCH_WINDOW_S):
        async with model_lock:
            await handle_summaries([(event.key, event.value) for event in batch])


model_lock = asyncio.Lock()  # the summary agent's batch or the rest-day timer, never both
_rest_days_written: dict[bytes, tl.DailyLoad] = {}  # per athlete, the last rest day this worker wrote


def rest_day_points(athlete_key: bytes, state: dict[str, Any], today: date) -> list[Point]:
    """The athlete's rest days from the latest workout through `today` (the athlete's local date), unless this
    worker already wrote exactly those (the model after the last workout changes only with a workout or a day)."""
    carry = state.get("carry")
    daily = {date.fromisoformat(d): load for d, load in state["daily"].items()}
    days = tl.rest_days(daily, today, start=date.fromisoformat(carry["day"]) if carry else None,
                        carry=(carry["ctl"], carry["atl"]) if carry else (0.0, 0.0))
    if not days or _rest_days_written.get(athlete_key) == days[-1]:
        return []
    _rest_days_written[athlete_key] = days[-1]
    return daily_points(athlete_key.decode(), days)


@app.timer(interval=REST_DAYS_INTERVAL_S)
async def write_rest_days() -> None:
    """Carry every athlete's load model through today, in one InfluxDB write."""
    now = datetime.now(timezone.utc)
    # Only athletes whose summaries this worker consumes: a standby copy of another worker's state may lag
    # behind a workout that worker has just written, and its rest days would overwrite that workout's day.
    summaries = summary_topic.get_topic_name()
    active = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == summaries}
    async with model_lock:
        points = []
        for key, raw in list(state_table.items()):
            if state_table.partition_for_key(key) not in active:
                continue
            time_zone = tl.athlete_at(_profile_history(key), now.timestamp()).time_zone
            points += rest_day_points(key, json.loads(raw), tl.local_time(now, time_zone).date())
        await influx().write(points)
