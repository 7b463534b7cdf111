"""FIT uploads bounded before decoding (issue 15, Medium 5): a gzip bomb is refused with a reason, real files pass."""

from __future__ import annotations

import base64
import gzip
import struct
from datetime import datetime, timezone

import pytest

from aromatrack.schemas.events import EventError, WorkoutFit
from aromatrack.streams.fit import (MAX_FIT_BYTES, MAX_FIT_MESSAGES, FitDecodeError, _count_messages, decode_fit,
                                  fit_payload)

from .test_fit_decode import corpus_files


def fit_of_records(records: int, width: int = 1) -> bytes:
    """A FIT file of `records` record messages of one field `width` bytes wide (1: the densest file possible)."""
    definition = bytes([0x40, 0, 0]) + struct.pack("<HB", 20, 1) + bytes([3, width, 0x0D])  # a byte array
    body = definition + (b"\x00" + bytes([120]) * width) * records
    header = struct.pack("<BBHI4sH", 14, 0x10, 2132, len(body), b".FIT", 0)
    return header + body + b"\0\0"


def upload(data: bytes) -> WorkoutFit:
    return WorkoutFit(athlete_id="a", time=datetime(2026, 5, 1, tzinfo=timezone.utc),
                      fit_b64=base64.b64encode(gzip.compress(data, mtime=0)).decode())


def test_a_gzip_bomb_of_a_million_records_is_refused_before_decoding() -> None:
    bomb = upload(fit_of_records(1_000_000))
    assert len(bomb.fit_b64) < 20_000  # kilobytes on the wire
    with pytest.raises(EventError, match=f"more than {MAX_FIT_MESSAGES} messages"):
        fit_payload(bomb)


def test_a_file_that_inflates_past_the_size_bound_is_refused() -> None:
    with pytest.raises(EventError, match="larger than"):
        fit_payload(upload(b"\0" * (MAX_FIT_BYTES + 1)))


def test_a_bomb_chained_after_a_small_file_is_counted_too() -> None:
    with pytest.raises(EventError, match="messages"):
        fit_payload(upload(fit_of_records(10) + fit_of_records(MAX_FIT_MESSAGES)))


def test_a_file_at_the_bound_passes() -> None:
    assert fit_payload(upload(fit_of_records(MAX_FIT_MESSAGES - 1))) == fit_of_records(MAX_FIT_MESSAGES - 1)


def test_every_corpus_file_passes_and_the_count_covers_what_the_decoder_reads() -> None:
    for path in corpus_files():
        data = path.read_bytes()
        assert fit_payload(upload(data)) == data
        if len(data) < 100_000:
            try:
                decoded = decode_fit(data)
            except FitDecodeError:
                continue
            assert _count_messages(data, stop_after=MAX_FIT_MESSAGES) >= decoded.messages, path.name
