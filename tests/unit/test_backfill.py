"""The backfill's own logic without a broker: the manifest, the interleaving of athletes, the ledger and the
tallies (`send_history` with a stand-in that records what it is given; the broker side is in
tests/integration/test_workouts_backfill.py)."""

from __future__ import annotations

import asyncio
import zipfile
from contextlib import ExitStack

import pytest
from typer.testing import CliRunner

from aromatrack.services.backfill import BackfillJob, Ledger, ManifestError, interleaved, open_sources, read_manifest, send_history
from aromatrack.services.cli import app

from .garmin_export import garmin_export
from .test_fit_sources import fit_files


class RecordingProducer:
    """Accepts every event, as a broker that acknowledges everything would; keeps them in order."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list = []
        self.fail_after = fail_after

    async def send_all(self, events) -> int:
        events = list(events)
        if self.fail_after is not None and len(self.sent) + len(events) > self.fail_after:
            raise ConnectionError("broker gone")
        self.sent += events
        return len(events)


@pytest.fixture
def histories(tmp_path):
    """Two athletes: one with a Garmin export of three files, one with a folder of two (one a duplicate of the
    first athlete's file: a separate workout for this athlete)."""
    files = fit_files()
    garmin_export(tmp_path / "a.zip", files)
    (tmp_path / "b").mkdir()
    for name in ("1001_ACTIVITY.fit", "1002_ACTIVITY.fit"):
        (tmp_path / "b" / name).write_bytes(files[name])
    (tmp_path / "b" / "notes.txt").write_text("not a workout")
    manifest = tmp_path / "athletes.csv"
    manifest.write_text("# athlete,source\nath-a,a.zip\n\nath-b,b\n")
    return manifest


def run(manifest, ledger, producer, window=2):
    with ExitStack() as stack:
        sources = open_sources(read_manifest(manifest), stack)
        return asyncio.run(send_history(producer, sources, ledger, window, on_file=lambda _: None, on_refused=print))


def test_the_manifest_names_athletes_and_their_sources(histories):
    assert read_manifest(histories) == [BackfillJob("ath-a", histories.parent / "a.zip"), BackfillJob("ath-b", histories.parent / "b")]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("ath-a\n", "expected 'athlete_id,source'"), ("ath-a,missing.zip\n", "does not exist"),
     ("ath-a,a.zip\nath-a,b\n", "named twice"), (",a.zip\n", "expected")],
)
def test_a_bad_manifest_line_is_named(histories, text, problem):
    histories.write_text(text)
    with pytest.raises(ManifestError, match=problem):
        read_manifest(histories)


def test_athletes_are_sent_one_file_each_in_turn(histories, tmp_path):
    with ExitStack() as stack:
        order = [athlete for athlete, _ in interleaved(open_sources(read_manifest(histories), stack))]
    assert order == ["ath-a", "ath-b", "ath-a", "ath-b", "ath-a"]


def test_every_file_is_sent_once_per_athlete_and_a_rerun_sends_nothing(histories, tmp_path):
    producer = RecordingProducer()
    tallies = run(histories, Ledger(tmp_path / "state" / "ledger.txt"), producer)
    assert [event.athlete_id for event in producer.sent] == ["ath-a", "ath-b", "ath-a", "ath-b", "ath-a"]
    assert tallies["ath-a"].line() == ("3 FIT files: 3 sent, 0 already sent, 0 too large; skipped 7: 1 not a FIT file "
                                       "(.csv), 1 not a FIT file (.gpx), 5 not a FIT file (.json)")
    assert tallies["ath-b"].line() == "2 FIT files: 2 sent, 0 already sent, 0 too large; skipped 1: 1 not a FIT file (.txt)"
    again = RecordingProducer()
    tallies = run(histories, Ledger(tmp_path / "state" / "ledger.txt"), again)
    assert again.sent == [] and tallies["ath-a"].already_sent == 3 and tallies["ath-b"].already_sent == 2


def test_an_interrupted_run_resumes_with_what_the_broker_did_not_acknowledge(histories, tmp_path):
    ledger_path = tmp_path / "ledger.txt"
    with pytest.raises(ConnectionError):
        run(histories, Ledger(ledger_path), RecordingProducer(fail_after=2))  # the second window of two fails
    assert len(ledger_path.read_text().splitlines()) == 2
    resumed = RecordingProducer()
    tallies = run(histories, Ledger(ledger_path), resumed)
    assert len(resumed.sent) == 3 and sum(t.already_sent for t in tallies.values()) == 2


def test_the_command_wants_a_source_with_an_athlete_or_a_manifest(histories):
    runner = CliRunner()
    for args in (["backfill"], ["backfill", str(histories.parent / "b")], ["backfill", "--manifest", str(histories),
                 str(histories.parent / "b"), "--athlete", "x"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "SOURCEwith--athlete,or--manifest" in "".join(result.output.split()), args
    histories.write_text("ath-a\n")
    result = runner.invoke(app, ["backfill", "--manifest", str(histories)])
    unboxed = "".join(result.output.replace("│", "").split())  # rich wraps the message in a box
    assert result.exit_code == 2 and "athletes.csv:1:expected'athlete_id,source'" in unboxed


def _damaged(data: bytes, member: bytes) -> bytes:
    """A zip whose `member`'s compressed bytes are zeroed in part (its central directory intact)."""
    start = data.find(member) + len(member)
    return data[:start + 100] + bytes(60) + data[start + 160:]


def test_damaged_archive_members_are_skipped_with_the_reason_and_the_rest_is_sent(histories, tmp_path):
    archive = histories.parent / "a.zip"  # its second part (of one FIT file; the first has two) is damaged: listing
    archive.write_bytes(_damaged(archive.read_bytes(), b"UploadedFiles_0-_Part2.zip"))
    packed = histories.parent / "b" / "more.zip"  # a FIT member damaged: found when it is read to be sent
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as writer:
        writer.writestr("3001_ACTIVITY.fit", (histories.parent / "b" / "1001_ACTIVITY.fit").read_bytes())
    packed.write_bytes(_damaged(packed.read_bytes(), b"3001_ACTIVITY.fit"))
    producer = RecordingProducer()
    tallies = run(histories, Ledger(tmp_path / "ledger.txt"), producer)
    assert tallies["ath-a"].skipped["damaged zip (BadZipFile)"] == 1 and tallies["ath-a"].sent == 2
    unreadable = {reason: count for reason, count in tallies["ath-b"].skipped.items() if reason.startswith("unreadable")}
    assert list(unreadable.values()) == [1] and tallies["ath-b"].sent == 2
    assert len(producer.sent) == 4
