"""Read the provisioned dashboards and substitute template variables the way Grafana does for InfluxQL."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Iterator

DASHBOARDS = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def boards() -> dict[str, dict]:
    """Folder/file name -> dashboard JSON, for every provisioned board."""
    return {str(path.relative_to(DASHBOARDS)): json.loads(path.read_text()) for path in sorted(DASHBOARDS.rglob("*.json"))}


def queries(board: dict) -> Iterator[tuple[str, str]]:
    """(where, InfluxQL) for every variable, panel target and annotation of a board."""
    for variable in board["templating"]["list"]:
        yield f"variable {variable['name']}", variable["query"]
    for panel in board["panels"]:
        for target in panel["targets"]:
            yield f"panel {panel['id']} {panel['title']!r} target {target['refId']}", target["query"]
    for annotation in board["annotations"]["list"]:
        yield f"annotation {annotation['name']!r}", annotation["query"]


def substitute(query: str, athlete: str, start: datetime, end: datetime, interval: str = "1d") -> str:
    """Grafana's InfluxQL interpolation: $timeFilter as epoch-ms bounds, $__interval, and a regex-escaped
    single value for a variable used inside /^...$/."""
    time_filter = f"time >= {int(start.timestamp() * 1000)}ms and time <= {int(end.timestamp() * 1000)}ms"
    return (
        query.replace("$timeFilter", time_filter)
        .replace("$__interval", interval)
        .replace("$athlete", re.escape(athlete))
    )
