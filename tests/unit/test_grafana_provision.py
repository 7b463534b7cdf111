"""`aromatrack grafana provision` against a loopback HTTP server that records every request.

The server keeps just enough Grafana state (organisations, and per organisation the datasources, folders and
dashboards) to answer lookups, scoping requests by the X-Grafana-Org-Id header as Grafana does, so the test
sees what a first run creates and that a re-run creates nothing new. It is not Grafana: no real Grafana
server ran here (see README, "Grafana boards").
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from aromatrack.deploy.influx_access import Role
from aromatrack.services.cli import app
from aromatrack.services.grafana import datasource_uids, load_plan

from ..grafana_boards import boards, datasource_audiences

ADMIN, ADMIN_PASSWORD = "admin", "grafana-secret"
READER_PASSWORDS = {Role.COACHING_READER: "coach-secret", Role.CLINICAL_READER: "clinic-secret"}


class RecordingGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), RecordingHandler)
        self.requests: list[tuple[int, str, str, object]] = []
        self.orgs: dict[str, int] = {"Main Org.": 1}
        self.datasources: dict[int, dict[str, dict]] = defaultdict(dict)
        self.folders: dict[int, dict[str, str]] = defaultdict(dict)
        self.dashboards: dict[int, dict[str, tuple[str, dict]]] = defaultdict(dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def org(self, name: str) -> int:
        return self.orgs[name]

    def creations(self) -> list[str]:
        return [path for _, method, path, _ in self.requests
                if method == "POST" and path in ("/api/orgs", "/api/datasources", "/api/folders")]

    def answer(self, org: int, method: str, path: str, body: dict | None) -> tuple[int, object]:
        if method == "GET" and (m := re.fullmatch(r"/api/orgs/name/(.+)", path)):
            return (200, {"id": self.orgs[m[1]], "name": m[1]}) if m[1] in self.orgs else (404, {"message": "no org"})
        if method == "POST" and path == "/api/orgs":
            self.orgs[body["name"]] = max(self.orgs.values()) + 1
            return 200, {"orgId": self.orgs[body["name"]], "message": "Organization created"}
        sources = self.datasources[org]
        if method == "GET" and (m := re.fullmatch(r"/api/datasources/name/(.+)", path)):
            return (200, sources[m[1]]) if m[1] in sources else (404, {"message": "Data source not found"})
        if method == "POST" and path == "/api/datasources":
            sources[body["name"]] = {**body, "id": 100 * org + len(sources) + 1}
            return 200, {"id": sources[body["name"]]["id"]}
        if method == "PUT" and (m := re.fullmatch(r"/api/datasources/(\d+)", path)):
            sources[body["name"]] = body
            return 200, {"id": int(m[1])}
        if method == "GET" and (m := re.fullmatch(r"/api/folders/([\w-]+)", path)):
            return (200, {"uid": m[1]}) if m[1] in self.folders[org] else (404, {"message": "folder not found"})
        if method == "POST" and path == "/api/folders":
            self.folders[org][body["uid"]] = body["title"]
            return 200, {"uid": body["uid"]}
        if method == "POST" and path == "/api/dashboards/db":
            if body["folderUid"] not in self.folders[org]:
                return 400, {"message": "folder not found"}
            self.dashboards[org][body["dashboard"]["uid"]] = (body["folderUid"], body["dashboard"])
            return 200, {"status": "success"}
        return 404, {"message": f"no route {method} {path}"}


class RecordingHandler(BaseHTTPRequestHandler):
    server: RecordingGrafana

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = unquote(self.path)
        org = int(self.headers.get("X-Grafana-Org-Id") or 1)
        self.server.requests.append((org, self.command, path, body))
        expected = "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            status, payload = 401, {"message": "Unauthorized"}
        else:
            status, payload = self.server.answer(org, self.command, path, body)
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
def grafana(monkeypatch, tmp_path) -> Iterator[RecordingGrafana]:
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("AROMATRACK_INFLUX_DB", "prod")
    for role, password in READER_PASSWORDS.items():
        monkeypatch.setenv(role.password_variable, password)
    server = RecordingGrafana()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def provision(grafana: RecordingGrafana, password: str = ADMIN_PASSWORD, *extra: str):
    return CliRunner().invoke(app, ["grafana", "provision", "--url", grafana.url, "--user", ADMIN,
                                    "--password", password, "--influx-url", "http://influx.example:8086", *extra])


def test_coaches_organisation_has_only_the_coaching_datasource_logged_in_as_the_coaching_reader(grafana):
    result = provision(grafana)
    assert result.exit_code == 0, result.output

    coaching = grafana.datasources[grafana.org("Coaching")]
    assert list(coaching) == ["Aromatrack coaching data"]
    (source,) = coaching.values()
    assert (source["type"], source["url"], source["jsonData"]["dbName"], source["user"]) == (
        "influxdb", "http://influx.example:8086", "prod_coaching", Role.COACHING_READER.username)
    assert source["secureJsonData"] == {"password": READER_PASSWORDS[Role.COACHING_READER]}
    assert "password" not in source and "basicAuthPassword" not in source

    clinical = grafana.datasources[grafana.org("Clinical")]
    assert {s["jsonData"]["dbName"]: s["user"] for s in clinical.values()} == {
        "prod_coaching": Role.COACHING_READER.username, "prod_clinical": Role.CLINICAL_READER.username}
    assert not grafana.datasources[1], "nothing goes into the Main Org, where any user may be a Viewer"


def test_each_organisation_gets_its_folders_boards_and_the_datasources_they_name(grafana):
    assert provision(grafana).exit_code == 0
    expected = {
        "Coaching": {b["uid"] for n, b in boards().items() if n.startswith("coaching/")},
        "Clinical": {b["uid"] for b in boards().values()},
    }
    audiences = datasource_audiences()
    for name, uids in expected.items():
        org = grafana.org(name)
        assert set(grafana.dashboards[org]) == uids
        provided = {s["uid"] for s in grafana.datasources[org].values()}
        for folder_uid, board in grafana.dashboards[org].values():
            assert folder_uid == f"aromatrack-{next(n for n, b in boards().items() if b['uid'] == board['uid']).split('/')[0]}"
            assert board["id"] is None
            assert set(datasource_uids(board)) <= provided, (name, board["uid"])
    assert all(audiences[s["uid"]].value in s["jsonData"]["dbName"] for org in grafana.datasources.values()
               for s in org.values())


def test_a_rerun_creates_nothing_and_leaves_the_same_state(grafana):
    assert provision(grafana).exit_code == 0
    first_creations = grafana.creations()
    state = json.dumps([grafana.orgs, grafana.datasources, grafana.folders, grafana.dashboards], sort_keys=True)

    assert provision(grafana).exit_code == 0
    assert grafana.creations() == first_creations
    assert json.dumps([grafana.orgs, grafana.datasources, grafana.folders, grafana.dashboards],
                      sort_keys=True) == state


def test_no_password_is_printed(grafana):
    result = provision(grafana)
    assert result.exit_code == 0
    for secret in (*READER_PASSWORDS.values(), ADMIN_PASSWORD):
        assert secret not in result.output
    assert Role.COACHING_READER.username in result.output


def test_a_refused_login_exits_1_with_the_reason_and_changes_nothing(grafana):
    result = provision(grafana, "wrong-password")
    assert result.exit_code == 1
    assert "Unauthorized" in result.output
    assert set(grafana.orgs) == {"Main Org."}
    assert not any(grafana.datasources.values()) and not any(grafana.dashboards.values())


def test_missing_reader_passwords_are_named_and_nothing_is_sent(grafana, monkeypatch):
    monkeypatch.delenv(Role.CLINICAL_READER.password_variable)
    result = provision(grafana)
    assert result.exit_code == 1
    assert Role.CLINICAL_READER.password_variable in result.output
    assert not grafana.requests


def test_a_board_naming_a_datasource_its_organisation_lacks_is_refused(tmp_path):
    import shutil

    from aromatrack.services.grafana import GRAFANA_DIR

    copy = tmp_path / "grafana"
    shutil.copytree(GRAFANA_DIR, copy)
    coach = copy / "dashboards" / "coaching" / "coach.json"
    board = json.loads(coach.read_text())
    board["panels"][0]["datasource"]["uid"] = "aromatrack-clinical"
    coach.write_text(json.dumps(board))
    with pytest.raises(ValueError, match="organisation Coaching does not have"):
        load_plan(copy)
