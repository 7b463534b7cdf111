"""`aromatrack fit summarize FILE... --json` and `aromatrack backfill SOURCE`: FIT files from the command line.

`fit summarize` runs the same adapter and load core as the stream agent and prints one `workout.summary` JSON
per session of each file (or `{"file": ..., "error": ...}`; exit status 1 at the end if any file failed).
`backfill` sends every .fit of a folder or an archive (a Garmin Connect export: zips inside the zip, read by
`services.fit_sources`) to the `workout.fit` topic. Re-runs are safe twice over: a ledger of acknowledged
(athlete, content hash) pairs in the state directory skips files already sent for that athlete, and the agent
itself processes a content hash once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

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


def backfill(
    source: Path = typer.Argument(
        ..., exists=True,
        help="A folder of .fit and .zip files, or a Garmin Connect export archive itself (zips inside the zip are read).",
    ),
    athlete: str = typer.Option(..., help="athlete_id the workouts belong to."),
    window: int = typer.Option(32, min=1, help="Files sent before waiting for the broker's acknowledgements."),
) -> None:
    """Send the FIT files of a folder or a Garmin Connect export through the pipeline: a progress bar with files
    and MB/s, what was skipped and why, and safe re-runs (an interrupted run resumes where it stopped: files the
    broker acknowledged for this athlete are in a ledger and not sent again)."""
    import time
    from datetime import datetime, timezone

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from aromatrack.deploy.settings import load_settings
    from aromatrack.schemas.events import WorkoutFit
    from aromatrack.services.fit_sources import FitSources
    from aromatrack.streams.fit import encode_fit
    from aromatrack.streams.producer import EventProducer

    settings = load_settings()
    ledger_path = settings.state_dir / "backfill-sent.txt"
    ledger = set(ledger_path.read_text().splitlines()) if ledger_path.exists() else set()
    counts = {"sent": 0, "already sent": 0, "too large": 0}
    started = time.monotonic()

    async def run(sources: FitSources) -> None:
        columns = (TextColumn("backfill"), BarColumn(), TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
                   TransferSpeedColumn(), TimeRemainingColumn())
        async with EventProducer(settings.kafka_bootstrap) as producer:
            with Progress(*columns) as progress, ledger_path.open("a") as ledger_file:
                task = progress.add_task("backfill", total=sources.total_bytes, files=0, total_files=len(sources.files))
                pending: list[tuple[WorkoutFit, str]] = []

                async def flush() -> None:
                    # The ledger records only what the broker acknowledged, so an interrupted run resends the rest.
                    await producer.send_all(event for event, _ in pending)
                    ledger_file.writelines(sent_key + "\n" for _, sent_key in pending)
                    ledger_file.flush()
                    counts["sent"] += len(pending)
                    pending.clear()

                for number, fit_source in enumerate(sources, start=1):
                    data = fit_source.read()
                    digest = hashlib.sha256(data).hexdigest()
                    sent_key = f"{athlete}:{digest}"  # the same file is a separate workout for another athlete
                    event = WorkoutFit(
                        athlete_id=athlete, time=datetime.now(timezone.utc), fit_b64=encode_fit(data),
                        filename=Path(fit_source.name.rsplit("!", 1)[-1]).name, event_id=digest[:32],
                    )
                    if sent_key in ledger:
                        counts["already sent"] += 1
                    elif len(event.model_dump_json()) > MAX_MESSAGE_BYTES - 1024:
                        counts["too large"] += 1
                        progress.console.print(f"{fit_source.name}: over the 1 MB message limit even gzipped; not sent")
                    else:
                        ledger.add(sent_key)
                        pending.append((event, sent_key))
                        if len(pending) >= window:
                            await flush()
                    progress.update(task, advance=fit_source.size, files=number)
                await flush()

    with FitSources(source) as sources:
        asyncio.run(run(sources))
        megabytes = sources.total_bytes / 2**20
        skipped = sources.skipped
    seconds = time.monotonic() - started
    tally = f"{len(sources.files)} FIT files: " + ", ".join(f"{n} {label}" for label, n in counts.items())
    if skipped:
        tally += f"; skipped {sum(skipped.values())}: " + ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    typer.echo(f"{megabytes:.1f} MB of FIT in {seconds:.1f} s ({megabytes / seconds:.2f} MB/s)")
    typer.echo(tally)
    if counts["too large"]:
        raise typer.Exit(1)


def register_fit_commands(app: typer.Typer) -> None:
    app.add_typer(fit_app, name="fit")
    app.command("backfill")(backfill)
