"""The one FIT adapter: bytes of a FIT file in, plain decoded workout (or scale readings) out.

Nothing else in the project imports a FIT decoder. The decoder is Garmin's own `garmin-fit-sdk`: in
benchmarks/bench_fit_decoders.py it decoded the real corpus fastest with flat memory, and it tracks the current
FIT profile (see BENCHMARKS.md, "FIT decoding").

Damage handling, so an upload is never lost silently:
- truncated file or unfinished recording (header data size 0 or larger than the file): the messages before
  the damage are kept and the result is marked `salvaged` with the reason;
- bad file CRC with every message decoding: kept and marked `salvaged` (the CRC is the only thing wrong);
- nothing usable (not a FIT header, no records, no session, no weigh-in): `FitDecodeError` with a reason a
  person can act on. Every decoder exception becomes a `FitDecodeError`, never a crash of the caller.
"""

from __future__ import annotations

import base64
import hashlib
import gzip
import io
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from garmin_fit_sdk import CrcCalculator, Decoder, Stream

from aromatrack.domain.training_load import Athlete, WorkoutInput, workout_load
from aromatrack.schemas.events import EventError, WorkoutFit

FIT_SIGNATURE = b".FIT"
# What one real activity can hold, checked before decoding (`check_fit_bounds`): the corpus's 29-hour ride is
# 2.1 MB with 83k messages; 48 hours at 1 Hz is 173k records. A gzip upload of 96 kB can inflate to 11M records.
MAX_FIT_BYTES = 16 * 1024 * 1024  # decompressed
MAX_FIT_MESSAGES = 250_000


class FitDecodeError(ValueError):
    """A FIT file that cannot be turned into a workout or a weigh-in; the message says why and what to do."""


@dataclass(frozen=True)
class Sample:
    time: datetime
    hr_bpm: float | None
    power_w: float | None
    speed_mps: float | None
    cadence_rpm: float | None


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
    samples: tuple[Sample, ...]


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
    workout: DecodedWorkout | None
    weigh_ins: tuple[WeighIn, ...]
    messages: int
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


def _number(value: Any) -> float | None:
    """A field value as a float; None for absent or non-numeric (e.g. a second, empty `distance` field)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _samples(records: list[dict[str, Any]]) -> tuple[Sample, ...]:
    return tuple(
        Sample(
            time=record["timestamp"],
            hr_bpm=_number(record.get("heart_rate")),
            power_w=_number(record.get("power")),
            speed_mps=_number(record.get("enhanced_speed", record.get("speed"))),
            cadence_rpm=_number(record.get("cadence")),
        )
        for record in records
        if isinstance(record.get("timestamp"), datetime)
    )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _workout(messages: dict[str, list[dict[str, Any]]]) -> DecodedWorkout | None:
    """Summary from the session message where present, filled in from the records (a salvaged file has no session)."""
    records = messages.get("record_mesgs", [])
    sessions = messages.get("session_mesgs", [])
    samples = _samples(records)
    if not samples and not sessions:
        return None
    session = sessions[0] if sessions else {}
    hrs = [s.hr_bpm for s in samples if s.hr_bpm]
    powers = [s.power_w for s in samples if s.power_w is not None]
    distances = [d for d in (_number(r.get("distance")) for r in records) if d is not None]
    start = session.get("start_time") or (samples[0].time if samples else None)
    duration = _number(session.get("total_timer_time")) or (
        (samples[-1].time - samples[0].time).total_seconds() if len(samples) > 1 else None
    )
    if not isinstance(start, datetime) or not duration:
        return None
    sport = (messages.get("sport_mesgs") or [{}])[0].get("sport") or session.get("sport") or "generic"
    sub_sport = session.get("sub_sport")
    return DecodedWorkout(
        start=start.astimezone(timezone.utc),
        sport=str(sport),
        sub_sport=None if sub_sport in (None, "generic") else str(sub_sport),
        duration_s=duration,
        avg_hr_bpm=_number(session.get("avg_heart_rate")) or _mean(hrs),
        max_hr_bpm=_number(session.get("max_heart_rate")) or (max(hrs) if hrs else None),
        avg_power_w=_number(session.get("avg_power")) or _mean(powers),
        max_power_w=_number(session.get("max_power")) or (max(powers) if powers else None),
        normalized_power_w=_number(session.get("normalized_power")),
        distance_m=_number(session.get("total_distance")) or (max(distances) if distances else None),
        records=len(records),
        samples=samples,
    )


def decode_fit(data: bytes) -> DecodedFit:
    """Decode a FIT file, salvaging what precedes any damage; FitDecodeError when nothing usable remains."""
    repaired, header_problem = _repair_header(data)
    try:
        decoder = Decoder(Stream.from_byte_array(bytearray(repaired)))
        crc_ok = header_problem is None and decoder.check_integrity()
        decoder = Decoder(Stream.from_byte_array(bytearray(repaired)))
        messages, errors = decoder.read(expand_sub_fields=False, merge_heart_rates=False)
    except Exception as exc:  # the decoder's own failures are data problems, reported, never raised through
        raise FitDecodeError(f"FIT decoder failed: {type(exc).__name__}: {exc}; the file is damaged") from None
    workout = _workout(messages)
    weigh_ins = tuple(w for w in map(_weigh_in, messages.get("weight_scale_mesgs", [])) if w is not None)
    count = sum(len(group) for group in messages.values())
    problems = [p for p in (header_problem, *(f"{type(e).__name__}: {e}" for e in errors)) if p]
    if not crc_ok and not problems:
        problems.append("file CRC does not match the data")
    if workout is None and not weigh_ins:
        detail = f" ({'; '.join(problems)})" if problems else ""
        raise FitDecodeError(
            f"no workout or weigh-in in the file: {count} messages decoded, none a record, session or weight_scale"
            f"{detail}; upload the activity's original .fit export"
        )
    return DecodedFit(workout, weigh_ins, count, bool(problems), "; ".join(problems) or None)


def summary_event(decoded: DecodedFit, athlete_id: str, athlete: Athlete = Athlete()) -> dict[str, Any]:
    """The `workout.summary` event for a decoded workout, with `records`, `start`, `trimp`, `load`, `modality`."""
    workout = decoded.workout
    if workout is None:
        raise FitDecodeError("the file holds weigh-ins only, no workout to summarise")
    hr_samples = [s.hr_bpm for s in workout.samples if s.hr_bpm]
    power_samples = [s.power_w or 0.0 for s in workout.samples] if workout.avg_power_w else []
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


def upload_summary(decoded: DecodedFit, athlete_id: str, data: bytes, athlete: Athlete = Athlete()) -> dict[str, Any]:
    """The `workout.summary` event made of an upload, identified by its workout id, its load computed with the
    athlete's numbers (the stream and `evaluate` both use this, so both see the same timeline)."""
    summary = summary_event(decoded, athlete_id, athlete)
    identity = workout_id(athlete_id, data)
    summary.update(event_id=identity, workout_id=identity)
    return summary


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
    seconds and hundreds of MB on it (the message count walks record headers only)."""
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
        sizes: dict[int, int] = {}  # data message size by local message type, from the definitions seen
        while position < end:
            if count > stop_after:
                return count
            header = data[position]
            if header & 0xC0 == 0x40:  # definition: 5 fixed bytes, then 3 per field (its size the 2nd)
                fields = data[position + 5] if position + 5 < end else 0
                size = sum(data[position + 7 : position + 6 + 3 * fields : 3])
                position += 6 + 3 * fields
                if header & 0x20 and position < end:  # developer fields, the same way
                    size += sum(data[position + 2 : position + 1 + 3 * data[position] : 3])
                    position += 1 + 3 * data[position]
                sizes[header & 0x0F] = size
            else:  # data message, normal or compressed-timestamp header
                size = sizes.get((header >> 5) & 0x03 if header & 0x80 else header & 0x0F)
                if size is None:
                    return count
                position += 1 + size
            count += 1
        start = end + 2  # the file's CRC, then perhaps a chained file
    return count
