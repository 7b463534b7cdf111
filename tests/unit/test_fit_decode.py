"""The FIT adapter on the real corpus and on damaged copies of it; weigh-ins from a built weight_scale file."""

from __future__ import annotations

import json
import struct
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aromatrack.services.cli import app
from aromatrack.streams import fit
from aromatrack.streams.fit import FitDecodeError, Samples, decode_fit, decode_fit_salvaging, summary_events

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "fit"
ZWIFT = "pyfitness/indoor/Zwift_Innsbruck.fit"
FIT_EPOCH = datetime(1989, 12, 31, tzinfo=timezone.utc)


def corpus_files() -> list[Path]:
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix.lower() == ".fit")
    if not files:
        pytest.fail(f"FIT corpus missing under {CORPUS}; run `make corpus` (deploy/fetch-fit-corpus.sh)")
    return files


def corpus_bytes(name: str) -> bytes:
    path = CORPUS / name
    if not path.exists():
        pytest.fail(f"FIT corpus file missing: {path}; run `make corpus`")
    return path.read_bytes()


def test_every_workout_file_in_the_corpus_summarises_plausibly():
    summarised = 0
    for path in corpus_files():
        if path.stat().st_size > 160_000:
            continue  # big rides are covered by the benchmark; this keeps the unit suite fast
        try:
            decoded = decode_fit(path.read_bytes())
        except FitDecodeError as exc:
            # The one tiny developer-field sample has records without timestamps: not a workout.
            assert path.name == "DeveloperData.fit", f"{path}: {exc}"
            continue
        event = summary_events(decoded, "a1")[0]
        assert not decoded.salvaged, f"{path}: {decoded.salvage_reason}"
        assert 30 <= event["duration_s"] <= 48 * 3600, path
        assert event["records"] > 0
        if "avg_hr_bpm" in event:
            assert 60 <= event["avg_hr_bpm"] <= 200 and event["max_hr_bpm"] >= event["avg_hr_bpm"], path
        if "avg_power_w" in event:
            assert 50 <= event["avg_power_w"] <= 500, path
        speed = event.get("distance_m", 0) / event["duration_s"]
        assert speed < 20, f"{path}: {speed:.1f} m/s"
        assert event["load"] >= 0 and event["modality"] in {"steady_state", "hiit"}
        summarised += 1
    assert summarised >= 10


def _outcome(decode, data: bytes) -> object:
    try:
        decoded = decode(data)
    except FitDecodeError:
        return "refused"
    if not decoded.workouts:
        return decoded.weigh_ins
    samples = tuple(workout.samples for workout in decoded.workouts)
    return summary_events(decoded, "a1"), samples, decoded.laps, decoded.sessions, decoded.salvaged


def test_the_native_decoder_gives_the_same_summaries_as_garmin_fit_sdk(monkeypatch):
    """Intact corpus files go through pyfitparsernative alone (the columnar reader is turned off and the salvage
    decoder made to fail) and come out as garmin-fit-sdk makes them: summary, samples, laps, sessions. The
    benchmark checks the big files too."""
    compared = 0
    for path in corpus_files():
        if path.stat().st_size > 160_000:
            continue
        data = path.read_bytes()
        reference = _outcome(decode_fit_salvaging, data)
        with monkeypatch.context() as patch:
            patch.setattr(fit, "read_columns", lambda _: None)
            patch.setattr(fit, "decode_fit_salvaging", lambda _: pytest.fail(f"{path}: native decoder refused it"))
            native = _outcome(decode_fit, data) if reference != "refused" else "refused"
        assert native == reference, path
        compared += reference != "refused"
    assert compared >= 10


def test_a_damaged_file_the_native_decoder_refuses_is_salvaged_by_garmin_fit_sdk():
    data = bytearray(corpus_bytes(ZWIFT))
    data[5000] ^= 0xFF  # inside a record: the CRC no longer matches
    decoded = decode_fit(bytes(data))
    assert decoded.salvaged and "CRC" in decoded.salvage_reason
    assert decoded.workouts[0].records == 7967


def test_summary_reads_distance_by_name_despite_a_second_empty_distance_field():
    event = summary_events(decode_fit(corpus_bytes(ZWIFT)), "a1")[0]
    assert event["distance_m"] == pytest.approx(64166.66)
    assert event["sport"] == "cycling" and event["sub_sport"] == "virtual_activity"


def test_truncated_file_is_salvaged_up_to_the_damage_and_marked():
    data = corpus_bytes(ZWIFT)
    whole = decode_fit(data)
    half = decode_fit(data[: len(data) // 2])
    assert half.salvaged and "truncated" in half.salvage_reason
    assert 0.4 * whole.workouts[0].records < half.workouts[0].records < 0.6 * whole.workouts[0].records
    kept = len(half.workouts[0].samples)
    for name in ("time_s", *Samples.CHANNELS):
        assert getattr(half.workouts[0].samples, name) == getattr(whole.workouts[0].samples, name)[:kept]


def test_unfinished_recording_with_zero_data_size_is_salvaged():
    data = bytearray(corpus_bytes(ZWIFT)[:-2])  # no file CRC yet either
    data[4:8] = b"\0\0\0\0"
    decoded = decode_fit(bytes(data))
    assert decoded.salvaged and "data size is 0" in decoded.salvage_reason
    assert decoded.workouts[0].records == decode_fit(corpus_bytes(ZWIFT)).workouts[0].records


def test_bad_crc_keeps_the_data_and_says_so():
    data = bytearray(corpus_bytes(ZWIFT))
    data[-1] ^= 0xFF
    decoded = decode_fit(bytes(data))
    assert decoded.salvaged and "CRC" in decoded.salvage_reason
    assert decoded.workouts[0].records == 7967


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than the 12-byte FIT header"),
        (b"<html>this is not a FIT file</html>", "no '.FIT' signature"),
        (None, "no workout or weigh-in"),
    ],
)
def test_undecodable_input_raises_a_reason_a_person_can_act_on(data, reason):
    data = corpus_bytes(ZWIFT)[:120] if data is None else data
    with pytest.raises(FitDecodeError, match=reason):
        decode_fit(data)


def fit_crc(data: bytes) -> int:
    """The FIT spec's CRC-16."""
    table = [0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
             0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400]
    crc = 0
    for byte in data:
        for nibble in (byte & 0xF, byte >> 4):
            tmp = table[crc & 0xF]
            crc = ((crc >> 4) & 0x0FFF) ^ tmp ^ table[nibble]
    return crc


def weight_scale_file(when: datetime, weight_kg: float, fat_pct: float) -> bytes:
    """A minimal FIT file with one weight_scale message (global 30): timestamp, weight, percent_fat."""
    definition = struct.pack("<BBBHB", 0x40, 0, 0, 30, 3) + bytes([253, 4, 0x86, 0, 2, 0x84, 1, 2, 0x84])
    message = struct.pack("<BIHH", 0x00, int((when - FIT_EPOCH).total_seconds()), round(weight_kg * 100), round(fat_pct * 100))
    body = definition + message
    header = struct.pack("<BBHI4s", 14, 0x10, 2132, len(body), b".FIT")
    header += struct.pack("<H", fit_crc(header))
    return header + body + struct.pack("<H", fit_crc(header + body))


def test_weight_scale_messages_become_weigh_ins():
    when = datetime(2026, 3, 1, 7, 0, tzinfo=timezone.utc)
    decoded = decode_fit(weight_scale_file(when, 84.25, 19.5))
    assert not decoded.workouts and not decoded.salvaged
    (weigh_in,) = decoded.weigh_ins
    assert (weigh_in.time, weigh_in.weight_kg, weigh_in.body_fat_pct) == (when, 84.25, 19.5)


def test_cli_summarize_prints_one_json_per_file_and_fails_at_the_end(tmp_path):
    bad = tmp_path / "bad.fit"
    bad.write_bytes(b"not a fit file at all")
    result = CliRunner().invoke(app, ["fit", "summarize", str(CORPUS / ZWIFT), str(bad), "--json"])
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert result.exit_code == 1
    assert first["type"] == "workout.summary" and first["records"] == 7967
    assert {"start", "trimp", "load", "modality"} <= set(first)
    assert second["file"] == str(bad) and "not a FIT file" in second["error"]
