"""`aromatrack evaluate TIMELINE.jsonl --json`: the clinical core over a file, for what-if review and tests.

Input lines may come in any order; the engine processes them in event-time order. A `workout.fit` line is
decoded into the `workout.summary` the stream would make of it (same adapter, same workout id), so the file
and the stream see the same timeline. Bad lines, undecodable files and impossible scale readings are
reported on stderr (no values, only the reason); stdout carries one alert JSON per line and nothing else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import typer

from aromatrack.schemas.events import AthleteProfile, EventBase, EventError, WorkoutFit, parse_event
from aromatrack.services.jsonl import read_events, report_to_stderr


def with_fit_decoded(events: Iterable[EventBase], source: Path) -> Iterator[EventBase]:
    """FIT uploads replaced by their workout summaries (one per session), their load computed with the athlete's profile in effect
    at the workout's time, as the stream does (uploads without a workout are dropped, as the stream drops them;
    undecodable ones are reported, as the stream dead-letters them)."""
    from aromatrack.domain import training_load
    from aromatrack.streams.fit import FitDecodeError, decode_fit, fit_payload, upload_summaries

    events = list(events)
    profiles: dict[str, list] = {}
    for event in events:
        if isinstance(event, AthleteProfile):
            history = profiles.get(event.athlete_id, [])
            profiles[event.athlete_id] = training_load.with_profile(history, event.time.timestamp(), event.model_dump())
    for event in events:
        if not isinstance(event, WorkoutFit):
            yield event
            continue
        try:
            data = fit_payload(event)
            decoded = decode_fit(data)
        except (EventError, FitDecodeError, OSError) as exc:
            report_to_stderr(f"{source}: event {event.event_id}: FIT file not decoded: {exc}")
            continue
        if decoded.workouts:
            athlete = training_load.athlete_at(profiles.get(event.athlete_id, []), decoded.workouts[0].start.timestamp())
            for summary in upload_summaries(decoded, event.athlete_id, data, athlete):
                yield parse_event(summary)


def evaluate(
    timeline: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events."),
    json_output: bool = typer.Option(False, "--json", help="One alert JSON object per line (the only format)."),
) -> None:
    """Run a timeline through the clinical rules and print the alerts it raises, one JSON per line."""
    from aromatrack.domain.engine import fold
    from aromatrack.schemas.events import dump_event

    if not json_output:
        report_to_stderr("note: alerts are printed as JSON lines (--json is the only output format)")
    for event, outcome in fold(with_fit_decoded(read_events(timeline), timeline)):
        if outcome.rejection:
            report_to_stderr(f"{timeline}: event {event.event_id}: reading rejected: {outcome.rejection}")
        for alert in outcome.alerts:
            typer.echo(dump_event(alert).decode())


def register_evaluate_command(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
