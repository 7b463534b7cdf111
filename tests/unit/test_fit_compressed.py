"""Records with compressed-timestamp headers (a 5-bit offset on the last full timestamp, as older devices write
them), in files built from a real corpus run: every record is kept with its exact time, and a decode that stops
at them (the salvage decoder cannot read them) never passes for a clean summary."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aromatrack.streams.fit import FitDecodeError, decode_fit, summary_events

from .fit_files import Part, build_activity
from .test_fit_decode import corpus_bytes

RUN = "polar-running-index/treadmill_12km.FIT"


@pytest.fixture(scope="module")
def run():
    return decode_fit(corpus_bytes(RUN))


def compressed_copy(run, compress_from: int = 1) -> bytes:
    workout = run.workouts[0]
    return build_activity([Part(workout, "running", workout.samples.time_s[0], "treadmill")], compress_from=compress_from)


def test_every_compressed_timestamp_record_is_decoded_with_its_time(run):
    data = compressed_copy(run)
    assert sum(byte & 0x80 for byte in data) > 0
    decoded = decode_fit(data)
    assert not decoded.salvaged
    assert decoded.workouts[0].records == run.workouts[0].records == 3862
    assert decoded.workouts[0].samples == run.workouts[0].samples  # times, HR, power, speed, cadence record by record
    first_record = datetime.fromtimestamp(run.workouts[0].samples.time_s[0], timezone.utc).isoformat()
    expected = {**summary_events(run, "a1")[0], "time": first_record, "start": first_record}
    assert summary_events(decoded, "a1")[0] == expected


def test_the_offset_rolls_over_past_32_seconds_of_the_last_full_timestamp(run):
    """Every record after the first is compressed, so the offsets wrap every 32 s many times over the hour."""
    decoded = decode_fit(compressed_copy(run))
    times = decoded.workouts[0].samples.time_s
    assert times[-1] - times[0] > 3000 and list(times) == sorted(times)


def test_a_damaged_file_whose_salvage_stops_at_compressed_records_is_marked_salvaged(run):
    """The native decoder refuses a bad CRC; garmin-fit-sdk then stops at the first compressed header. What it
    kept (the first 600 records, written with full timestamps) is a salvage and says why."""
    data = bytearray(compressed_copy(run, compress_from=600))
    data[-1] ^= 0xFF
    decoded = decode_fit(bytes(data))
    assert decoded.salvaged and "Compressed timestamp" in decoded.salvage_reason
    assert decoded.workouts[0].records == 600
    event = summary_events(decoded, "a1")[0]
    assert event["salvaged"] is True and "Compressed timestamp" in event["salvage_reason"]


def test_a_damaged_file_of_compressed_records_only_is_refused_with_the_reason(run):
    data = bytearray(compressed_copy(run))
    data[-1] ^= 0xFF
    with pytest.raises(FitDecodeError, match="Compressed timestamp"):
        decode_fit(bytes(data))
