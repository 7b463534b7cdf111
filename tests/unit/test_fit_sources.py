"""Reading FIT files from folders and Garmin Connect export archives (zips inside the zip) for the backfill."""

from __future__ import annotations

import zipfile

from aromatrack.services.fit_sources import FitSources

from .garmin_export import garmin_export
from .test_fit_decode import corpus_bytes

RUN, RIDE = "activity-parser/garmin-fenix-5-run.fit", "activity-parser/garmin-edge-820-bike.fit"


def fit_files() -> dict[str, bytes]:
    return {"1001_ACTIVITY.fit": corpus_bytes(RUN), "1002_ACTIVITY.fit": corpus_bytes(RIDE), "1003_ACTIVITY.fit": corpus_bytes(RUN)[:4000]}


def test_an_export_archive_given_by_its_path_yields_every_nested_fit_file(tmp_path):
    files = fit_files()
    archive = garmin_export(tmp_path / "export.zip", files)
    with FitSources(archive) as sources:
        names = [source.name.rsplit("!", 1)[-1] for source in sources]
        assert names == sorted(files)
        assert [source.read() for source in sources] == [files[name] for name in sorted(files)]
        assert sources.total_bytes == sum(map(len, files.values()))
        assert sources.skipped == {"not a FIT file (.json)": 5, "not a FIT file (.csv)": 1, "not a FIT file (.gpx)": 1}
        assert sources.files[0].name.startswith(f"{archive}!DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip!")


def test_a_folder_holding_an_export_plain_files_and_junk(tmp_path):
    files = fit_files()
    garmin_export(tmp_path / "export.zip", files)
    (tmp_path / "watch").mkdir()
    (tmp_path / "watch" / "MORNING.FIT").write_bytes(corpus_bytes(RIDE))
    (tmp_path / "notes.txt").write_text("not a workout")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really a zip")
    with FitSources(tmp_path) as sources:
        assert len(sources.files) == 4
        assert sources.skipped["not a FIT file (.txt)"] == 1 and sources.skipped["damaged zip (BadZipFile)"] == 1


def test_inner_zips_are_extracted_to_a_scratch_folder_removed_on_close(tmp_path):
    archive = garmin_export(tmp_path / "export.zip", fit_files())
    with FitSources(archive) as sources:
        scratch = sources._scratch
        assert len(list(scratch.iterdir())) == 3  # two parts of FIT files, one of a .gpx
    assert not scratch.exists()
    with zipfile.ZipFile(archive) as outer:
        assert sum(name.endswith(".zip") for name in outer.namelist()) == 3
