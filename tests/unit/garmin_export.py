"""A Garmin Connect "Export your data" archive built the way Garmin builds it: the FIT uploads in zips inside
the zip (DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip, ...) beside the export's JSON and
CSV parts, for the backfill tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

UPLOADS = "DI_CONNECT/DI-Connect-Uploaded-Files"
OTHER_PARTS = {
    "DI_CONNECT/DI-Connect-User/user_profile.json": b'{"userName": "athlete"}',
    "DI_CONNECT/DI-Connect-Fitness/athlete_summarizedActivities.json": b"[]",
    "DI_CONNECT/DI-Connect-Wellness/2026-01-01_2026-04-01_sleepData.json": b"[]",
    "DI_CONNECT/DI-Connect-Aggregator/UDSFile_2026-01-01_2026-04-01.json": b"[]",
    "DI_CONNECT/DI-Connect-Metrics/MetricsMaxMetData_20260101_20260401.json": b"[]",
    "DI-GOLF/golf-scorecards.csv": b"course,score\n",
}


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def garmin_export(path: Path, fit_files: dict[str, bytes], per_part: int = 2) -> Path:
    """The export archive at `path`, its FIT files split over UploadedFiles parts of `per_part` files each
    (Garmin names them by device upload id: `<id>_ACTIVITY.fit`), plus a .gpx upload and the non-FIT parts."""
    names = sorted(fit_files)
    parts = {
        f"{UPLOADS}/UploadedFiles_0-_Part{number}.zip": _zip({name: fit_files[name] for name in names[start : start + per_part]})
        for number, start in enumerate(range(0, len(names), per_part), start=1)
    }
    parts[f"{UPLOADS}/UploadedFiles_0-_Part{len(parts) + 1}.zip"] = _zip({"manual_upload.gpx": b"<gpx/>"})
    path.write_bytes(_zip({**OTHER_PARTS, **parts}))
    return path
