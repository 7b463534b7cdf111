"""Provision Grafana through its HTTP API (grafana-api): organisations, their datasources, folders and boards.

grafana/provisioning/organisations.yaml and grafana/dashboards/<folder>/*.json are the single source. Coaches
and clinicians are kept apart by Grafana organisations, the one separation Grafana OSS enforces on queries:
the Coaching organisation has only the coaching datasource, which logs into InfluxDB as the coaching reader,
so even a hand-written `SELECT * FROM lab` from a coach's login is refused by InfluxDB. Every step looks up
before it creates and overwrites by name or uid, so a re-run changes nothing new.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlsplit

import yaml
from grafana_api.grafana_api import GrafanaClientError
from grafana_api.grafana_face import GrafanaFace

from aromatrack.schemas.series import Audience, database_name
from aromatrack.streams.influx import InfluxUser

GRAFANA_DIR = Path(__file__).resolve().parents[1] / "grafana"
MIXED = "-- Mixed --"  # Grafana's built-in pseudo-datasource: each target names its own
ORGANISATIONS_FILE = Path("provisioning") / "organisations.yaml"


@dataclass(frozen=True)
class DatasourcePlan:
    name: str
    uid: str
    audience: Audience


@dataclass(frozen=True)
class OrganisationPlan:
    name: str
    datasources: tuple[DatasourcePlan, ...]
    folders: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What to provision, read from the files under grafana/."""

    organisations: tuple[OrganisationPlan, ...]
    dashboards: dict[str, list[dict]]  # folder name (and uid suffix) -> dashboards in it

    @staticmethod
    def folder_uid(folder: str) -> str:
        return f"aromatrack-{folder}"


def datasource_uids(board: dict) -> Iterator[str]:
    """Every datasource uid a board's variables, panels, targets and annotations query (not the Mixed marker)."""
    for item in (*board["templating"]["list"], *board["annotations"]["list"], *board["panels"]):
        if item.get("datasource") and item["datasource"]["uid"] != MIXED:
            yield item["datasource"]["uid"]
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            if target.get("datasource"):
                yield target["datasource"]["uid"]


def load_plan(grafana_dir: Path = GRAFANA_DIR) -> Plan:
    """Read and cross-check the organisations and boards; ValueError names what does not fit.

    A board may only name datasources every organisation showing its folder has, so a coaching board can
    never be pointed at the clinical datasource (the Coaching organisation has none to point at).
    """
    raw = yaml.safe_load((grafana_dir / ORGANISATIONS_FILE).read_text())
    organisations = tuple(
        OrganisationPlan(
            org["name"],
            tuple(DatasourcePlan(ds["name"], ds["uid"], Audience(ds["audience"])) for ds in org["datasources"]),
            tuple(org["folders"]),
        )
        for org in raw["organisations"]
    )
    folders = sorted(p.name for p in (grafana_dir / "dashboards").iterdir() if p.is_dir())
    dashboards = {folder: [json.loads(p.read_text()) for p in sorted((grafana_dir / "dashboards" / folder).glob("*.json"))]
                  for folder in folders}
    shown = {folder for org in organisations for folder in org.folders}
    if set(folders) != shown:
        raise ValueError(f"grafana/dashboards folders {folders} are not the organisations' folders {sorted(shown)}")
    for org in organisations:
        available = {ds.uid for ds in org.datasources}
        for folder in org.folders:
            for board in dashboards[folder]:
                missing = set(datasource_uids(board)) - available
                if missing:
                    raise ValueError(f"{folder}/{board['uid']} names datasources {sorted(missing)} that "
                                     f"organisation {org.name} does not have")
    return Plan(organisations, dashboards)


def connect(url: str, user: str, password: str, timeout_s: float = 10.0) -> GrafanaFace:
    """Log in as a Grafana server admin: creating organisations needs one (a service-account token is per org)."""
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    return GrafanaFace(
        (user, password),
        host=parts.hostname,
        port=parts.port,
        protocol=parts.scheme or "http",
        url_path_prefix=f"{prefix}/" if prefix else "",
        timeout=timeout_s,
    )


def _missing(error: GrafanaClientError) -> bool:
    return error.status_code == 404


def ensure_organisation(grafana: GrafanaFace, name: str) -> int:
    try:
        return grafana.organization.find_organization(name)["id"]
    except GrafanaClientError as error:
        if not _missing(error):
            raise
    return grafana.organization.create_organization({"name": name})["orgId"]


def use_organisation(grafana: GrafanaFace, org_id: int) -> None:
    """Scope the following requests to one organisation (Grafana's X-Grafana-Org-Id header)."""
    grafana.api.s.headers["X-Grafana-Org-Id"] = str(org_id)


def datasource_body(plan: DatasourcePlan, influx_url: str, base_database: str, reader: InfluxUser) -> dict:
    return {
        "name": plan.name,
        "uid": plan.uid,
        "type": "influxdb",
        "access": "proxy",
        "url": influx_url,
        "user": reader.username,
        "jsonData": {"dbName": database_name(base_database, plan.audience), "httpMode": "GET"},
        "secureJsonData": {"password": reader.password},
    }


def ensure_datasource(grafana: GrafanaFace, body: dict) -> str:
    try:
        existing = grafana.datasource.find_datasource(body["name"])
    except GrafanaClientError as error:
        if not _missing(error):
            raise
        grafana.datasource.create_datasource(body)
        return "created"
    grafana.datasource.update_datasource(existing["id"], {**body, "id": existing["id"]})
    return "updated"


def ensure_folder(grafana: GrafanaFace, title: str, uid: str) -> None:
    try:
        grafana.folder.get_folder(uid)
    except GrafanaClientError as error:
        if not _missing(error):
            raise
        grafana.folder.create_folder(title, uid=uid)


def provision(
    grafana: GrafanaFace, plan: Plan, readers: Mapping[Audience, InfluxUser], influx_url: str, base_database: str
) -> list[str]:
    """Organisations, their datasources (each with its audience's reader), folders and boards.

    Returns one line per step; the lines name users and databases, never a password.
    """
    done = []
    for org in plan.organisations:
        org_id = ensure_organisation(grafana, org.name)
        use_organisation(grafana, org_id)
        done.append(f"organisation {org.name} (id {org_id})")
        for source in org.datasources:
            body = datasource_body(source, influx_url, base_database, readers[source.audience])
            outcome = ensure_datasource(grafana, body)
            done.append(f"  datasource {source.name}: {outcome}, reads {body['jsonData']['dbName']} "
                        f"as {body['user']}")
        for folder in org.folders:
            ensure_folder(grafana, folder, plan.folder_uid(folder))
            for board in plan.dashboards[folder]:
                grafana.dashboard.update_dashboard(
                    {"dashboard": {**board, "id": None}, "folderUid": plan.folder_uid(folder), "overwrite": True}
                )
                done.append(f"  dashboard {folder}/{board['uid']}")
    return done
