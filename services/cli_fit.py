"""`aromatrack fit summarize FILE... --json` and `aromatrack backfill SOURCE`: FIT files from the command line.

`fit summarize` runs the same adapter and load core as the stream agent and prints one `workout.summary` JSON
per session of each file (or `{"file": ..., "error": ...}`; exit status 1 at the end if any file failed).
`backfill` sends every .fit of a folder or an archive (a Garmin Connect export: zips inside the zip, read by
`services.fit_sources`) to the `workout.fit` topic, for one athlete or many at once (`services.backfill`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

fit_app = typer.Typer(help="FIT files: summarise locally.", no_args_is_help=True)


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
    source: Optional[Path] = typer.Argument(
        None, exists=True,
        help="A folder of .fit and .zip files, or a Garmin Connect export archive itself (zips inside the zip are read).",
    ),
    athlete: Optional[str] = typer.Option(None, help="athlete_id the workouts of SOURCE belong to."),
    manifest: Optional[Path] = typer.Option(
        None, exists=True, dir_okay=False,
        help="Many athletes at once instead of SOURCE: a CSV file of 'athlete_id,source' lines (sources relative "
        "to the manifest's folder). Their files are sent interleaved, so the workers decode them in parallel.",
    ),
    window: int = typer.Option(32, min=1, help="Files sent before waiting for the broker's acknowledgements."),
) -> None:
    """Send the FIT files of a folder or a Garmin Connect export through the pipeline (or of many athletes'
    with --manifest): a progress bar with files and MB/s, what was skipped and why, and safe re-runs (an
    interrupted run resumes where it stopped: files the broker acknowledged for an athlete are in a ledger and
    not sent again)."""
    import asyncio
    import itertools
    import time
    from contextlib import ExitStack

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from aromatrack.deploy.settings import load_settings
    from aromatrack.services.backfill import BackfillJob, Ledger, ManifestError, open_sources, read_manifest, send_history
    from aromatrack.streams.producer import EventProducer

    if (manifest is None) == (source is None) or (source is not None) != (athlete is not None):
        raise typer.BadParameter("give SOURCE with --athlete, or --manifest (not both)")
    try:
        jobs = read_manifest(manifest) if manifest else [BackfillJob(athlete, source)]
    except ManifestError as exc:
        raise typer.BadParameter(str(exc), param_hint="--manifest") from None
    settings = load_settings()
    ledger = Ledger(settings.state_dir / "backfill-sent.txt")
    started = time.monotonic()
    with ExitStack() as stack:
        sources = open_sources(jobs, stack)
        files = sum(len(listed.files) for listed in sources.values())
        total_bytes = sum(listed.total_bytes for listed in sources.values())
        columns = (TextColumn("backfill"), BarColumn(), TextColumn("{task.fields[files]}/{task.fields[total_files]} files"),
                   TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns) as progress:
            task = progress.add_task("backfill", total=total_bytes, files=0, total_files=files)
            done = itertools.count(1)

            async def run() -> dict:
                async with EventProducer(settings.kafka_bootstrap) as producer, producer.bulk_import():
                    return await send_history(
                        producer, sources, ledger, window,
                        on_file=lambda fit_source: progress.update(task, advance=fit_source.size, files=next(done)),
                        on_refused=progress.console.print,
                    )

            tallies = asyncio.run(run())
    seconds = time.monotonic() - started
    megabytes = total_bytes / 2**20
    typer.echo(f"{megabytes:.1f} MB of FIT in {seconds:.1f} s ({megabytes / seconds:.2f} MB/s, {files / seconds:.1f} files/s)")
    for athlete_id, tally in tallies.items():
        typer.echo(f"{athlete_id}: {tally.line()}" if manifest else tally.line())
    if any(tally.too_large for tally in tallies.values()):
        raise typer.Exit(1)


def register_fit_commands(app: typer.Typer) -> None:
    app.add_typer(fit_app, name="fit")
    app.command("backfill")(backfill)
