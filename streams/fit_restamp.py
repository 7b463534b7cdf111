"""Re-stamp a FIT file: move every timestamp by one offset so the activity starts at a chosen instant.

The demo cohort puts real recordings on its synthetic dates with this. It is a pure function over bytes
that walks the records itself (no decoding, nothing else changes), beside the decoder adapter
(`streams/fit.py`) because both read the FIT profile of `garmin-fit-sdk`, the authority on which fields
are dates:
- field 253 (timestamp) of every message, known or not, and every `date_time` / `local_date_time` field of
  the profile (file_id.time_created, session/lap start_time, activity.local_timestamp, ...), all by the same
  number of seconds; invalid values and system times (below 0x10000000, seconds since power-on) stay;
- compressed-timestamp headers keep meaning "the previous timestamp + their 5-bit offset": the offset is
  rewritten modulo 32, so any shift (not only multiples of 32 s) stays exact;
- little- and big-endian definitions, developer fields (skipped by size), chained files;
- the 14-byte header's CRC and each file CRC are recomputed.
A file it cannot walk, whose CRC is already wrong, or that holds rolling 8/16-bit timestamps (all-day
monitoring files) raises `FitRestampError` instead of returning something half shifted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from garmin_fit_sdk import Profile

FIT_EPOCH_S = int(datetime(1989, 12, 31, tzinfo=timezone.utc).timestamp())
SYSTEM_TIME_LIMIT = 0x10000000  # FIT: a date_time below this counts seconds since the device powered on
INVALID_UINT32 = 0xFFFFFFFF
TIMESTAMP_FIELD = 253
SESSION, RECORD = Profile["mesg_num"]["SESSION"], Profile["mesg_num"]["RECORD"]
SESSION_START_TIME = 2
TIME_BASE_TYPES = {6, 12}  # uint32, uint32z (the low 5 bits of a FIT base type)
TIME_FIELDS = frozenset(
    (number, field_number)
    for number, message in Profile["messages"].items()
    for field_number, field in message["fields"].items()
    if field["type"] in ("date_time", "local_date_time")
)
ROLLING_TIME_FIELDS = frozenset(
    (number, field_number)
    for number, message in Profile["messages"].items()
    for field_number, field in message["fields"].items()
    if field["name"] in ("timestamp_16", "timestamp_min_8")
)


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def _fit_crc(data: bytes | bytearray | memoryview) -> int:
    """FIT's CRC-16 (the SDK's CrcCalculator), a byte at a time: the SDK's nibble loop is ~10x slower."""
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


class FitRestampError(ValueError):
    """A FIT file the re-stamper cannot walk or would damage; the message says where and why."""


@dataclass(frozen=True)
class _Layout:
    """What a definition message says about its data messages."""

    number: int  # global message number
    big_endian: bool
    size: int  # bytes after the record header, developer fields included
    time_offsets: tuple[int, ...]  # of every 4-byte time value
    field_offsets: dict[int, int]  # time field number -> offset

    def value(self, data: bytearray, position: int, field_number: int) -> int | None:
        """The valid absolute time in one field of the data message at `position`, if it has that field."""
        if field_number not in self.field_offsets:
            return None
        layout = ">I" if self.big_endian else "<I"
        (value,) = struct.unpack_from(layout, data, position + 1 + self.field_offsets[field_number])
        return value if SYSTEM_TIME_LIMIT <= value < INVALID_UINT32 else None


def restamp(data: bytes, start: datetime) -> bytes:
    """The file with every timestamp moved so that its activity (first session, else first record) starts at `start`."""
    return restamper(data)(start)


def restamper(data: bytes) -> Callable[[datetime], bytes]:
    """`restamp` of one file at many instants (the demo cohort's use): the file is walked and checked once."""
    walked = _walk(bytearray(data))
    if walked.activity_start is None:
        raise FitRestampError("no session start_time or record timestamp to re-stamp from")

    def at(start: datetime) -> bytes:
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        out = bytearray(data)
        _shift(out, walked, round(start.timestamp()) - FIT_EPOCH_S - walked.activity_start)
        return bytes(out)

    return at


@dataclass(frozen=True)
class _Walked:
    time_slots: list[tuple[int, bool]]  # (position, big endian) of every 4-byte time value
    compressed_headers: list[int]  # positions
    activity_start: int | None  # FIT seconds: the first session's start_time, else the first record's timestamp


def _shift(data: bytearray, walked: _Walked, seconds: int) -> None:
    for position, big_endian in walked.time_slots:
        layout = ">I" if big_endian else "<I"
        (value,) = struct.unpack_from(layout, data, position)
        if SYSTEM_TIME_LIMIT <= value < INVALID_UINT32:
            moved = value + seconds
            if not SYSTEM_TIME_LIMIT <= moved < INVALID_UINT32:
                raise FitRestampError(f"shifting by {seconds} s takes a timestamp out of FIT's date range")
            struct.pack_into(layout, data, position, moved)
    for position in walked.compressed_headers:
        data[position] = (data[position] & 0xE0) | ((data[position] + seconds) & 0x1F)
    _write_crcs(data)


def _walk(data: bytearray) -> _Walked:
    """Where the time values and compressed headers are, checking the structure and CRC of every chained file."""
    time_slots: list[tuple[int, bool]] = []
    compressed_headers: list[int] = []
    session_start = record_start = None
    position = 0
    while position < len(data):
        header_size, data_end = _check_file(data, position)
        layouts: dict[int, _Layout] = {}  # by local message type
        position += header_size
        while position < data_end:
            header = data[position]
            if header & 0x80:  # compressed timestamp header: the local type is in bits 5-6
                local = (header >> 5) & 0x03
                compressed_headers.append(position)
            elif header & 0x40:
                position = _read_definition(data, position, data_end, layouts)
                continue
            else:
                local = header & 0x0F
            if local not in layouts:
                raise FitRestampError(f"byte {position}: data message of undefined local type {local}")
            layout = layouts[local]
            if position + 1 + layout.size > data_end:
                raise FitRestampError(f"byte {position}: message runs past the end of the data")
            time_slots += ((position + 1 + offset, layout.big_endian) for offset in layout.time_offsets)
            if layout.number == SESSION and session_start is None:
                session_start = layout.value(data, position, SESSION_START_TIME)
            if layout.number == RECORD and record_start is None:
                record_start = layout.value(data, position, TIMESTAMP_FIELD)
            position += 1 + layout.size
        position = data_end + 2
    return _Walked(time_slots, compressed_headers, session_start if session_start is not None else record_start)


def _check_file(data: bytearray, position: int) -> tuple[int, int]:
    """Header size and end of data of the (possibly chained) file at `position`; its CRC must be right."""
    header_size = data[position]
    if header_size not in (12, 14) or data[position + 8 : position + 12] != b".FIT":
        raise FitRestampError(f"byte {position}: no FIT header")
    (data_size,) = struct.unpack_from("<I", data, position + 4)
    data_end = position + header_size + data_size
    if data_size == 0 or data_end + 2 > len(data):
        raise FitRestampError(f"byte {position}: header promises {data_size} data bytes and a CRC the file does not hold")
    (crc,) = struct.unpack_from("<H", data, data_end)
    if _fit_crc(memoryview(data)[position:data_end]) != crc:
        raise FitRestampError(f"byte {position}: file CRC does not match the data; the file is damaged")
    return header_size, data_end


def _read_definition(data: bytearray, position: int, data_end: int, layouts: dict[int, _Layout]) -> int:
    """Record one definition message in `layouts`; the position after it."""
    header = data[position]
    if position + 6 > data_end:
        raise FitRestampError(f"byte {position}: definition runs past the end of the data")
    big_endian = data[position + 2] != 0  # as the SDK reads it (FIT: 0 little, 1 big)
    (number,) = struct.unpack_from(">H" if big_endian else "<H", data, position + 3)
    count = data[position + 5]
    fields_end = position + 6 + 3 * count
    developer_count = data[fields_end] if header & 0x20 and fields_end < data_end else 0
    end = fields_end + (1 + 3 * developer_count if header & 0x20 else 0)
    if end > data_end:
        raise FitRestampError(f"byte {position}: definition runs past the end of the data")
    offsets: list[int] = []
    field_offsets: dict[int, int] = {}
    offset = 0
    for index in range(count):
        field_number, size, base_type = data[position + 6 + 3 * index : position + 9 + 3 * index]
        if (number, field_number) in ROLLING_TIME_FIELDS:
            raise FitRestampError(
                f"byte {position}: rolling 8/16-bit timestamps (an all-day monitoring file) cannot be re-stamped")
        is_time = field_number == TIMESTAMP_FIELD or (number, field_number) in TIME_FIELDS
        if is_time and base_type & 0x1F in TIME_BASE_TYPES and size % 4 == 0:
            offsets += range(offset, offset + size, 4)
            field_offsets[field_number] = offset
        offset += size
    size = offset + sum(data[fields_end + 1 + 3 * index + 1] for index in range(developer_count))
    layouts[header & 0x0F] = _Layout(number, big_endian, size, tuple(offsets), field_offsets)
    return end


def _write_crcs(data: bytearray) -> None:
    position = 0
    while position < len(data):
        header_size = data[position]
        (data_size,) = struct.unpack_from("<I", data, position + 4)
        if header_size == 14:
            struct.pack_into("<H", data, position + 12, _fit_crc(memoryview(data)[position : position + 12]))
        data_end = position + header_size + data_size
        struct.pack_into("<H", data, data_end, _fit_crc(memoryview(data)[position:data_end]))
        position = data_end + 2
