"""What the workout summaries read of a FIT file, as columns; and a decoder that reads only that, straight from
the bytes.

`FileContent` is the decoders' common output: every `record` message's timestamp, heart rate, power, speed,
cadence and distance as columns (in file order), the `session` and `sport` messages as dicts with the field names
and units of Garmin's profile, and the lap and message counts. `FileContent.of_messages` builds it from the
messages of pyfitparsernative or garmin-fit-sdk.

`read_columns` builds it without decoding every message: one walk over the message headers (the header and file
CRC checked first), then each record layout's fields gathered for all its messages at once with numpy, and the
few session and sport messages decoded field by field with the profile's scale and enum names. Records are
nearly every message of an activity, and a dict per record cost more than everything else in `evaluate`
(BENCHMARKS.md, "FIT decoding"). It gives up (None) on what it does not read -- compressed-timestamp headers,
chained files, `compressed_speed_distance` and other component fields that would feed the columns,
weigh-ins -- and on anything damaged, and the caller decodes those files the full way; the unit tests hold it
to garmin-fit-sdk's summaries on every corpus file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import numpy as np
from anycrc import Model
from garmin_fit_sdk import Profile
from garmin_fit_sdk import fit as FIT

FIT_EPOCH_S = 631065600  # 1989-12-31T00:00:00Z, FIT's time zero
UNIX_EPOCH_NAIVE = datetime(1970, 1, 1)
_PLAIN_VALUES = frozenset({int, float, type(None)})
_NUMERIC_TYPES = frozenset(FIT.NUMERIC_FIELD_TYPES)  # profile types garmin-fit-sdk scales (others are enums)
_FIT_CRC = Model("CRC16-ARC")  # FIT's CRC: a file with its trailing CRC appended checks to 0

RECORD, SESSION, LAP, SPORT, WEIGHT_SCALE = (Profile["mesg_num"][name] for name in ("RECORD", "SESSION", "LAP", "SPORT", "WEIGHT_SCALE"))
# Record field number -> (column, scale): what the summaries read of a record.
RECORD_FIELDS = {253: ("time_s", 1), 3: ("hr_bpm", 1), 7: ("power_w", 1), 6: ("speed", 1000),
                 73: ("enhanced_speed", 1000), 4: ("cadence_rpm", 1), 5: ("distance_m", 100)}
# Record fields whose components fill one of those (speed -> enhanced_speed is the same value, read directly).
_FEEDING_RECORD_FIELDS = frozenset(
    number for number, field in Profile["messages"][RECORD]["fields"].items()
    if number != 6 and set(field["components"]) & set(RECORD_FIELDS)
)
# The session and sport fields the summaries read, by number, with their profile entries.
_MESSAGE_FIELDS = {
    SESSION: {number: Profile["messages"][SESSION]["fields"][number] for number in (2, 5, 6, 8, 9, 16, 17, 20, 21, 34, 253)},
    SPORT: {0: Profile["messages"][SPORT]["fields"][0]},
}


class _BaseType(NamedTuple):
    """A FIT base type: its numpy type, struct code and invalid value (None: floats, never invalid here)."""

    numpy: str
    code: str
    invalid: int | None


# FIT base type (low 5 bits) -> its layout; None for strings (never a column).
_BASE_TYPES: dict[int, _BaseType | None] = {
    number: None if kind is None else _BaseType(*kind) for number, kind in {
        0x00: ("u1", "B", 0xFF), 0x01: ("i1", "b", 0x7F), 0x02: ("u1", "B", 0xFF), 0x03: ("i2", "h", 0x7FFF),
        0x04: ("u2", "H", 0xFFFF), 0x05: ("i4", "i", 0x7FFFFFFF), 0x06: ("u4", "I", 0xFFFFFFFF), 0x07: None,
        0x08: ("f4", "f", None), 0x09: ("f8", "d", None), 0x0A: ("u1", "B", 0), 0x0B: ("u2", "H", 0),
        0x0C: ("u4", "I", 0), 0x0D: ("u1", "B", 0xFF), 0x0E: ("i8", "q", 0x7FFFFFFFFFFFFFFF),
        0x0F: ("u8", "Q", 0xFFFFFFFFFFFFFFFF), 0x10: ("u8", "Q", 0),
    }.items()
}


@dataclass(frozen=True)
class RecordColumns:
    """Every record message's values, one list per field, in file order (None where a record lacks it)."""

    time_s: list[int | None]  # Unix seconds
    hr_bpm: list[float | None]
    power_w: list[float | None]
    speed_mps: list[float | None]
    cadence_rpm: list[float | None]
    distance_m: list[float | None]

    def __len__(self) -> int:
        return len(self.time_s)

    def rows(self, indexes: list[int]) -> "RecordColumns":
        """The records at `indexes`, in that order."""
        return RecordColumns(*([column[i] for i in indexes] for column in
                               (self.time_s, self.hr_bpm, self.power_w, self.speed_mps, self.cadence_rpm, self.distance_m)))


@dataclass(frozen=True)
class FileContent:
    """What the summaries read of a file: its records as columns, its session and sport messages (dicts with
    the profile's field names: UTC datetimes, scaled numbers, enum names), its lap and message counts."""

    records: RecordColumns
    sessions: list[dict[str, Any]]
    sports: list[dict[str, Any]]
    laps: int
    messages: int

    @classmethod
    def of_messages(cls, messages: dict[str, list[dict[str, Any]]]) -> "FileContent":
        """From decoded messages grouped by name (either decoder; time fields of sessions as datetimes)."""
        records = messages.get("record", [])
        # A file stores `speed` or `enhanced_speed` and the decoders derive the other; the native decoder's derived
        # copy can come out 0.001 m/s low (float32 truncation, never high), so the larger one is the stored value.
        speeds = [
            enhanced if speed is None else speed if enhanced is None else max(enhanced, speed)
            for enhanced, speed in zip(_column(records, "enhanced_speed"), _column(records, "speed"))
        ]
        columns = RecordColumns(
            _record_times(records), _column(records, "heart_rate"), _column(records, "power"), speeds,
            _column(records, "cadence"), _column(records, "distance"),
        )
        return cls(columns, messages.get("session", []), messages.get("sport", []), len(messages.get("lap", ())),
                   sum(len(group) for group in messages.values()))


def _unix_seconds(value: Any) -> int | None:
    """A timestamp as Unix seconds: the native decoder gives naive ISO strings in UTC, garmin-fit-sdk aware
    datetimes; None for anything else."""
    if value.__class__ is str:
        try:
            return int((datetime.fromisoformat(value) - UNIX_EPOCH_NAIVE).total_seconds())
        except ValueError:
            return None
    return int(value.timestamp()) if isinstance(value, datetime) else None


def _record_times(records: list[dict[str, Any]]) -> list[int | None]:
    """Every record's timestamp as Unix seconds (None where it has none). The native decoder's ISO strings are
    parsed by numpy in one call, ~3x faster than one datetime per record; anything else goes value by value."""
    values = [record.get("timestamp") for record in records]
    if values and set(map(type, values)) == {str}:
        try:
            return np.array(values, dtype="datetime64[s]").astype(np.int64).tolist()
        except ValueError:
            pass
    return [_unix_seconds(value) for value in values]


def number(value: Any) -> float | None:
    """A field value as a float; None for absent or non-numeric (e.g. a second, empty `distance` field)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _column(records: list[dict[str, Any]], name: str) -> list[float | None]:
    """One field of every record; values that are not plain numbers (arrays, flags) become None."""
    values = [record.get(name) for record in records]
    if _PLAIN_VALUES.issuperset(map(type, values)):
        return values
    return list(map(number, values))


class _Field(NamedTuple):
    """A field of a definition message: its number, its offset in the data message, its size, its base type."""

    number: int
    offset: int
    size: int
    base_type: int


@dataclass(frozen=True)
class _Layout:
    """A definition message: the global message number, byte order, data size and fields."""

    global_number: int
    big_endian: bool
    size: int
    fields: tuple[_Field, ...]


def read_columns(data: bytes) -> FileContent | None:
    """The file's content read straight from its bytes, or None where this reader does not apply (see the module
    docstring) and the file must be decoded message by message."""
    header_size = data[0] if data else 0
    if len(data) < 14 or header_size not in (12, 14):
        return None
    (data_size,) = struct.unpack_from("<I", data, 4)
    end = header_size + data_size
    if data_size == 0 or end + 2 != len(data) or _FIT_CRC.calc(data) != 0:
        return None  # damaged, unfinished or chained: the full decoders say what is wrong
    if header_size == 14 and data[12:14] != b"\x00\x00" and _FIT_CRC.calc(data[:14]) != 0:
        return None
    walk = walk_messages(data, header_size, end, limit=len(data))
    if not walk.complete or walk.compressed:
        return None  # compressed timestamps: the native decoder tracks their offsets
    layouts, offsets = walk.layouts, walk.starts
    if any(layout.global_number == WEIGHT_SCALE and offsets[key] for key, layout in layouts.items()):
        return None  # weigh-ins go the full way (see `streams.fit.decode_fit`)
    record_parts: list[_LayoutColumns] = []
    decoded: dict[int, list[tuple[int, dict[str, Any]]]] = {SESSION: [], SPORT: []}
    laps = messages = 0
    for key, starts in offsets.items():
        layout = layouts[key]
        messages += len(starts)
        if not starts:
            continue
        if layout.global_number == RECORD:
            columns = _record_layout_columns(data, layout, np.array(starts, dtype=np.int64))
            if columns is None:
                return None
            record_parts.append(columns)
        elif layout.global_number in decoded:
            decoded[layout.global_number] += [(start, _message(data, layout, start)) for start in starts]
        elif layout.global_number == LAP:
            laps += len(starts)
    in_order = [message for _, message in sorted(decoded[SESSION], key=lambda pair: pair[0])]
    sports = [message for _, message in sorted(decoded[SPORT], key=lambda pair: pair[0])]
    return FileContent(_record_columns(record_parts), in_order, sports, laps, messages)


@dataclass
class MessageWalk:
    """Where a walk over one FIT file's message headers got: every definition's layout and its data messages'
    starts (after the header byte), keyed by the definition's position; how many messages (definitions
    included) it passed; whether it met a compressed-timestamp header; whether it reached the end it was given
    with the structure adding up."""

    layouts: dict[int, _Layout] = field(default_factory=dict)
    starts: dict[int, list[int]] = field(default_factory=dict)
    count: int = 0
    compressed: bool = False
    complete: bool = False


_HEADER_BYTES = [bytes([value]) for value in range(256)]


def walk_messages(data: bytes, position: int, end: int, limit: int) -> MessageWalk:
    """Walk the messages from `position` (after the file header) to `end` (before the file CRC), stopping once
    more than `limit` were passed or where the structure cannot be followed (a data message of an undefined
    local type, a definition cut short). Nothing is decoded; this is both the bound check before any decoding
    and the columnar reader's index.

    A run of data messages with the same header byte at the same stride is taken in one step (a bytes slice):
    records come in long runs, and one Python step per message was most of the reader's time."""
    walk = MessageWalk()
    current: dict[int, tuple[int, int]] = {}  # local type -> (definition position, data size)
    while position < end:
        if walk.count > limit:
            return walk
        header = data[position]
        if header & 0xC0 == 0x40:
            if position + 6 > end:
                return walk
            architecture, fields_count = data[position + 2], data[position + 5]
            (global_number,) = struct.unpack_from(">H" if architecture == 1 else "<H", data, position + 3)
            fields, size, cursor = [], 0, position + 6
            for field_number, width, base_type in zip(*[iter(data[cursor:cursor + 3 * fields_count])] * 3):
                fields.append(_Field(field_number, size, width, base_type & 0x1F))
                size += width
            cursor += 3 * fields_count
            if header & 0x20:  # developer fields: their sizes only
                if cursor >= end:
                    return walk
                developer_count = data[cursor]
                size += sum(data[cursor + 2:cursor + 1 + 3 * developer_count:3])
                cursor += 1 + 3 * developer_count
            if cursor > end:
                return walk
            walk.layouts[position] = _Layout(global_number, architecture == 1, size, tuple(fields))
            current[header & 0x0F] = (position, size)
            walk.starts.setdefault(position, [])
            walk.count += 1
            position = cursor
            continue
        if header & 0x80:  # compressed timestamp: local type in bits 5-6
            walk.compressed = True
            found = current.get((header >> 5) & 0x03)
        else:
            found = current.get(header & 0x0F)
        if found is None:
            return walk
        key, size = found
        stride = size + 1
        run = 1
        if position + 2 * stride <= end and data[position + stride] == header:
            span = 16
            while True:
                stop = min(end, position + stride * span)
                headers = data[position:stop:stride]
                run = len(headers) - len(headers.lstrip(_HEADER_BYTES[header]))
                if run < len(headers) or stop == end:
                    break
                span *= 8
            run = max(1, min(run, (end - position) // stride, limit + 1 - walk.count))
        walk.starts[key].extend(range(position + 1, position + 1 + run * stride, stride))
        walk.count += run
        position += run * stride
    walk.complete = position == end
    return walk


@dataclass(frozen=True)
class _LayoutColumns:
    """One record layout's columns for all its messages: every column of RECORD_FIELDS as floats, NaN where a
    value is invalid or absent (garmin-fit-sdk leaves it out), and which columns the file stores as integers."""

    positions: np.ndarray
    values: dict[str, np.ndarray]
    integral: dict[str, bool]


def _record_layout_columns(data: bytes, layout: _Layout, starts: np.ndarray) -> _LayoutColumns | None:
    """A record layout's columns; None if it holds a field this reader does not expand."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    columns: dict[str, np.ndarray] = {name: np.full(len(starts), np.nan) for name, _ in RECORD_FIELDS.values()}
    integral = {name: True for name in columns}
    for field_number, offset, size, base_type in layout.fields:
        if field_number in _FEEDING_RECORD_FIELDS:
            # Expanded into the columns unless every value is invalid (Zwift writes an empty compressed_speed_distance).
            if (buffer[starts[:, None] + np.arange(offset, offset + size)] != _invalid_bytes(base_type, size)).any():
                return None
            continue
        if field_number not in RECORD_FIELDS:
            continue
        name, scale = RECORD_FIELDS[field_number]
        kind = _BASE_TYPES.get(base_type)
        values = np.full(len(starts), np.nan)
        if kind is not None and np.dtype(kind.numpy).itemsize == size:  # a scalar (arrays are not plain values)
            dtype = np.dtype(kind.numpy).newbyteorder(">" if layout.big_endian else "<")
            raw = buffer[starts[:, None] + np.arange(offset, offset + size)].copy().view(dtype).ravel()
            valid = raw != kind.invalid if kind.invalid is not None else np.ones(len(raw), dtype=bool)
            values[valid] = raw[valid] / scale if scale != 1 else raw[valid]
            integral[name] = scale == 1 and kind.numpy[0] in "iu"
        # A field defined twice (Zwift writes a second, empty `distance`): the later valid value wins, as in the
        # decoders' dicts.
        columns[name] = np.where(np.isnan(values), columns[name], values)
    return _LayoutColumns(starts, columns, integral)


def _invalid_bytes(base_type: int, size: int) -> np.ndarray:
    """The bytes of a field whose every element is its base type's invalid value, little-endian (a field that
    does not match, big-endian signed ones included, sends the file the full way)."""
    kind = _BASE_TYPES.get(base_type)
    if kind is None or kind.invalid is None:
        return np.full(size, -1)  # strings and floats: never treated as empty
    width = np.dtype(kind.numpy).itemsize
    element = np.frombuffer(int(kind.invalid).to_bytes(width, "little"), dtype=np.uint8)
    return np.tile(element, size // width) if size % width == 0 else np.full(size, -1)


def _record_columns(parts: list[_LayoutColumns]) -> RecordColumns:
    """The layouts' columns merged back into file order, as Python values: ints where the file stores integers
    (as garmin-fit-sdk gives them), None for a missing value."""
    if not parts:
        return RecordColumns([], [], [], [], [], [])
    order = np.argsort(np.concatenate([part.positions for part in parts]), kind="stable")

    def merged(name: str) -> np.ndarray:
        return np.concatenate([part.values[name] for part in parts])[order]

    def as_list(values: np.ndarray, integral: bool) -> list[float | None]:
        missing = np.isnan(values)
        result = (np.where(missing, 0, values).astype(np.int64) if integral else values).tolist()
        for index in np.flatnonzero(missing).tolist():
            result[index] = None
        return result

    def column(name: str) -> list[float | None]:
        return as_list(merged(name), all(part.integral[name] for part in parts))

    times = merged("time_s") + FIT_EPOCH_S
    # `speed` is stored or derived from `enhanced_speed` and the other way round: the same value where both are.
    speeds = np.fmax(merged("speed"), merged("enhanced_speed"))
    return RecordColumns(
        as_list(times, True), column("hr_bpm"), column("power_w"), as_list(speeds, False),
        column("cadence_rpm"), column("distance_m"),
    )


def _message(data: bytes, layout: _Layout, start: int) -> dict[str, Any]:
    """A session or sport message's fields that the summaries read, as garmin-fit-sdk gives them: scaled,
    enums by name, date_time as UTC datetime; invalid values left out, arrays as lists."""
    wanted = _MESSAGE_FIELDS[layout.global_number]
    order = ">" if layout.big_endian else "<"
    message: dict[str, Any] = {}
    for field_number, offset, size, base_type in layout.fields:
        profile_field = wanted.get(field_number)
        kind = _BASE_TYPES.get(base_type)
        if profile_field is None or kind is None:
            continue
        width = struct.calcsize(kind.code)
        if size % width:
            continue
        values = struct.unpack_from(f"{order}{size // width}{kind.code}", data, start + offset)
        valid = [value if value != kind.invalid else None for value in values]
        if all(value is None for value in valid):
            continue
        message[profile_field["name"]] = _field_value(profile_field, valid[0]) if len(valid) == 1 else valid
    return message


def _field_value(profile_field: dict[str, Any], raw: int | float) -> Any:
    """A raw value with its profile meaning (garmin-fit-sdk's conversions for the types the summaries read)."""
    if profile_field["type"] == "date_time":
        return datetime.fromtimestamp(raw + FIT_EPOCH_S, timezone.utc)
    names = Profile["types"].get(profile_field["type"])
    if names is not None and profile_field["type"] not in _NUMERIC_TYPES:
        return names.get(raw, raw)
    scale, offset = profile_field["scale"][0], profile_field["offset"][0]
    return (raw / scale if scale != 1 else raw) - offset
