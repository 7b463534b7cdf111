"""`aromatrack grafana provision` against a loopback HTTP server that records every request.

The server keeps just enough Grafana state (datasources, teams, folders, permissions, dashboards by uid)
to answer lookups, so the test sees what a first run creates and that a re-run creates nothing new.
It is not Grafana: no real Grafana server ran here (see README, "Grafana boards").
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import unquote

import pytest
import yaml
from typer.testing import CliRunner

from aromatrack.services.cli import app
from aromatrack.services.grafana import CLINICIANS, COACHES, GRAFANA_DIR, load_plan

from ..grafana_boards import boards

TOKEN = "test-token"
FOLDER_UIDS = load_plan().folder_uids


class RecordingGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.requests: list[tuple[str, str, object]] = []
        self.datasources: dict[str, dict] = {}
        self.teams: dict[str, int] = {}
        self.folders: dict[str, str] = {}
        self.permissions: dict[str, list[dict]] = {}
        self.dashboards: dict[str, tuple[str, dict]] = {}
        self.from_files: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def creations(self) -> list[str]:
        return [path for method, path, _ in self.requests
                if method == "POST" and path in ("/api/datasources", "/api/teams", "/api/folders")]

    def answer(self, method: str, path: str, body: dict | None) -> tuple[int, object]:
        if method == "GET" and (m := re.fullmatch(r"/api/datasources/name/(.+)", path)):
            found = self.datasources.get(m[1])
            return (200, found) if found else (404, {"message": "Data source not found"})
        if method == "POST" and path == "/api/datasources":
            self.datasources[body["name"]] = {**body, "id": len(self.datasources) + 1}
            return 200, {"id": self.datasources[body["name"]]["id"]}
        if method == "PUT" and (m := re.fullmatch(r"/api/datasources/(\d+)", path)):
            if self.datasources[body["name"]].get("readOnly"):
                return 403, {"message": "Cannot update read-only data source"}
            self.datasources[body["name"]] = body
            return 200, {"id": int(m[1])}
        if method == "GET" and (m := re.fullmatch(r"/api/teams/search\?name=(.+)", path)):
            return 200, {"teams": [{"id": i, "name": n} for n, i in self.teams.items() if n == m[1]]}
        if method == "POST" and path == "/api/teams":
            self.teams[body["name"]] = len(self.teams) + 1
            return 200, {"teamId": self.teams[body["name"]]}
        if method == "GET" and (m := re.fullmatch(r"/api/folders/([\w-]+)", path)):
            return (200, {"uid": m[1]}) if m[1] in self.folders else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            self.folders[body["uid"]] = body["title"]
            return 200, {"uid": body["uid"]}
        if method == "POST" and (m := re.fullmatch(r"/api/folders/([\w-]+)/permissions", path)):
            self.permissions[m[1]] = body["items"]
            return 200, {"message": "Folder permissions updated"}
        if method == "GET" and (m := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path)):
            if m[1] not in self.dashboards:
                return 404, {"message": "Dashboard not found"}
            return 200, {"dashboard": self.dashboards[m[1]][1], "meta": {"provisioned": m[1] in self.from_files}}
        if method == "POST" and path == "/api/dashboards/db":
            if body["dashboard"]["uid"] in self.from_files:
                return 400, {"message": "Cannot save provisioned dashboard"}
            self.dashboards[body["dashboard"]["uid"]] = (body["folderUid"], body["dashboard"])
            return 200, {"status": "success"}
        return 404, {"message": f"no route {method} {path}"}


class RecordingHandler(BaseHTTPRequestHandler):
    server: RecordingGrafana

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = unquote(self.path)
        self.server.requests.append((self.command, path, body))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            status, payload = 401, {"message": "Unauthorized"}
        else:
            status, payload = self.server.answer(self.command, path, body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = _serve

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def grafana() -> Iterator[RecordingGrafana]:
    server = RecordingGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def provision(grafana: RecordingGrafana, token: str = TOKEN, *extra: str):
    return CliRunner().invoke(app, ["grafana", "provision", "--url", grafana.url, "--token", token, *extra])


def test_first_run_creates_the_datasource_teams_folders_permissions_and_every_board(grafana):
    result = provision(grafana, TOKEN, "--influx-url", "http://influx.example:8086")
    assert result.exit_code == 0, result.output

    source = grafana.datasources["Aromatrack InfluxDB"]
    assert (source["type"], source["url"], source["jsonData"]["dbName"]) == (
        "influxdb", "http://influx.example:8086", "aromatrack")
    assert set(grafana.teams) == {COACHES, CLINICIANS}
    assert set(grafana.folders) == {FOLDER_UIDS["coaching"], FOLDER_UIDS["clinical"]}
    expected = {board["uid"]: FOLDER_UIDS[name.split("/")[0]] for name, board in boards().items()}
    assert {uid: folder for uid, (folder, _) in grafana.dashboards.items()} == expected
    assert all(dashboard["id"] is None for _, dashboard in grafana.dashboards.values())


def test_coaches_may_view_the_coaching_folder_and_never_the_clinical_one(grafana):
    assert provision(grafana).exit_code == 0
    viewers = {uid: {item["teamId"] for item in items if item["permission"] == 1}
               for uid, items in grafana.permissions.items()}
    coaches, clinicians = grafana.teams[COACHES], grafana.teams[CLINICIANS]
    assert viewers[FOLDER_UIDS["coaching"]] == {coaches, clinicians}
    assert viewers[FOLDER_UIDS["clinical"]] == {clinicians}
    assert all("role" not in item for items in grafana.permissions.values() for item in items)


def test_a_rerun_creates_nothing_and_leaves_the_same_state(grafana):
    assert provision(grafana).exit_code == 0
    first_creations = grafana.creations()
    state = (dict(grafana.datasources), dict(grafana.teams), dict(grafana.folders),
             dict(grafana.permissions), dict(grafana.dashboards))

    assert provision(grafana).exit_code == 0
    assert grafana.creations() == first_creations
    assert (grafana.datasources, grafana.teams, grafana.folders, grafana.permissions, grafana.dashboards) == state


def test_a_refused_token_exits_1_with_the_reason_and_changes_nothing(grafana):
    result = provision(grafana, "wrong-token")
    assert result.exit_code == 1
    assert "Unauthorized" in result.output
    assert not (grafana.datasources or grafana.teams or grafana.folders or grafana.dashboards)


def test_what_files_provisioned_is_left_alone_and_the_folders_get_permissions(grafana):
    """docker compose's Grafana: the file provider made the folders (same uids) and the boards."""
    grafana.datasources["Aromatrack InfluxDB"] = {"id": 1, "name": "Aromatrack InfluxDB", "readOnly": True}
    for name, board in boards().items():
        folder = name.split("/")[0]
        grafana.folders[FOLDER_UIDS[folder]] = folder
        grafana.dashboards[board["uid"]] = (FOLDER_UIDS[folder], board)
        grafana.from_files.add(board["uid"])

    result = provision(grafana)
    assert result.exit_code == 0, result.output
    assert "provisioned from files" in result.output
    assert not [path for method, path, _ in grafana.requests
                if method != "GET" and path.startswith(("/api/datasources", "/api/folders", "/api/dashboards"))
                and not path.endswith("/permissions")]
    assert set(grafana.permissions) == set(FOLDER_UIDS.values())


def test_each_dashboard_provider_reads_its_folder_of_the_compose_mount():
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "aromatrack.yaml").read_text())
    for provider in providers["providers"]:
        folder = provider["folder"]
        assert provider["options"]["path"] == f"/var/lib/grafana/dashboards/{folder}", provider["name"]
        assert list((GRAFANA_DIR / "dashboards" / folder).glob("*.json")), folder
