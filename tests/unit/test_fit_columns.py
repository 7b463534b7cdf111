"""The columnar FIT reader (`streams.fit_columns.read_columns`): garmin-fit-sdk's summaries on every corpus file
it reads and on built files with big-endian layouts, developer fields, a field defined twice and several
sessions; it gives up (None) on what it does not read, and `decode_fit` then decodes those files the full way."""

from __future__ import annotations

import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aromatrack.streams import fit
from aromatrack.streams.fit import decode_fit, decode_fit_salvaging
from aromatrack.streams.fit_columns import FIT_EPOCH_S, read_columns, walk_messages

from .fit_files import FitWriter, Part, UINT8, UINT32, build_activity, excerpt
from .test_fit_decode import ZWIFT, _outcome, corpus_bytes, corpus_files
from .test_fit_multisport import RIDE, RUN, START_S
from .test_fit_restamp import _definition, _fit

T0 = 1_100_000_000  # FIT seconds


def columnar(data: bytes) -> fit.DecodedFit:
    content = read_columns(data)
    assert content is not None, "the columnar reader gave up on a file it reads"
    return fit._decoded(content, [], ())


def test_it_reads_every_corpus_file_as_garmin_fit_sdk_does():
    """Every corpus file is read (none falls back); the summaries, samples, laps and sessions of the files the
    unit suite decodes with garmin-fit-sdk are equal (the benchmark compares the big ones too)."""
    compared = 0
    for path in corpus_files():
        data = path.read_bytes()
        assert read_columns(data) is not None, path
        if path.stat().st_size <= 160_000:
            assert _outcome(columnar, data) == _outcome(decode_fit_salvaging, data), path
            compared += 1
    assert compared >= 10


def test_a_multisport_file_is_split_into_its_sessions_as_the_native_decoder_splits_it(monkeypatch):
    ride, run = (decode_fit(corpus_bytes(name)).workouts[0] for name in (RIDE, RUN))
    first = Part(ride, "cycling", START_S, "indoor_cycling")
    second = Part(excerpt(run, 120), "transition", first.end_s + 5)
    brick = build_activity([first, second, Part(run, "running", second.end_s + 5, "treadmill")])
    monkeypatch.setattr(fit, "read_columns", lambda _: None)
    native = _outcome(decode_fit, brick)
    assert _outcome(columnar, brick) == native == _outcome(decode_fit_salvaging, brick)
    assert native[3] == 3


def built_file() -> bytes:
    """Records in two layouts used alternately: big-endian with a developer field (timestamp, heart rate,
    speed, power), and little-endian with `distance` defined twice (the second one invalid, as Zwift writes
    it) and `enhanced_speed`; invalid values here and there; one session."""
    u16, u32 = 0x84, 0x86
    body = _definition(0, 20, [(253, 4, u32), (3, 1, UINT8.code), (6, 2, u16), (7, 2, u16)], big=True,
                       developer=[(0, 4, 0)])
    body += _definition(1, 20, [(253, 4, u32), (5, 4, u32), (73, 4, u32), (5, 4, u32), (4, 1, UINT8.code)], big=False)
    for second in range(40):
        hr = 0xFF if second == 4 else 120 + second
        if second % 3:
            body += bytes([0]) + struct.pack(">IBHH", T0 + second, hr, 2500 + second, 0xFFFF if second == 5 else 200)
            body += b"\x00\x00\x00\x07"  # developer field
        else:
            body += bytes([1]) + struct.pack("<IIIIB", T0 + second, 10_000 * second, 2600, 0xFFFFFFFF, 85)
    body += _definition(2, 18, [(253, 4, u32), (2, 4, u32), (5, 1, 0), (7, 4, u32), (8, 4, u32)], big=True)
    body += bytes([2]) + struct.pack(">IIBII", T0 + 40, T0, 2, 40_000, 39_000)
    return _fit(body)


def test_big_endian_developer_fields_a_field_defined_twice_and_invalid_values():
    data = built_file()
    reference = _outcome(decode_fit_salvaging, data)
    assert _outcome(columnar, data) == reference
    workout = columnar(data).workouts[0]
    assert workout.records == 40 and workout.sport == "cycling" and workout.duration_s == 39.0
    assert workout.samples.hr_bpm[:5] == (None, 121, 122, None, None)  # the layout without HR, an invalid HR
    assert workout.samples.speed_mps[:2] == (2.6, 2.501)
    assert workout.distance_m == 3900.0  # the records' furthest: the session has no total_distance


def _compressed_file() -> bytes:
    writer = FitWriter()
    writer.write(20, {253: (UINT32, T0), 3: (UINT8, 120)}, local=1)
    writer.write(20, {3: (UINT8, 121)}, local=0, compressed_offset=(T0 + 1) & 0x1F)
    return writer.file()


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:5000] + bytes([d[5000] ^ 0xFF]) + d[5001:],  # a record's byte: the CRC no longer matches
        lambda d: d[:-100],  # truncated
        lambda d: d[:4] + b"\x00\x00\x00\x00" + d[8:],  # unfinished: data size 0
        lambda d: d + d,  # chained files
    ],
    ids=["bit flip", "truncated", "unfinished", "chained"],
)
def test_it_gives_up_on_a_damaged_or_chained_file(damage):
    assert read_columns(damage(corpus_bytes(ZWIFT))) is None


def test_it_gives_up_on_compressed_timestamps_and_decode_fit_keeps_every_record():
    data = _compressed_file()
    assert read_columns(data) is None
    assert decode_fit(data).workouts[0].samples.time_s == (T0 + FIT_EPOCH_S, T0 + 1 + FIT_EPOCH_S)


def test_it_gives_up_on_a_compressed_speed_distance_that_holds_values():
    writer = FitWriter()
    for second in range(3):
        writer.write(20, {253: (UINT32, T0 + second), 8: (UINT32, 0x00123456)})  # a 4-byte stand-in for the 3 bytes
    assert read_columns(writer.file()) is None


@settings(max_examples=150, deadline=None)
@example(kinds=["record"] * 300, limit=400)  # one run longer than the first slices
@example(kinds=["record"] * 300, limit=150)  # stopped inside a run
@example(kinds=["event", "record"] * 100 + ["record"] * 50, limit=400)
@given(kinds=st.lists(st.sampled_from(["record", "event", "compressed"]), max_size=300), limit=st.integers(0, 400))
def test_the_walk_takes_runs_of_messages_as_one_message_at_a_time_would(kinds, limit):
    """Runs of one header byte are taken in one step: the walk must still find every message where a naive walk
    does, whatever the interleaving, and stop just past `limit`."""
    writer = FitWriter()
    expected: list[str] = []
    for index, kind in enumerate(kinds):
        before = len(writer.body)
        if kind == "record":
            writer.write(20, {253: (UINT32, T0 + index), 3: (UINT8, 120)}, local=1)
        elif kind == "event":
            writer.write(21, {253: (UINT32, T0 + index), 0: (UINT8, 0), 1: (UINT8, 4)}, local=2)
        else:
            writer.write(20, {3: (UINT8, 121)}, local=0, compressed_offset=index & 0x1F)
        expected += ["definition"] * (writer.body[before] & 0xC0 == 0x40) + [kind]
    data = writer.file()
    walk = walk_messages(data, 14, len(data) - 2, limit=limit)
    assert walk.count == min(len(expected), limit + 1)
    if len(expected) <= limit:
        assert walk.complete and walk.compressed == ("compressed" in kinds)
        by_number = {layout.global_number: [] for layout in walk.layouts.values()}
        for key, starts in walk.starts.items():
            by_number[walk.layouts[key].global_number] += starts
        assert len(by_number.get(21, [])) == kinds.count("event")
        assert len(by_number.get(20, [])) == kinds.count("record") + kinds.count("compressed")
