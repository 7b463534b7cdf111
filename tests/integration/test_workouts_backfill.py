"""`aromatrack backfill` as a user runs it (real subprocess, broker, worker, InfluxDB; safe re-runs), and a scale's
FIT weigh-in arriving as a body-composition reading."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aromatrack.schemas.series import Audience
from aromatrack.streams.influx import rows

from ..unit.garmin_export import garmin_export
from ..unit.test_fit_decode import weight_scale_file
from .conftest import eventually, unique_athlete

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "fit" / "activity-parser"
RUN, RIDE = "garmin-fenix-5-run.fit", "garmin-edge-820-bike.fit"


def export_archive(path: Path) -> Path:
    """A Garmin Connect export archive: the run and the ride in zips inside the zip, beside non-FIT parts."""
    for name in (RUN, RIDE):
        if not (CORPUS / name).exists():
            pytest.fail(f"FIT corpus file missing: {CORPUS / name}; run `make corpus` (deploy/fetch-fit-corpus.sh)")
    return garmin_export(path, {"1_ACTIVITY.fit": (CORPUS / RUN).read_bytes(), "2_ACTIVITY.fit": (CORPUS / RIDE).read_bytes()}, per_part=1)


def backfill(env: dict[str, str], folder: Path, athlete: str) -> str:
    return run_backfill(env, [str(folder), "--athlete", athlete])[-1]


def run_backfill(env: dict[str, str], args: list[str]) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "aromatrack.services.cli", "backfill", *args],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


async def test_backfill_of_a_garmin_export_sends_each_file_once_per_athlete_and_the_workouts_arrive(
    stack, worker, influx_for, tmp_path
):
    archive = export_archive(tmp_path / "export.zip")
    (tmp_path / "folder").mkdir()
    shutil.copy(archive, tmp_path / "folder" / "export.zip")
    env = {**os.environ, **stack.as_env(), "AROMATRACK_STATE_DIR": str(tmp_path / "state")}
    (tmp_path / "state").mkdir()
    first, second = unique_athlete("bf"), unique_athlete("bf")
    skipped = "; skipped 7: 1 not a FIT file (.csv), 1 not a FIT file (.gpx), 5 not a FIT file (.json)"

    assert backfill(env, archive, first) == "2 FIT files: 2 sent, 0 already sent, 0 too large" + skipped
    assert backfill(env, tmp_path / "folder", first) == "2 FIT files: 0 sent, 2 already sent, 0 too large" + skipped
    assert backfill(env, archive, second) == "2 FIT files: 2 sent, 0 already sent, 0 too large" + skipped

    async with influx_for(worker.database, Audience.COACHING) as influx:
        async def sports(athlete: str) -> list[str]:
            query = f"SELECT load, sport FROM workout WHERE athlete_id = '{athlete}'"
            return sorted(row["sport"] for row in rows(await influx.query(query)))

        async def both_arrived() -> bool:
            return len(await sports(first)) == 2 and len(await sports(second)) == 2

        await eventually(both_arrived, timeout_s=60)
        assert await sports(first) == await sports(second) == ["cycling", "running"]


async def test_a_manifest_backfills_several_athletes_at_once_and_a_rerun_sends_nothing(stack, worker, influx_for, tmp_path):
    export_archive(tmp_path / "export.zip")
    (tmp_path / "folder").mkdir()
    shutil.copy(CORPUS / RIDE, tmp_path / "folder" / "ride.fit")
    first, second = unique_athlete("bfm"), unique_athlete("bfm")
    manifest = tmp_path / "athletes.csv"
    manifest.write_text(f"{first},export.zip\n{second},folder\n")
    env = {**os.environ, **stack.as_env(), "AROMATRACK_STATE_DIR": str(tmp_path / "state")}
    skipped = "; skipped 7: 1 not a FIT file (.csv), 1 not a FIT file (.gpx), 5 not a FIT file (.json)"

    assert run_backfill(env, ["--manifest", str(manifest)])[-2:] == [
        f"{first}: 2 FIT files: 2 sent, 0 already sent, 0 too large" + skipped,
        f"{second}: 1 FIT files: 1 sent, 0 already sent, 0 too large",
    ]
    assert run_backfill(env, ["--manifest", str(manifest)])[-1] == f"{second}: 1 FIT files: 0 sent, 1 already sent, 0 too large"

    async with influx_for(worker.database, Audience.COACHING) as influx:
        async def sports(athlete: str) -> list[str]:
            return sorted(row["sport"] for row in rows(await influx.query(
                f"SELECT load, sport FROM workout WHERE athlete_id = '{athlete}'")))

        async def arrived() -> bool:
            return len(await sports(first)) == 2 and len(await sports(second)) == 1

        await eventually(arrived, timeout_s=60)
        assert (await sports(first), await sports(second)) == (["cycling", "running"], ["cycling"])


async def test_a_scale_fit_file_becomes_a_body_composition_reading(stack, worker, influx_for, tmp_path):
    athlete = unique_athlete("bfscale")
    (tmp_path / "scale").mkdir()
    weighed = datetime(2026, 3, 2, 6, 30, tzinfo=timezone.utc)
    (tmp_path / "scale" / "weight.fit").write_bytes(weight_scale_file(weighed, 86.4, 21.5))
    env = {**os.environ, **stack.as_env(), "AROMATRACK_STATE_DIR": str(tmp_path)}
    assert backfill(env, tmp_path / "scale", athlete) == "1 FIT files: 1 sent, 0 already sent, 0 too large"

    async with influx_for(worker.database, Audience.COACHING) as influx:
        query = f"SELECT weight_kg, body_fat_pct, device FROM body_composition WHERE athlete_id = '{athlete}'"

        async def written() -> bool:
            return bool(rows(await influx.query(query)))

        await eventually(written, timeout_s=60)
        (stored,) = rows(await influx.query(query))
    assert (stored["time"], stored["weight_kg"], stored["body_fat_pct"], stored["device"]) == (
        "2026-03-02T06:30:00Z", 86.4, 21.5, "fit"
    )
