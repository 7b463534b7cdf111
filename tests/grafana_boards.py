"""Read the provisioned dashboards and substitute template variables the way Grafana does for InfluxQL."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple

from aromatrack.schemas.series import Audience
from aromatrack.services.grafana import load_plan

DASHBOARDS = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def boards() -> dict[str, dict]:
    """Folder/file name -> dashboard JSON, for every provisioned board."""
    return {str(path.relative_to(DASHBOARDS)): json.loads(path.read_text()) for path in sorted(DASHBOARDS.rglob("*.json"))}


class Query(NamedTuple):
    where: str
    datasource_uid: str
    influxql: str


def queries(board: dict) -> Iterator[Query]:
    """Every variable, panel target and annotation query of a board, with the datasource it runs on."""
    for variable in board["templating"]["list"]:
        yield Query(f"variable {variable['name']}", variable["datasource"]["uid"], variable["query"])
    for panel in board["panels"]:
        for target in panel["targets"]:
            uid = (target.get("datasource") or panel["datasource"])["uid"]
            yield Query(f"panel {panel['id']} {panel['title']!r} target {target['refId']}", uid, target["query"])
    for annotation in board["annotations"]["list"]:
        yield Query(f"annotation {annotation['name']!r}", annotation["datasource"]["uid"], annotation["query"])


def measurements_in(influxql: str) -> set[str]:
    """Measurements a query reads, quoted or not (a subquery's FROM ( is not one)."""
    return set(re.findall(r'\bFROM\s+"?([A-Za-z_]\w*)"?', influxql, flags=re.IGNORECASE))


def datasource_audiences() -> dict[str, Audience]:
    """Datasource uid -> the audience database it reads, from grafana/provisioning/organisations.yaml."""
    return {source.uid: source.audience for org in load_plan().organisations for source in org.datasources}


def substitute(query: str, values: Mapping[str, str], start: datetime, end: datetime, interval: str = "1d") -> str:
    """Grafana's InfluxQL interpolation: $timeFilter as epoch-ms bounds, ${__from}/${__to} as epoch ms, $__interval,
    the signed-in user's login for ${__user.login}, and a variable's single value, regex-escaped inside /^...$/."""
    start_ms, end_ms = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    query = (
        query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
        .replace("${__from}", str(start_ms))
        .replace("${__to}", str(end_ms))
        .replace("$__interval", interval)
    )
    for name, value in values.items():
        query = query.replace(f"/^${name}$/", f"/^{re.escape(value)}$/").replace(f"${{{name}}}", value)
        query = query.replace(f"${name}", value)
    return query
