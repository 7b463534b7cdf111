"""`aromatrack fit summarize FILE... --json` and `aromatrack backfill DIR`: FIT files from the command line.

`fit summarize` runs the same adapter and load core as the stream agent and prints one `workout.summary` JSON
per session of each file (or `{"file": ..., "error": ...}`; exit status 1 at the end if any file failed).
`backfill` sends every .fit (and every .fit inside a .zip, as Garmin Connect exports them) under DIR to the
`workout.fit` topic. Re-runs are safe twice over: a ledger of sent (athlete, content hash) pairs in the state
directory skips files already sent for that athlete, and the agent itself processes a content hash once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Iterator

import typer

fit_app = typer.Typer(help="FIT files: summarise locally.", no_args_is_help=True)
MAX_MESSAGE_BYTES = 1_048_576


@fit_app.command("summarize")
def summarize(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="FIT files."),
    json_output: bool = typer.Option(False, "--json", help="One JSON object per line (the only format)."),
    athlete: str = typer.Option("local", help="athlete_id to put in the summaries."),
) -> None:
    """Decode FIT files and print one workout.summary JSON per session (a multisport file has one per sport and
    transition), with records, start, trimp, load, modality."""
    from aromatrack.streams.fit import FitDecodeError, decode_fit, summary_events

    failed = False
    for path in files:
        try:
            outputs = summary_events(decode_fit(path.read_bytes()), athlete)
        except FitDecodeError as exc:
            outputs, failed = [{"file": str(path), "error": str(exc)}], True
        for output in outputs:
            typer.echo(json.dumps(output))
    if failed:
        raise typer.Exit(1)


def fit_files(root: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every .fit under root, including .fit members of .zip archives, in a stable order."""
    for path in sorted(root.rglob("*")):
        suffix = path.suffix.lower()
        if suffix == ".fit" and path.is_file():
            yield str(path), path.read_bytes()
        elif suffix == ".zip" and path.is_file():
            with zipfile.ZipFile(path) as archive:
                for member in sorted(archive.namelist()):
                    if member.lower().endswith(".fit"):
                        yield f"{path}!{member}", archive.read(member)


def backfill(
    directory: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder of .fit / .zip exports."),
    athlete: str = typer.Option(..., help="athlete_id the workouts belong to."),
) -> None:
    """Send a folder of FIT files through the pipeline, with progress, a summary, and safe re-runs."""
    from datetime import datetime, timezone

    from rich.progress import Progress

    from aromatrack.deploy.settings import load_settings
    from aromatrack.schemas.events import WorkoutFit
    from aromatrack.streams.fit import encode_fit
    from aromatrack.streams.producer import EventProducer

    settings = load_settings()
    ledger_path = settings.state_dir / "backfill-sent.txt"
    ledger = set(ledger_path.read_text().splitlines()) if ledger_path.exists() else set()
    files = list(fit_files(directory))
    counts = {"sent": 0, "already sent": 0, "too large": 0}

    async def run() -> None:
        async with EventProducer(settings.kafka_bootstrap) as producer:
            with Progress() as progress, ledger_path.open("a") as ledger_file:
                task = progress.add_task("backfill", total=len(files))
                for name, data in files:
                    digest = hashlib.sha256(data).hexdigest()
                    sent_key = f"{athlete}:{digest}"  # the same file is a separate workout for another athlete
                    event = WorkoutFit(
                        athlete_id=athlete, time=datetime.now(timezone.utc), fit_b64=encode_fit(data),
                        filename=Path(name).name, event_id=digest[:32],
                    )
                    if sent_key in ledger:
                        counts["already sent"] += 1
                    elif len(event.model_dump_json()) > MAX_MESSAGE_BYTES - 1024:
                        counts["too large"] += 1
                        progress.console.print(f"{name}: over the 1 MB message limit even gzipped; not sent")
                    else:
                        await producer.send(event)
                        ledger_file.write(sent_key + "\n")
                        ledger.add(sent_key)
                        counts["sent"] += 1
                    progress.advance(task)

    asyncio.run(run())
    typer.echo(f"{len(files)} FIT files: " + ", ".join(f"{n} {label}" for label, n in counts.items()))
    if counts["too large"]:
        raise typer.Exit(1)


def register_fit_commands(app: typer.Typer) -> None:
    app.add_typer(fit_app, name="fit")
    app.command("backfill")(backfill)
