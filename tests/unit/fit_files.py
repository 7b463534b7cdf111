"""FIT files the corpus does not have, built for the tests from its real recordings: records with
compressed-timestamp headers (as older devices write them) and multisport activities (one file, several
sport sessions). A small little-endian FIT writer; field numbers, types and scales are the FIT profile's
(garmin-fit-sdk's `Profile`)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from aromatrack.streams.fit import DecodedWorkout, Samples

FIT_EPOCH_S = int(datetime(1989, 12, 31, tzinfo=timezone.utc).timestamp())


@dataclass(frozen=True)
class BaseType:
    code: int
    pack: str
    invalid: int


ENUM, UINT8, UINT16, UINT32 = BaseType(0x00, "B", 0xFF), BaseType(0x02, "B", 0xFF), BaseType(0x84, "H", 0xFFFF), BaseType(0x86, "I", 0xFFFFFFFF)
FILE_ID, SESSION, LAP, RECORD, EVENT, ACTIVITY = 0, 18, 19, 20, 21, 34
SPORTS = {"generic": 0, "running": 1, "cycling": 2, "transition": 3, "swimming": 5, "multisport": 18}
SUB_SPORTS = {None: 0, "treadmill": 1, "indoor_cycling": 6, "virtual_activity": 58}
TIMESTAMP = 253
COMPRESSED_SPAN_S = 32  # a compressed header's 5-bit offset reaches 31 s past the last full timestamp


def fit_crc(data: bytes | bytearray) -> int:
    """The FIT spec's CRC-16."""
    table = [0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
             0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400]
    crc = 0
    for byte in data:
        for nibble in (byte & 0xF, byte >> 4):
            tmp = table[crc & 0xF]
            crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ table[nibble]
    return crc


class FitWriter:
    """Definition and data messages in order; a definition is written whenever a local type's layout changes."""

    def __init__(self) -> None:
        self.body = bytearray()
        self.layouts: dict[int, tuple[int, tuple[tuple[int, BaseType], ...]]] = {}

    def write(self, number: int, fields: dict[int, tuple[BaseType, float | None]], local: int = 0,
              compressed_offset: int | None = None) -> None:
        """One data message; `compressed_offset` (0-31) writes a compressed-timestamp header instead of a normal one."""
        layout = (number, tuple((field, base) for field, (base, _) in fields.items()))
        if self.layouts.get(local) != layout:
            self.body += struct.pack("<BBBHB", 0x40 | local, 0, 0, number, len(fields))
            for field, base in layout[1]:
                self.body += bytes([field, struct.calcsize(base.pack), base.code])
            self.layouts[local] = layout
        if compressed_offset is None:
            self.body.append(local)
        else:
            assert local < 4 and 0 <= compressed_offset < 32
            self.body.append(0x80 | local << 5 | compressed_offset)
        for base, value in fields.values():
            self.body += struct.pack("<" + base.pack, base.invalid if value is None else round(value))

    def file(self) -> bytes:
        header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(self.body), b".FIT")
        header += struct.pack("<H", fit_crc(header))
        return header + bytes(self.body) + struct.pack("<H", fit_crc(header + self.body))


def fit_time(unix_s: float) -> int:
    return round(unix_s) - FIT_EPOCH_S


def _record_fields(samples: Samples, index: int) -> dict[int, tuple[BaseType, float | None]]:
    def scaled(value: float | None, scale: int) -> float | None:
        return None if value is None else value * scale

    return {
        3: (UINT8, samples.hr_bpm[index]),
        4: (UINT8, samples.cadence_rpm[index]),
        6: (UINT16, scaled(samples.speed_mps[index], 1000)),
        7: (UINT16, samples.power_w[index]),
    }


@dataclass(frozen=True)
class Part:
    """One session of a built activity: a real recording's samples moved to start at `start_s`."""

    workout: DecodedWorkout
    sport: str
    start_s: int
    sub_sport: str | None = None

    @property
    def shift_s(self) -> int:
        return self.start_s - self.workout.samples.time_s[0]

    @property
    def end_s(self) -> int:
        return self.workout.samples.time_s[-1] + self.shift_s


def write_records(writer: FitWriter, samples: Samples, shift_s: int, compress_from: int | None) -> None:
    """The samples as records; from record `compress_from` on (None: never), a full timestamp only where the
    gap since the last one is too long for a compressed header's 5-bit offset, compressed headers elsewhere."""
    last_full = None
    for index, seconds in enumerate(samples.time_s):
        moment = fit_time(seconds + shift_s)
        fields = _record_fields(samples, index)
        compressed = compress_from is not None and index >= compress_from
        if compressed and last_full is not None and 0 <= moment - last_full < COMPRESSED_SPAN_S:
            writer.write(RECORD, fields, local=0, compressed_offset=moment & 0x1F)
        else:
            writer.write(RECORD, {TIMESTAMP: (UINT32, moment), **fields}, local=1)
            last_full = moment


def _summary_fields(part: Part, elapsed_s: float) -> dict[int, tuple[BaseType, float | None]]:
    workout = part.workout
    return {
        TIMESTAMP: (UINT32, fit_time(part.start_s + elapsed_s)),
        2: (UINT32, fit_time(part.start_s)),
        7: (UINT32, elapsed_s * 1000),
        8: (UINT32, workout.duration_s * 1000),
        9: (UINT32, None if workout.distance_m is None else workout.distance_m * 100),
    }


def build_activity(parts: list[Part], compress_from: int | None = None) -> bytes:
    """An activity file: file_id, then per part its records, one lap and one session (each session with its
    own sport, times and totals), then an activity message counting the sessions. `compress_from`: the index
    in each part from which records carry compressed-timestamp headers (None: none do)."""
    writer = FitWriter()
    writer.write(FILE_ID, {0: (ENUM, 4), 1: (UINT16, 1), 2: (UINT16, 1), 4: (UINT32, fit_time(parts[0].start_s))}, local=2)
    for index, part in enumerate(parts):
        write_records(writer, part.workout.samples, part.shift_s, compress_from)
        elapsed = float(part.end_s - part.start_s)
        writer.write(LAP, {**_summary_fields(part, elapsed), 25: (ENUM, SPORTS[part.sport]), 254: (UINT16, index)}, local=3)
        workout = part.workout
        writer.write(SESSION, {
            **_summary_fields(part, elapsed),
            5: (ENUM, SPORTS[part.sport]),
            6: (ENUM, SUB_SPORTS[part.sub_sport]),
            16: (UINT8, workout.avg_hr_bpm),
            17: (UINT8, workout.max_hr_bpm),
            20: (UINT16, workout.avg_power_w),
            21: (UINT16, workout.max_power_w),
            25: (UINT16, index),
            26: (UINT16, 1),
            254: (UINT16, index),
        }, local=3)
    writer.write(ACTIVITY, {TIMESTAMP: (UINT32, fit_time(parts[-1].end_s)), 1: (UINT16, len(parts)), 2: (ENUM, 0)}, local=3)
    return writer.file()


def excerpt(workout: DecodedWorkout, count: int) -> DecodedWorkout:
    """The first `count` samples of a workout as a workout of their own, without session totals (the decoder
    takes them from the records), e.g. a transition."""
    samples = Samples(*(getattr(workout.samples, name)[:count] for name in ("time_s", *Samples.CHANNELS)))
    return replace(
        workout, duration_s=float(samples.time_s[-1] - samples.time_s[0]), avg_hr_bpm=None, max_hr_bpm=None,
        avg_power_w=None, max_power_w=None, distance_m=None, records=count, samples=samples,
    )
