"""The one FIT adapter: bytes of a FIT file in, plain decoded workout (or scale readings) out.

Nothing else in the project imports a FIT decoder. Two decoders, chosen per file:
- `pyfitparsernative` (Rust, via PyO3) decodes every intact file: ~6x garmin-fit-sdk's speed on the corpus
  with the same summaries on every corpus file (benchmarks/bench_fit_decoders.py, BENCHMARKS.md "FIT
  decoding"), and it reads compressed-timestamp records. It checks the file CRC and refuses anything damaged.
- Garmin's `garmin-fit-sdk` is the salvage path for what the native decoder refuses, so a damaged upload
  keeps what precedes the damage (`decode_fit_salvaging`).

Damage handling, so an upload is never lost silently:
- truncated file or unfinished recording (header data size 0 or larger than the file): the messages before
  the damage are kept and the result is marked `salvaged` with the reason;
- bad file CRC with every message decoding: kept and marked `salvaged` (the CRC is the only thing wrong);
- a decode that stopped early (the salvage decoder's errors): marked `salvaged` with the decoder's reason;
- nothing usable (not a FIT header, no records, no session, no weigh-in): `FitDecodeError` with a reason a
  person can act on. Every decoder exception becomes a `FitDecodeError`, never a crash of the caller.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import gzip
import io
import struct
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar

from garmin_fit_sdk import CrcCalculator, Decoder, Stream
from pyfitparsernative import parse_fit_bytes

from aromatrack.domain.training_load import Athlete, WorkoutInput, workout_load
from aromatrack.streams.fit_columns import FileContent, RecordColumns, number, read_columns, walk_messages
from aromatrack.schemas.events import EventError, WorkoutFit

FIT_SIGNATURE = b".FIT"
# What one real activity can hold, checked before decoding (`check_fit_bounds`): the corpus's 29-hour ride is
# 2.1 MB with 83k messages; 48 hours at 1 Hz is 173k records. A gzip upload of 96 kB can inflate to 11M records.
MAX_FIT_BYTES = 16 * 1024 * 1024  # decompressed
MAX_FIT_MESSAGES = 250_000
TIME_FIELDS = ("timestamp", "start_time")  # the date_time fields the summaries read
TIMED_MESSAGES = ("session", "lap")  # whose time fields the summaries read (records: `_samples`)


class FitDecodeError(ValueError):
    """A FIT file that cannot be turned into a workout or a weigh-in; the message says why and what to do."""


@dataclass(frozen=True)
class Samples:
    """A workout's ~1 Hz samples as columns, one entry per timed record (None where a record lacks the value).

    Columns rather than an object per record: they are built and read for every record of every upload, and
    with the native decoder that per-record work would otherwise cost as much as the decoding."""

    time_s: tuple[int, ...]  # Unix seconds
    hr_bpm: tuple[float | None, ...]
    power_w: tuple[float | None, ...]
    speed_mps: tuple[float | None, ...]
    cadence_rpm: tuple[float | None, ...]

    CHANNELS: ClassVar[tuple[str, ...]] = ("hr_bpm", "power_w", "speed_mps", "cadence_rpm")

    def __len__(self) -> int:
        return len(self.time_s)


@dataclass(frozen=True)
class DecodedWorkout:
    """A workout's summary numbers (the `workout.summary` fields) and its ~1 Hz samples."""

    start: datetime
    sport: str
    sub_sport: str | None
    duration_s: float
    avg_hr_bpm: float | None
    max_hr_bpm: float | None
    avg_power_w: float | None
    max_power_w: float | None
    normalized_power_w: float | None
    distance_m: float | None
    records: int
    samples: Samples


@dataclass(frozen=True)
class WeighIn:
    """One `weight_scale` message with the `scale.reading` field names."""

    time: datetime
    weight_kg: float
    body_fat_pct: float | None
    hydration_pct: float | None
    bone_mass_kg: float | None
    muscle_mass_kg: float | None
    visceral_fat_rating: float | None


@dataclass(frozen=True)
class DecodedFit:
    """A decoded file: one workout per sport session in time order (a multisport or brick file has several;
    transitions are sessions of their own, sport `transition`), weigh-ins, and what the salvage had to do."""

    workouts: tuple[DecodedWorkout, ...]
    weigh_ins: tuple[WeighIn, ...]
    messages: int
    laps: int = 0
    sessions: int = 0
    salvaged: bool = False
    salvage_reason: str | None = None


def _repair_header(data: bytes) -> tuple[bytes, str | None]:
    """Check the header; point a zero or too-large data size at the bytes actually present (unfinished upload)."""
    if len(data) < 12:
        raise FitDecodeError(f"not a FIT file: {len(data)} bytes, shorter than the 12-byte FIT header; re-export it")
    header_size = data[0]
    if header_size not in (12, 14) or data[8:12] != FIT_SIGNATURE:
        raise FitDecodeError("not a FIT file: no '.FIT' signature in the header; check that the upload is a .fit export")
    if len(data) < header_size:
        raise FitDecodeError(f"file truncated inside its {header_size}-byte header ({len(data)} bytes); re-export it")
    (data_size,) = struct.unpack_from("<I", data, 4)
    available = len(data) - header_size
    if 0 < data_size <= available:
        return data, None
    reason = (
        "header data size is 0 (recording was not finished)"
        if data_size == 0
        else f"file truncated: header promises {data_size} data bytes, {available} present"
    )
    header = bytearray(data[:header_size])
    struct.pack_into("<I", header, 4, available)
    if header_size == 14:
        struct.pack_into("<H", header, 12, CrcCalculator.calculate_crc(header, 0, 12))
    return bytes(header) + data[header_size:] + b"\x00\x00", reason


def _weigh_in(message: dict[str, Any]) -> WeighIn | None:
    weight = message.get("weight")
    if not isinstance(weight, (int, float)) or "timestamp" not in message:
        return None
    return WeighIn(
        time=message["timestamp"],
        weight_kg=float(weight),
        body_fat_pct=message.get("percent_fat"),
        hydration_pct=message.get("percent_hydration"),
        bone_mass_kg=message.get("bone_mass"),
        muscle_mass_kg=message.get("muscle_mass"),
        visceral_fat_rating=message.get("visceral_fat_rating"),
    )


def _samples(records: RecordColumns) -> Samples:
    """The samples of the records that have a timestamp."""
    if None in records.time_s:
        records = records.rows([index for index, seconds in enumerate(records.time_s) if seconds is not None])
    return Samples(
        time_s=tuple(records.time_s),
        hr_bpm=tuple(records.hr_bpm),
        power_w=tuple(records.power_w),
        speed_mps=tuple(records.speed_mps),
        cadence_rpm=tuple(records.cadence_rpm),
    )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _max(values: list[float]) -> float | None:
    return float(max(values)) if values else None


def _workouts(content: FileContent) -> tuple[DecodedWorkout, ...]:
    """One workout per session, each from its own session message and records (a record belongs to the
    latest session started at or before its time; a record without a time to the session of the record
    before it). A file without sessions (salvaged before its end) is one workout made of its records."""
    records, sessions = content.records, content.sessions
    if len(sessions) <= 1:
        file_sport = (content.sports or [{}])[0].get("sport")
        workout = _workout(sessions[0] if sessions else {}, records, file_sport)
        return (workout,) if workout else ()
    sessions = sorted((s for s in sessions if isinstance(s.get("start_time"), datetime)), key=lambda s: s["start_time"])
    starts = [int(session["start_time"].timestamp()) for session in sessions]
    parts: list[list[int]] = [[] for _ in sessions]
    index = 0
    for row, seconds in enumerate(records.time_s):
        if seconds is not None:
            index = max(bisect.bisect_right(starts, seconds) - 1, 0)
        parts[index].append(row)
    found = (_workout(session, records.rows(part), None) for session, part in zip(sessions, parts))
    return tuple(workout for workout in found if workout)


def _workout(session: dict[str, Any], records: RecordColumns, file_sport: str | None) -> DecodedWorkout | None:
    """Summary from the session message where present, filled in from its records (a salvaged file has no
    session); `file_sport`, a single-session file's `sport` message, names the sport before the session does."""
    samples = _samples(records)
    if not samples and not session:
        return None
    hrs = [hr for hr in samples.hr_bpm if hr]
    powers = [power for power in samples.power_w if power is not None]
    times = samples.time_s
    start = session.get("start_time") or (datetime.fromtimestamp(times[0], timezone.utc) if times else None)
    duration = number(session.get("total_timer_time")) or (float(times[-1] - times[0]) if len(times) > 1 else None)
    if not isinstance(start, datetime) or not duration:
        return None
    sport = file_sport or session.get("sport") or "generic"
    sub_sport = session.get("sub_sport")
    return DecodedWorkout(
        start=start.astimezone(timezone.utc),
        sport=str(sport),
        sub_sport=None if sub_sport in (None, "generic") else str(sub_sport),
        duration_s=duration,
        avg_hr_bpm=number(session.get("avg_heart_rate")) or _mean(hrs),
        max_hr_bpm=number(session.get("max_heart_rate")) or _max(hrs),
        avg_power_w=number(session.get("avg_power")) or _mean(powers),
        max_power_w=number(session.get("max_power")) or _max(powers),
        normalized_power_w=number(session.get("normalized_power")),
        distance_m=number(session.get("total_distance")) or _max([d for d in records.distance_m if d is not None]),
        records=len(records),
        samples=samples,
    )


def decode_fit(data: bytes) -> DecodedFit:
    """Decode a FIT file, salvaging what precedes any damage; FitDecodeError when nothing usable remains.

    An intact file is read by the columnar reader where it applies (`streams.fit_columns`), else by the native
    decoder; what either refuses goes to garmin-fit-sdk's salvage."""
    repaired, header_problem = _repair_header(data)
    if header_problem is None:
        content = read_columns(data)
        if content is not None:
            return _decoded(content, [], ())
        try:
            messages = _native_messages(data)
        except BaseException as exc:  # noqa: BLE001 - it refuses any damage (CRC, EOF); the salvage path says what
            # Some damage makes the Rust decoder panic: pyo3's PanicException derives from BaseException.
            if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
                raise
        else:
            # pyfitparsernative 0.2.3 leaves `weight` (type weight, scale 100) unscaled: 84.25 kg comes out 8425;
            # weigh-in files are a few hundred bytes, so they go to garmin-fit-sdk.
            if "weight_scale" not in messages:
                return _decoded(FileContent.of_messages(messages), [], ())
    return decode_fit_salvaging(data)


def decode_fit_salvaging(data: bytes) -> DecodedFit:
    """Decode with garmin-fit-sdk, which keeps the messages before a damage and reports it (the fallback, and the
    reference the native decoder's summaries are compared with)."""
    repaired, header_problem = _repair_header(data)
    try:
        decoder = Decoder(Stream.from_byte_array(bytearray(repaired)))
        crc_ok = header_problem is None and decoder.check_integrity()
        decoder = Decoder(Stream.from_byte_array(bytearray(repaired)))
        found, errors = decoder.read(expand_sub_fields=False, merge_heart_rates=False)
    except Exception as exc:  # the decoder's own failures are data problems, reported, never raised through
        raise FitDecodeError(f"FIT decoder failed: {type(exc).__name__}: {exc}; the file is damaged") from None
    messages = {name.removesuffix("_mesgs"): group for name, group in found.items()}
    problems = [p for p in (header_problem, *(f"{type(e).__name__}: {e}" for e in errors)) if p]
    if not crc_ok and not problems:
        problems.append("file CRC does not match the data")
    weigh_ins = tuple(w for w in map(_weigh_in, messages.get("weight_scale", [])) if w is not None)
    return _decoded(FileContent.of_messages(messages), problems, weigh_ins)


def _native_messages(data: bytes) -> dict[str, list[dict[str, Any]]]:
    """The native decoder's messages grouped by type, with the time fields the summaries read as UTC datetimes
    (it gives them as naive ISO strings in UTC)."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for message in parse_fit_bytes(data):
        grouped[message["message_type"]].append(message)
    for name in TIMED_MESSAGES:
        for message in grouped.get(name, ()):
            for field in TIME_FIELDS:
                value = message.get(field)
                if isinstance(value, str):
                    message[field] = datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return grouped


def _decoded(content: FileContent, problems: list[str], weigh_ins: tuple[WeighIn, ...]) -> DecodedFit:
    """The workouts of a file's content, with its weigh-ins and what the salvage had to do."""
    workouts = _workouts(content)
    if not workouts and not weigh_ins:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise FitDecodeError(
            f"no workout or weigh-in in the file: {content.messages} messages decoded, none a record, session or "
            f"weight_scale{detail}; upload the activity's original .fit export"
        )
    return DecodedFit(
        workouts, weigh_ins, content.messages, content.laps, len(content.sessions), bool(problems),
        "; ".join(problems) or None,
    )


def summary_events(decoded: DecodedFit, athlete_id: str, athlete: Athlete = Athlete()) -> list[dict[str, Any]]:
    """One `workout.summary` event per workout (sport session) of the file, in time order, each with `records`,
    `start`, `trimp`, `load`, `modality` of its own; a salvage mark applies to every one."""
    if not decoded.workouts:
        raise FitDecodeError("the file holds weigh-ins only, no workout to summarise")
    return [_summary_event(workout, decoded, athlete_id, athlete) for workout in decoded.workouts]


def _summary_event(workout: DecodedWorkout, decoded: DecodedFit, athlete_id: str, athlete: Athlete) -> dict[str, Any]:
    hr_samples = [hr for hr in workout.samples.hr_bpm if hr]
    power_samples = [power or 0.0 for power in workout.samples.power_w] if workout.avg_power_w else []
    load = workout_load(
        WorkoutInput(
            sport=workout.sport,
            sub_sport=workout.sub_sport,
            duration_s=workout.duration_s,
            avg_hr_bpm=workout.avg_hr_bpm,
            max_hr_bpm=workout.max_hr_bpm,
            avg_power_w=workout.avg_power_w,
            normalized_power_w=workout.normalized_power_w,
            hr_samples=hr_samples,
            power_samples=power_samples,
        ),
        athlete,
    )
    event = {
        "type": "workout.summary",
        "athlete_id": athlete_id,
        "time": workout.start.isoformat(),
        "sport": workout.sport,
        "sub_sport": workout.sub_sport,
        "duration_s": round(workout.duration_s, 3),
        "avg_hr_bpm": workout.avg_hr_bpm,
        "max_hr_bpm": workout.max_hr_bpm,
        "avg_power_w": workout.avg_power_w,
        "max_power_w": workout.max_power_w,
        "distance_m": workout.distance_m,
        "records": workout.records,
        "start": workout.start.isoformat(),
        "trimp": load.trimp,
        "hrtss": load.hrtss,
        "power_tss": load.power_tss,
        "load": round(load.load, 3),
        "load_source": load.source,
        "modality": load.modality,
        "salvaged": decoded.salvaged,
        "salvage_reason": decoded.salvage_reason,
    }
    return {name: value for name, value in event.items() if value is not None}


def encode_fit(data: bytes) -> str:
    """How a FIT file travels in `fit_b64`: gzip then base64 (FIT records compress 3-5x).

    The gzip header's mtime is 0, so the same file always gives the same text (and the same event id).
    """
    return base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode()


def workout_id(athlete_id: str, data: bytes) -> str:
    """A FIT upload's workout id: the athlete with the file's bytes (two athletes' identical files are two
    workouts; the same athlete's re-upload is a duplicate)."""
    return hashlib.sha256(athlete_id.encode() + b"\x00" + data).hexdigest()[:32]


def session_workout_ids(athlete_id: str, data: bytes, sessions: int) -> list[str]:
    """The workout id of each session of an upload: the file's workout id for a single-session file, with the
    session's number (`-1`, `-2`, ...) for a multisport one, so a file's sessions stay recognisable together."""
    identity = workout_id(athlete_id, data)
    return [identity] if sessions == 1 else [f"{identity}-{number}" for number in range(1, sessions + 1)]


def upload_summaries(decoded: DecodedFit, athlete_id: str, data: bytes, athlete: Athlete = Athlete()) -> list[dict[str, Any]]:
    """The `workout.summary` events made of an upload, one per session, identified by their workout ids, their
    load computed with the athlete's numbers (the stream and `evaluate` both use this, so both see the same
    timeline)."""
    summaries = summary_events(decoded, athlete_id, athlete)
    for summary, identity in zip(summaries, session_workout_ids(athlete_id, data, len(summaries))):
        summary.update(event_id=identity, workout_id=identity)
    return summaries


def fit_payload(event: WorkoutFit) -> bytes:
    """The FIT bytes of an event, gunzipped when gzip-wrapped; EventError when too big or broken."""
    data = event.fit_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                data = stream.read(MAX_FIT_BYTES + 1)
        except (OSError, EOFError) as exc:
            raise EventError(f"fit_b64: gzip data is damaged ({exc}); re-send the file") from None
    check_fit_bounds(data)
    return data


def check_fit_bounds(data: bytes) -> None:
    """Refuse a file bigger, or with more messages, than one real activity holds, before the decoder spends
    seconds and hundreds of MB on it (the message count walks message headers only)."""
    if len(data) > MAX_FIT_BYTES:
        raise EventError(f"fit_b64: file larger than {MAX_FIT_BYTES // 2**20} MB; split the activity")
    if _count_messages(data, stop_after=MAX_FIT_MESSAGES) > MAX_FIT_MESSAGES:
        raise EventError(f"fit_b64: more than {MAX_FIT_MESSAGES} messages, more than one activity holds; "
                         "split the activity")


def _count_messages(data: bytes, stop_after: int) -> int:
    """Messages in a FIT file (or chained files), counted up to `stop_after` + 1. Where the structure cannot be
    followed (a data message of an undefined type) the count stops, as the decoder does."""
    count, start = 0, 0
    while start + 12 <= len(data) and data[start] in (12, 14) and data[start + 8 : start + 12] == FIT_SIGNATURE:
        position = start + data[start]
        declared = int.from_bytes(data[start + 4 : start + 8], "little")
        end = position + declared if 0 < declared <= len(data) - position else len(data)  # unfinished: all
        walk = walk_messages(data, position, end, limit=stop_after - count)
        count += walk.count
        if count > stop_after or not walk.complete:
            return count
        start = end + 2  # the file's CRC, then perhaps a chained file
    return count
