"""The FIT files of a folder or an archive, as `aromatrack backfill` reads them.

A Garmin Connect "Export your data" archive nests its FIT files in zips inside the zip
(`DI_CONNECT/DI-Connect-Uploaded-Files/UploadedFiles_0-_Part1.zip`, ...) beside JSON, CSV and other parts.
`FitSources` walks a folder or an archive (zips inside zips, to NESTED_ZIP_DEPTH), lists every `.fit` member
with its size before anything is read (so progress can show MB), and counts what it skips and why. Inner zips
are copied to a temporary directory one level at a time (bounded memory, whatever the export's size) and kept
until the sources are closed; files are read one at a time, when asked for.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
import zlib
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

NESTED_ZIP_DEPTH = 3  # Garmin nests one level; more than three is not an export


@dataclass(frozen=True)
class FitSource:
    """One FIT file: where it is (`archive.zip!inner.zip!file.fit` inside archives), its size, how to read it."""

    name: str
    size: int
    read: Callable[[], bytes]


class FitSources:
    """The FIT files under a folder or in an archive, and what was skipped (reason -> count). A context
    manager: the archives stay open, and their extracted inner zips stay on disk, until it closes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[FitSource] = []
        self.skipped: Counter[str] = Counter()
        self._stack = ExitStack()

    def __enter__(self) -> "FitSources":
        self._scratch = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="aromatrack-backfill-")))
        if self.root.is_dir():
            for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
                self._add_path(path)
        else:
            self._add_path(self.root)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def total_bytes(self) -> int:
        return sum(source.size for source in self.files)

    def __iter__(self) -> Iterator[FitSource]:
        return iter(self.files)

    def _add_path(self, path: Path) -> None:
        suffix = path.suffix.lower()
        if suffix == ".fit":
            self.files.append(FitSource(str(path), path.stat().st_size, path.read_bytes))
        elif suffix == ".zip":
            self._add_archive(path, str(path), depth=1)
        else:
            self.skipped[_not_fit(path.name)] += 1

    def _add_archive(self, path: Path, name: str, depth: int) -> None:
        try:
            archive = self._stack.enter_context(zipfile.ZipFile(path))
        except (zipfile.BadZipFile, OSError) as exc:
            self.skipped[f"damaged zip ({type(exc).__name__})"] += 1
            return
        for info in sorted(archive.infolist(), key=lambda info: info.filename):
            if info.is_dir():
                continue
            member = PurePosixPath(info.filename)
            suffix = member.suffix.lower()
            if suffix == ".fit":
                self.files.append(FitSource(f"{name}!{info.filename}", info.file_size, _reader(archive, info.filename)))
            elif suffix == ".zip" and depth < NESTED_ZIP_DEPTH:
                inner = self._scratch / f"{len(list(self._scratch.iterdir()))}.zip"
                try:
                    with archive.open(info) as source, inner.open("wb") as target:
                        shutil.copyfileobj(source, target)
                except (zipfile.BadZipFile, zlib.error, OSError) as exc:
                    self.skipped[f"damaged zip ({type(exc).__name__})"] += 1
                    continue
                self._add_archive(inner, f"{name}!{info.filename}", depth + 1)
            elif suffix == ".zip":
                self.skipped[f"zip nested deeper than {NESTED_ZIP_DEPTH} levels"] += 1
            else:
                self.skipped[_not_fit(member.name)] += 1


def _reader(archive: zipfile.ZipFile, member: str) -> Callable[[], bytes]:
    return lambda: archive.read(member)


def _not_fit(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return f"not a FIT file ({suffix})" if suffix else "not a FIT file (no extension)"
