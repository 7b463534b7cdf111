"""The backfill command's own side on a Garmin Connect export of one athlete's 5 years: listing the archive
(zips inside the zip) and, per file, reading, hashing, gzip + base64 and validating the `workout.fit` event,
against the plain read of the same bytes, in one run: files/s and MB/s of CPU time.

The export is built the way Garmin builds it (tests/unit/garmin_export.py): `--files` corpus recordings (the
demo's indoor rides and treadmill runs) re-stamped onto one athlete's 5 years, split into UploadedFiles parts
of 500 files. The broker and the workers are not in this figure (the end-to-end backfill is in "Backfill: time
and memory as history grows").
Usage: python benchmarks/bench_fit_backfill.py [--files 2000]   (needs `make corpus`)
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aromatrack.schemas.events import WorkoutFit
from aromatrack.services.cohort import FIT_RECORDINGS
from aromatrack.services.fit_sources import FitSources
from aromatrack.streams.fit import encode_fit
from aromatrack.streams.fit_restamp import restamper

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus" / "fit"
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from garmin_export import garmin_export  # noqa: E402 - a test helper, found through the path above


def five_years(count: int) -> dict[str, bytes]:
    """`count` recordings re-stamped onto random mornings of 2021-2025 (seeded), named as Garmin names uploads."""
    rng = random.Random(5)
    recordings = [restamper((CORPUS / name).read_bytes()) for names in FIT_RECORDINGS.values() for name in names]
    begin = datetime(2021, 1, 1, 6, tzinfo=timezone.utc)
    return {
        f"{10_000_000 + number}_ACTIVITY.fit": rng.choice(recordings)(begin + timedelta(minutes=rng.randrange(5 * 365 * 24 * 60)))
        for number in range(count)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    files = five_years(parser.parse_args().files)
    with tempfile.TemporaryDirectory() as scratch:
        archive = garmin_export(Path(scratch) / "export.zip", files, per_part=500)
        megabytes = sum(map(len, files.values())) / 2**20
        print(f"export: {len(files)} FIT files, {megabytes:.1f} MB of FIT, archive {archive.stat().st_size / 2**20:.1f} MB")
        del files
        started = time.process_time()
        with FitSources(archive) as sources:
            listed = time.process_time() - started
            started = time.process_time()
            plain = sum(len(source.read()) for source in sources)
            read_s = time.process_time() - started
            started = time.process_time()
            for source in sources:
                data = source.read()
                digest = hashlib.sha256(data).hexdigest()
                WorkoutFit(athlete_id="bench", time=datetime.now(timezone.utc), fit_b64=encode_fit(data),
                           filename=source.name.rsplit("!", 1)[-1], event_id=digest[:32]).model_dump_json()
            prepared_s = time.process_time() - started
            count = len(sources.files)
    assert plain == round(megabytes * 2**20)
    print(f"listing the archive (inner zips extracted): {listed:6.2f} s CPU")
    print(f"read only           : {read_s:6.2f} s CPU  {count / read_s:7.0f} files/s  {megabytes / read_s:6.1f} MB/s")
    print(f"read + hash + gzip + base64 + event: {prepared_s:6.2f} s CPU  {count / prepared_s:7.0f} files/s  "
          f"{megabytes / prepared_s:6.1f} MB/s  ({prepared_s / read_s:.1f}x the plain read)")


if __name__ == "__main__":
    main()
