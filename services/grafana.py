"""Provision the boards through Grafana's HTTP API (grafana-api), for a Grafana that is not file-provisioned.

The same files as `docker compose` (grafana/provisioning/datasources, grafana/dashboards/<folder>/*.json)
are the single source. Every step looks up before it creates and overwrites by uid, so a re-run changes
nothing new. Folder permissions are what keep lab values away from coaches: the coaches' team may view the
coaching folder only, the clinicians' team both; setting a folder's permissions replaces Grafana's default
"every Viewer may view", so a coach without the clinicians' team cannot open the clinical folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from grafana_api.grafana_api import GrafanaClientError
from grafana_api.grafana_face import GrafanaFace

GRAFANA_DIR = Path(__file__).resolve().parents[1] / "grafana"
VIEW = 1
COACHES = "Coaches"
CLINICIANS = "Clinicians"
# Folder (sub-folder of grafana/dashboards) -> teams that may view it. Coaches never get "clinical".
FOLDER_VIEWERS = {"coaching": (COACHES, CLINICIANS), "clinical": (CLINICIANS,)}


@dataclass(frozen=True)
class Plan:
    """What to provision, read from the files under grafana/."""

    datasource: dict
    folder_uids: dict[str, str]  # folder name -> uid, the same as file provisioning gives it
    dashboards: dict[str, list[dict]]  # folder name -> dashboards in it


def load_plan(grafana_dir: Path = GRAFANA_DIR, influx_url: str | None = None) -> Plan:
    """Read the datasource and the boards; `influx_url` replaces the compose-internal URL when given."""
    datasource = yaml.safe_load((grafana_dir / "provisioning" / "datasources" / "influxdb.yaml").read_text())
    source = dict(datasource["datasources"][0])
    source.pop("editable", None)
    if influx_url:
        source["url"] = influx_url
    providers = yaml.safe_load((grafana_dir / "provisioning" / "dashboards" / "aromatrack.yaml").read_text())
    folder_uids = {provider["folder"]: provider["folderUid"] for provider in providers["providers"]}
    if set(folder_uids) != set(FOLDER_VIEWERS):
        raise ValueError(f"dashboard providers' folders {sorted(folder_uids)} are not {sorted(FOLDER_VIEWERS)}")
    dashboards: dict[str, list[dict]] = {}
    for folder in FOLDER_VIEWERS:
        paths = sorted((grafana_dir / "dashboards" / folder).glob("*.json"))
        if not paths:
            raise ValueError(f"grafana/dashboards/{folder}: no dashboards")
        dashboards[folder] = [json.loads(path.read_text()) for path in paths]
    unplanned = {p.name for p in (grafana_dir / "dashboards").iterdir() if p.is_dir()} - set(FOLDER_VIEWERS)
    if unplanned:
        raise ValueError(f"grafana/dashboards: folders without permissions: {sorted(unplanned)}")
    return Plan(source, folder_uids, dashboards)


def connect(url: str, token: str, timeout_s: float = 10.0) -> GrafanaFace:
    parts = urlsplit(url)
    prefix = parts.path.strip("/")
    return GrafanaFace(
        token,
        host=parts.hostname,
        port=parts.port,
        protocol=parts.scheme or "http",
        url_path_prefix=f"{prefix}/" if prefix else "",
        timeout=timeout_s,
    )


def _missing(error: GrafanaClientError) -> bool:
    return error.status_code == 404


def ensure_datasource(grafana: GrafanaFace, source: dict) -> str:
    try:
        existing = grafana.datasource.find_datasource(source["name"])
    except GrafanaClientError as error:
        if not _missing(error):
            raise
        grafana.datasource.create_datasource(source)
        return "created"
    if existing.get("readOnly"):
        # Provisioned from grafana/provisioning (docker compose): Grafana refuses API updates of it.
        return "provisioned from files, left to them"
    grafana.datasource.update_datasource(existing["id"], {**source, "id": existing["id"]})
    return "updated"


def ensure_folder(grafana: GrafanaFace, title: str, uid: str) -> None:
    try:
        grafana.folder.get_folder(uid)
    except GrafanaClientError as error:
        if not _missing(error):
            raise
        grafana.folder.create_folder(title, uid=uid)


def provisioned_from_files(grafana: GrafanaFace, uid: str) -> bool:
    """Grafana refuses API saves of a file-provisioned board (docker compose); those stay the files' job."""
    try:
        return bool(grafana.dashboard.get_dashboard(uid)["meta"].get("provisioned"))
    except GrafanaClientError as error:
        if not _missing(error):
            raise
        return False


def ensure_team(grafana: GrafanaFace, name: str) -> int:
    for team in grafana.teams.get_team_by_name(name):
        if team["name"] == name:
            return team["id"]
    return grafana.teams.add_team({"name": name})["teamId"]


def provision(grafana: GrafanaFace, plan: Plan) -> list[str]:
    """Datasource, teams, folders with their permissions, dashboards; returns one line per step."""
    done = []
    done.append(f"datasource {plan.datasource['name']}: {ensure_datasource(grafana, plan.datasource)}")
    team_ids = {name: ensure_team(grafana, name) for name in (COACHES, CLINICIANS)}
    done.extend(f"team {name}" for name in team_ids)
    for folder, boards in plan.dashboards.items():
        uid = plan.folder_uids[folder]
        ensure_folder(grafana, folder, uid)
        viewers = [{"teamId": team_ids[name], "permission": VIEW} for name in FOLDER_VIEWERS[folder]]
        grafana.folder.update_folder_permissions(uid, {"items": viewers})
        done.append(f"folder {folder}: viewable by {', '.join(FOLDER_VIEWERS[folder])}")
        for board in boards:
            if provisioned_from_files(grafana, board["uid"]):
                done.append(f"dashboard {folder}/{board['uid']}: provisioned from files, left to them")
                continue
            grafana.dashboard.update_dashboard(
                {"dashboard": {**board, "id": None}, "folderUid": uid, "overwrite": True}
            )
            done.append(f"dashboard {folder}/{board['uid']}")
    return done
