"""`aromatrack evaluate TIMELINE.jsonl --json`: the clinical core over a file, for what-if review and tests.

Input lines may come in any order; the engine processes them in event-time order, then runs every athlete's
clock to `--as-of` (default: the last event's time, so nothing falls due after the history ends). With
`--as-of T` the file is a history received whole at T, as the stream sees a bulk send at T: alerts older than
`--historical-after` days at T are marked `historical`, as the stream marks them (without it, the file is read as
arriving live and nothing is marked). The engine settings default to the stream workers' (AROMATRACK_LAB_METHODS,
AROMATRACK_HISTORICAL_AFTER_DAYS), so both give the same alerts. Output: one
line per alert in its final version (an alert updated by new evidence appears once, as its last version, at
the position it was first raised); `--history` prints every version as the stream sends them. A `workout.fit` line is
decoded into the `workout.summary` the stream would make of it (same adapter, same workout id), so the file
and the stream see the same timeline. Bad lines, undecodable files and impossible scale readings are
reported on stderr (no values, only the reason); stdout carries one alert JSON per line and nothing else.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime, timezone
from pathlib import Path
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Iterator, Optional

import typer

from aromatrack.deploy.settings import Settings, load_settings, parse_lab_methods
from aromatrack.domain.events import Alert
from aromatrack.schemas.events import AthleteProfile, EventBase, EventError, WorkoutFit, parse_event
from aromatrack.services.jsonl import read_events, report_to_stderr


def with_fit_decoded(events: Iterable[EventBase], source: Path, workers: int = 1) -> Iterator[EventBase]:
    """FIT uploads replaced by their workout summaries (one per session), their load computed with the athlete's
    profile in effect at the workout's time, as the stream does (uploads without a workout are dropped, as the
    stream drops them; undecodable ones are reported, as the stream dead-letters them). With `workers` > 1 the
    uploads are decoded in that many processes (decoding is nearly all of evaluate's time); the output is the same."""
    from aromatrack.domain import training_load

    events = list(events)
    profiles: dict[str, list] = {}
    for event in events:
        if isinstance(event, AthleteProfile):
            history = profiles.get(event.athlete_id, [])
            profiles[event.athlete_id] = training_load.with_profile(history, event.time.timestamp(), event.model_dump())
    uploads = [event for event in events if isinstance(event, WorkoutFit)]
    profile_histories = [profiles.get(upload.athlete_id, []) for upload in uploads]
    if workers > 1 and len(uploads) > 1:
        with ProcessPoolExecutor(workers) as pool:
            outcomes = iter(list(pool.map(upload_outcome, uploads, profile_histories, chunksize=16)))
    else:
        outcomes = map(upload_outcome, uploads, profile_histories)
    for event in events:
        if not isinstance(event, WorkoutFit):
            yield event
            continue
        outcome = next(outcomes)
        if isinstance(outcome, str):
            report_to_stderr(f"{source}: event {event.event_id}: FIT file not decoded: {outcome}")
            continue
        for summary in outcome:
            yield parse_event(summary)


def upload_outcome(upload: WorkoutFit, profile_history: list) -> list[dict[str, Any]] | str:
    """One upload's summaries with the athlete's profile at its first session, or why it was not decoded (a
    module-level function, so a worker process can run it)."""
    from aromatrack.domain import training_load
    from aromatrack.streams.fit import FitDecodeError, decode_fit, fit_payload, upload_summaries

    try:
        data = fit_payload(upload)
        decoded = decode_fit(data)
    except (EventError, FitDecodeError, OSError) as exc:
        return str(exc)
    if not decoded.workouts:
        return []
    athlete = training_load.athlete_at(profile_history, decoded.workouts[0].start.timestamp())
    return upload_summaries(decoded, upload.athlete_id, data, athlete)


def lab_methods(pairs: list[str]) -> dict[str, str]:
    """`--lab-method LAB=METHOD` options as a mapping; a malformed one is a usage error naming it."""
    try:
        return parse_lab_methods(pairs)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--lab-method") from None


def settings_with_flags(lab_method: list[str], historical_after: float | None, **replaced: Any) -> Settings:
    """The settings from the environment with the engine's flags (`--lab-method`, `--historical-after`) and any
    other `replaced` fields applied; a malformed AROMATRACK_* variable exits with status 2, naming it."""
    if lab_method:
        replaced["lab_methods"] = tuple(lab_methods(lab_method).items())
    if historical_after is not None:
        replaced["historical_after_days"] = historical_after
    try:
        return dataclasses.replace(load_settings(), **replaced)
    except ValueError as exc:
        report_to_stderr(f"error: {exc}")
        raise typer.Exit(2)


def final_versions(alerts: list[Alert]) -> list[Alert]:
    """Each alert once, in its last version, in the order alerts were first raised."""
    latest: dict[str, Alert] = {}
    for alert in alerts:
        latest[alert.alert_id] = alert
    return list(latest.values())


def evaluate(
    timeline: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events."),
    json_output: bool = typer.Option(False, "--json", help="One alert JSON object per line (the only format)."),
    as_of: Optional[datetime] = typer.Option(
        None, "--as-of", formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        help="Read the file as a history received whole at this time (UTC unless it says otherwise), as the "
        "stream sees a bulk send: every athlete's clock runs to it, raising the rechecks that fall due with no "
        "event after them, and alerts older than --historical-after days then are marked historical. Default: "
        "the last event's time, nothing marked (the file read as arriving live).",
    ),
    history: bool = typer.Option(False, "--history", help="Every version of every alert, not only the last."),
    workers: int = typer.Option(
        len(os.sched_getaffinity(0)), "--workers", min=1,
        help="Processes decoding FIT uploads (default: one per CPU); the alerts are the same for any number.",
    ),
    lab_method: list[str] = typer.Option(
        [], "--lab-method", metavar="LAB=METHOD",
        help="The assay a lab uses when its results name none (lc_msms or immunoassay); repeat per lab. A result "
        "with neither is treated as an unstated method, and repeated low ones escalate. Default: the workers' "
        "setting, AROMATRACK_LAB_METHODS (LAB=METHOD,...).",
    ),
    historical_after: Optional[float] = typer.Option(
        None, "--historical-after", min=0, metavar="DAYS",
        help="With --as-of: an alert older than this then is marked historical (imported history, summarised "
        "by the notifier rather than paged). Default: the workers' setting, AROMATRACK_HISTORICAL_AFTER_DAYS (14).",
    ),
) -> None:
    """Run a timeline through the clinical rules and print the alerts it raises, one JSON per line."""
    from aromatrack.domain.engine import AthleteState, advance, fold, mark_historical
    from aromatrack.schemas.boundary import domain_event, wire_alert
    from aromatrack.schemas.events import dump_event

    settings = settings_with_flags(lab_method, historical_after).engine_settings()
    if not json_output:
        report_to_stderr("note: alerts are printed as JSON lines (--json is the only output format)")
    states: dict[str, AthleteState] = {}
    alerts: list[Alert] = []
    events = map(domain_event, with_fit_decoded(read_events(timeline), timeline, workers))
    for event, outcome in fold(events, settings, states):
        if outcome.rejection:
            report_to_stderr(f"{timeline}: event {event.event_id}: reading rejected: {outcome.rejection}")
        alerts += outcome.alerts
    if as_of is not None:
        as_of_s = (as_of if as_of.tzinfo else as_of.replace(tzinfo=timezone.utc)).timestamp()
        for state in states.values():
            alerts += advance(state, as_of_s, settings)
        alerts = [mark_historical(alert, as_of_s, settings) for alert in alerts]
    for alert in alerts if history else final_versions(alerts):
        typer.echo(dump_event(wire_alert(alert)).decode())


def register_evaluate_command(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
