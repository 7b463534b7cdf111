"""The FIT re-stamper: on real corpus files, every decoded timestamp moves by exactly the shift, nothing else
changes and the CRCs stay valid; compressed timestamp headers, big-endian definitions and developer fields are
checked on a small file built here (the Garmin SDK refuses compressed headers, so fitdecode reads that one)."""

from __future__ import annotations

import io
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

import fitdecode
import pytest
from garmin_fit_sdk import CrcCalculator, Decoder, Profile, Stream
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.streams.fit import decode_fit, summary_events
from aromatrack.streams.fit_restamp import FitRestampError, restamp, restamper

from .test_fit_decode import FIT_EPOCH, corpus_bytes, corpus_files

YEAR_S = 365 * 24 * 3600
SYSTEM_TIME_LIMIT = FIT_EPOCH + timedelta(seconds=0x10000000)
# Times the SDK leaves as integers: local_date_time fields, and field 253 of messages outside the profile.
TIME_INTEGERS = {"253"} | {
    field["name"] for message in Profile["messages"].values() for field in message["fields"].values()
    if field["type"] == "local_date_time"
}
# Small workouts (DeveloperData.fit holds no activity to re-stamp; it is refused below).
SMALL_FILES = [p for p in corpus_files() if p.stat().st_size <= 60_000 and p.name != "DeveloperData.fit"]


def sdk_messages(data: bytes) -> dict[str, Any]:
    decoder = Decoder(Stream.from_byte_array(bytearray(data)))
    assert decoder.check_integrity(), "file or header CRC is wrong"
    messages, errors = Decoder(Stream.from_byte_array(bytearray(data))).read(merge_heart_rates=False)
    assert not errors
    return messages


def assert_shifted(before: Any, after: Any, seconds: int, name: str = "") -> None:
    """`after` is `before` with every date moved by `seconds` (system times and invalid values unmoved)."""
    if isinstance(before, dict):
        assert before.keys() == after.keys(), name
        for key in before:
            assert_shifted(before[key], after[key], seconds, f"{name}.{key}")
    elif isinstance(before, list):
        assert len(before) == len(after), name
        for index, (old, new) in enumerate(zip(before, after)):
            assert_shifted(old, new, seconds, f"{name}[{index}]")
    elif isinstance(before, datetime) and before >= SYSTEM_TIME_LIMIT:
        assert after == before + timedelta(seconds=seconds), name
    elif name.rsplit(".", 1)[-1] in TIME_INTEGERS and isinstance(before, int) and 0x10000000 <= before < 0xFFFFFFFF:
        assert after == before + seconds, name
    else:
        assert after == before, name


@settings(max_examples=25, deadline=None)
@given(path=st.sampled_from(SMALL_FILES), seconds=st.integers(-10 * YEAR_S, 20 * YEAR_S))
def test_real_files_decode_identically_but_for_the_shifted_times(path, seconds):
    data = path.read_bytes()
    shifted = restamp(data, decode_fit(data).workouts[0].start + timedelta(seconds=seconds))
    assert len(shifted) == len(data)
    assert_shifted(sdk_messages(data), sdk_messages(shifted), seconds)


@pytest.mark.parametrize("name", ["polar-running-index/treadmill_12km.FIT", "activity-parser/garmin-edge-820-bike.fit"])
def test_restamp_puts_the_activity_start_at_the_instant(name):
    data = corpus_bytes(name)
    start = datetime(2026, 3, 2, 17, 41, 9, tzinfo=timezone.utc)
    original, moved = decode_fit(data), decode_fit(restamp(data, start))
    assert moved.workouts[0].start == start and not moved.salvaged
    seconds = (start - original.workouts[0].start).total_seconds()
    assert moved.workouts[0].samples.time_s == tuple(t + seconds for t in original.workouts[0].samples.time_s)
    summary, expected = summary_events(moved, "a")[0], summary_events(original, "a")[0]
    assert summary == {**expected, "time": start.isoformat(), "start": start.isoformat()}


def test_restamp_is_deterministic_and_idempotent():
    data = corpus_bytes("activity-parser/garmin-fenix-5-run.fit")
    start = datetime(2026, 1, 5, 17, 0, tzinfo=timezone.utc)
    once = restamp(data, start)
    assert once == restamp(data, start) == restamp(once, start) == restamper(data)(start)
    assert once != data


# A file built by hand: file_id and records in big-endian definitions, a developer field holding a number that
# looks like a date (it must not move), compressed timestamp headers crossing the 32 s rollover, a lap whose
# start_time is invalid, a session and an activity with local_timestamp.
T0 = 1_100_000_000  # FIT seconds (2024-11-09), the session's start
BUILT_START = FIT_EPOCH + timedelta(seconds=T0)
UINT8, UINT32, ENUM = 0x02, 0x86, 0x00


def _definition(local: int, number: int, fields: list[tuple[int, int, int]], big: bool = False,
                developer: list[tuple[int, int, int]] = ()) -> bytes:
    header = 0x40 | local | (0x20 if developer else 0)
    body = bytes([header, 0, int(big)]) + struct.pack(">H" if big else "<H", number) + bytes([len(fields)])
    body += b"".join(bytes(field) for field in fields)
    if developer:
        body += bytes([len(developer)]) + b"".join(bytes(field) for field in developer)
    return body


def _u32(value: int, big: bool = False) -> bytes:
    return struct.pack(">I" if big else "<I", value)


def _fit(records: bytes) -> bytes:
    header = bytearray(struct.pack("<BBHI4s", 14, 0x20, 2100, len(records), b".FIT"))
    header += struct.pack("<H", CrcCalculator.calculate_crc(header, 0, 12))
    body = bytes(header) + records
    return body + struct.pack("<H", CrcCalculator.calculate_crc(body, 0, len(body)))


def built_file() -> bytes:
    records = _definition(0, 0, [(0, 1, ENUM), (4, 4, UINT32)], big=True) + bytes([0, 4]) + _u32(T0 - 60, True)
    records += _definition(1, 207, [(3, 1, UINT8)]) + bytes([1, 0])  # developer_data_id
    records += _definition(1, 206, [(0, 1, UINT8), (1, 1, UINT8), (2, 1, UINT8), (3, 8, 0x07)])  # field_description
    records += bytes([1, 0, 0, UINT32]) + b"odo\0\0\0\0\0"
    records += _definition(2, 20, [(253, 4, UINT32), (3, 1, UINT8)], big=True, developer=[(0, 4, 0)])
    records += bytes([2]) + _u32(T0, True) + bytes([120]) + _u32(T0 + 5, True)
    records += _definition(3, 20, [(3, 1, UINT8)])  # compressed-header records carry no timestamp field
    for second in (7, 19, 31, 33, 50):
        records += bytes([0x80 | 3 << 5 | (T0 + second) & 0x1F, 130])
    records += bytes([2]) + _u32(T0 + 60, True) + bytes([140]) + _u32(T0 + 5, True)
    records += _definition(4, 19, [(253, 4, UINT32), (2, 4, UINT32)]) + bytes([4]) + _u32(T0 + 60) + _u32(0xFFFFFFFF)
    records += _definition(5, 18, [(253, 4, UINT32), (2, 4, UINT32)]) + bytes([5]) + _u32(T0 + 60) + _u32(T0)
    records += _definition(6, 34, [(253, 4, UINT32), (5, 4, UINT32)]) + bytes([6]) + _u32(T0 + 61) + _u32(T0 + 61 + 3600)
    return _fit(records)


def fitdecode_messages(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    with fitdecode.FitReader(io.BytesIO(data), check_crc=fitdecode.CrcCheck.RAISE) as reader:
        return [
            (frame.name, {field.name: field.raw_value for field in frame.fields})
            for frame in reader if isinstance(frame, fitdecode.FitDataMessage)
        ]


def test_the_built_file_is_what_it_claims():
    records = [fields for name, fields in fitdecode_messages(built_file()) if name == "record"]
    assert [r["timestamp"] for r in records] == [T0, T0 + 7, T0 + 19, T0 + 31, T0 + 33, T0 + 50, T0 + 60]


@settings(max_examples=200, deadline=None)
@given(seconds=st.integers(-5 * YEAR_S, 5 * YEAR_S))
def test_compressed_headers_big_endian_and_developer_fields(seconds):
    before, after = fitdecode_messages(built_file()), fitdecode_messages(restamp(built_file(), BUILT_START + timedelta(seconds=seconds)))
    assert [name for name, _ in before] == [name for name, _ in after]
    moved_fields = {"timestamp", "time_created", "start_time", "local_timestamp"}
    for (name, old), (_, new) in zip(before, after):
        assert old.keys() == new.keys()
        for field, value in old.items():
            moves = field in moved_fields and value is not None  # fitdecode reads an invalid value as None
            assert new[field] == (value + seconds if moves else value), (name, field)


def test_restamp_of_the_built_file_starts_its_session_at_the_instant():
    start = datetime(2026, 2, 1, 6, 30, 1, tzinfo=timezone.utc)
    session = dict(fitdecode_messages(restamp(built_file(), start)))["session"]
    assert FIT_EPOCH + timedelta(seconds=session["start_time"]) == start


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda d: d[:-40], "promises"),
        (lambda d: d[:200] + bytes([d[200] ^ 0x01]) + d[201:], "CRC does not match"),
        (lambda d: b"NOTAFIT" + d[7:], "no FIT header"),
        (lambda d: d + b"\x00" * 20, "no FIT header"),
    ],
    ids=["truncated", "bit flip", "not FIT", "trailing garbage"],
)
def test_a_file_it_cannot_walk_is_refused_with_a_reason(damage, reason):
    with pytest.raises(FitRestampError, match=reason):
        restamp(damage(corpus_bytes("activity-parser/garmin-fenix-5-run.fit")), BUILT_START)


def test_undefined_local_type_and_rolling_timestamps_are_refused():
    with pytest.raises(FitRestampError, match="undefined local type 9"):
        restamp(_fit(bytes([9, 1, 2])), BUILT_START)
    monitoring = _definition(0, 55, [(253, 4, UINT32), (26, 2, 0x84)]) + bytes([0]) + _u32(T0) + b"\x01\x00"
    with pytest.raises(FitRestampError, match="monitoring"):
        restamp(_fit(monitoring), BUILT_START)


def test_a_file_without_an_activity_cannot_be_restamped_and_dates_stay_in_range():
    """The corpus's big-endian file with developer fields holds no time: walked to the end, then refused."""
    with pytest.raises(FitRestampError, match="no session start_time or record timestamp"):
        restamp(corpus_bytes("activity-parser/DeveloperData.fit"), datetime(2026, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(FitRestampError, match="out of FIT's date range"):
        restamp(built_file(), FIT_EPOCH + timedelta(seconds=100))
