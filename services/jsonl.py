"""Read events from JSON-lines files (one event a line), reporting bad lines without stopping."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

from aromatrack.schemas.events import EventBase, EventError, parse_event


def report_to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def read_events(path: Path, on_error: Callable[[str], None] = report_to_stderr) -> Iterator[EventBase]:
    """Yield valid events; pass `FILE:LINE: problem` to `on_error` for each bad line and skip it.

    A `workout.fit` line's relative `path` is resolved against the file's folder.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                event = parse_event(line)
            except EventError as exc:
                on_error(f"{path}:{number}: {exc}")
                continue
            fit_path = getattr(event, "path", None)
            if event.type == "workout.fit" and fit_path and not Path(fit_path).is_absolute():
                event = event.model_copy(update={"path": str(path.parent / fit_path)})
            yield event
