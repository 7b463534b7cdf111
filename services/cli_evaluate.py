"""`aromatrack evaluate TIMELINE.jsonl --json`: the clinical core over a file, for what-if review and tests.

Input lines may come in any order; the engine processes them in event-time order. Bad lines and impossible
scale readings are reported on stderr (no values, only the reason); stdout carries one alert JSON per line
and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import typer

from aromatrack.services.jsonl import read_events, report_to_stderr


def evaluate(
    timeline: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines file of events."),
    json_output: bool = typer.Option(False, "--json", help="One alert JSON object per line (the only format)."),
) -> None:
    """Run a timeline through the clinical rules and print the alerts it raises, one JSON per line."""
    from aromatrack.domain.engine import fold
    from aromatrack.schemas.events import dump_event

    if not json_output:
        report_to_stderr("note: alerts are printed as JSON lines (--json is the only output format)")
    for event, outcome in fold(read_events(timeline)):
        if outcome.rejection:
            report_to_stderr(f"{timeline}: event {event.event_id}: reading rejected: {outcome.rejection}")
        for alert in outcome.alerts:
            typer.echo(dump_event(alert).decode())


def register_evaluate_command(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
