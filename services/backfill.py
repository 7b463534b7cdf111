"""`aromatrack backfill`: the FIT files of folders or Garmin Connect exports onto the `workout.fit` topic, for one
athlete or for many at once.

Many athletes (a manifest: one `athlete_id,source` line each) are sent interleaved, one file of each athlete in
turn, so every athlete's partition of the topic fills from the start and all the workers decode in parallel
(the topic is partitioned by athlete; sending athlete after athlete would keep one worker busy at a time for as
long as one athlete's history takes to send). Re-runs are safe twice over: a ledger of acknowledged (athlete,
content hash) pairs in the state directory skips what was already sent for that athlete (an interrupted run
resumes where it stopped), and the workouts agent itself processes a content hash once per athlete.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
import zlib
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import zip_longest
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, TextIO

from aromatrack.schemas.events import WorkoutFit
from aromatrack.services.fit_sources import FitSource, FitSources
from aromatrack.streams.fit import encode_fit
from aromatrack.streams.producer import MAX_MESSAGE_BYTES, EventProducer

ENVELOPE_BYTES = 1024  # room for the Kafka record around the event


class ManifestError(ValueError):
    """A manifest line that does not name an athlete and an existing source; the message says which and why."""


@dataclass(frozen=True)
class BackfillJob:
    """One athlete's history: a folder or an export archive."""

    athlete_id: str
    source: Path


@dataclass
class Tally:
    """What became of one athlete's files."""

    files: int = 0
    sent: int = 0
    already_sent: int = 0
    too_large: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> parts of the source that are not FIT files

    def line(self) -> str:
        text = (f"{self.files} FIT files: {self.sent} sent, {self.already_sent} already sent, "
                f"{self.too_large} too large")
        if self.skipped:
            text += f"; skipped {sum(self.skipped.values())}: " + ", ".join(
                f"{count} {reason}" for reason, count in sorted(self.skipped.items()))
        return text


def read_manifest(path: Path) -> list[BackfillJob]:
    """`athlete_id,source` per line (a relative source is taken from the manifest's folder; blank lines and
    lines starting with # are skipped); ManifestError names the first bad line."""
    jobs = []
    with path.open(newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ManifestError(f"{path}:{number}: expected 'athlete_id,source', got {len(row)} field(s)")
            source = path.parent / row[1].strip()
            if not source.exists():
                raise ManifestError(f"{path}:{number}: {source} does not exist")
            jobs.append(BackfillJob(row[0].strip(), source))
    if len({job.athlete_id for job in jobs}) != len(jobs):
        raise ManifestError(f"{path}: an athlete is named twice; put their files in one folder")
    return jobs


def interleaved(sources: dict[str, FitSources]) -> Iterator[tuple[str, FitSource]]:
    """Every athlete's files, one file of each athlete in turn."""
    turns = zip_longest(*([(athlete, source) for source in files] for athlete, files in sources.items()))
    return (pair for turn in turns for pair in turn if pair is not None)


class Ledger:
    """The (athlete, content hash) pairs the broker acknowledged, one `athlete:sha256` line each, appended as
    acknowledgements come in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.keys = set(path.read_text().splitlines()) if path.exists() else set()

    @staticmethod
    def key(athlete_id: str, digest: str) -> str:
        return f"{athlete_id}:{digest}"  # the same file is a separate workout for another athlete

    def open(self) -> TextIO:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.path.open("a")


async def send_history(
    producer: EventProducer, sources: dict[str, FitSources], ledger: Ledger, window: int,
    on_file: Callable[[FitSource], None], on_refused: Callable[[str], None],
) -> dict[str, Tally]:
    """Send every athlete's files, interleaved, `window` at a time; return each athlete's tally."""
    tallies = {athlete: Tally(files=len(files.files), skipped=files.skipped) for athlete, files in sources.items()}
    pending: list[tuple[WorkoutFit, str]] = []
    with ledger.open() as ledger_file:
        async def flush() -> None:
            # The ledger records only what the broker acknowledged, so an interrupted run resends the rest.
            await producer.send_all(event for event, _ in pending)
            ledger_file.writelines(key + "\n" for _, key in pending)
            ledger_file.flush()
            for event, _ in pending:
                tallies[event.athlete_id].sent += 1
            pending.clear()

        for athlete, fit_source in interleaved(sources):
            try:
                data = fit_source.read()
            except (zipfile.BadZipFile, zlib.error, OSError) as exc:  # a damaged archive member or an unreadable file
                tallies[athlete].skipped[f"unreadable ({type(exc).__name__})"] += 1
                on_refused(f"{fit_source.name}: cannot be read ({exc}); not sent")
                on_file(fit_source)
                continue
            digest = hashlib.sha256(data).hexdigest()
            key = Ledger.key(athlete, digest)
            event = WorkoutFit(
                athlete_id=athlete, time=datetime.now(timezone.utc), fit_b64=encode_fit(data),
                filename=PurePosixPath(fit_source.name.rsplit("!", 1)[-1]).name, event_id=digest[:32],
            )
            if key in ledger.keys:
                tallies[athlete].already_sent += 1
            elif len(event.model_dump_json()) > MAX_MESSAGE_BYTES - ENVELOPE_BYTES:
                tallies[athlete].too_large += 1
                on_refused(f"{fit_source.name}: over the 1 MB message limit even gzipped; not sent")
            else:
                ledger.keys.add(key)
                pending.append((event, key))
                if len(pending) >= window:
                    await flush()
            on_file(fit_source)
        await flush()
    return tallies


def open_sources(jobs: list[BackfillJob], stack: ExitStack) -> dict[str, FitSources]:
    """Each athlete's sources, listed (open until `stack` closes)."""
    return {job.athlete_id: stack.enter_context(FitSources(job.source)) for job in jobs}
