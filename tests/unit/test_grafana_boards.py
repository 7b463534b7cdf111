"""The provisioned boards are well-formed and keep clinical data out of the coaching folder."""

from __future__ import annotations

import re

import yaml

from aromatrack.schemas import series

from ..grafana_boards import DASHBOARDS, boards, queries

CLINICAL = {series.LAB.measurement, series.DOSE.measurement, series.ALERTS.measurement,
            series.E2_CORRELATION.measurement, series.SYMPTOMS.measurement}
DATASOURCE_UID = yaml.safe_load(
    (DASHBOARDS.parent / "provisioning" / "datasources" / "influxdb.yaml").read_text()
)["datasources"][0]["uid"]


def measurements_in(query: str) -> set[str]:
    return set(re.findall(r'FROM\s+"(\w+)"', query))


def test_there_is_a_coach_an_athlete_and_a_clinician_board_in_two_folders():
    assert set(boards()) == {"coaching/coach.json", "coaching/athlete.json", "clinical/clinician.json"}


def test_boards_are_complete_and_use_the_provisioned_datasource():
    for name, board in boards().items():
        assert board["uid"].startswith("aromatrack-") and board["schemaVersion"] >= 39, name
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == DATASOURCE_UID, (name, panel["title"])
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), (name, panel["title"])
            assert panel["targets"], (name, panel["title"])


def test_every_query_reads_only_measurements_of_the_series_contract():
    known = {s.measurement for s in series.ALL_SERIES}
    for name, board in boards().items():
        for where, query in queries(board):
            assert measurements_in(query) and measurements_in(query) <= known, (name, where, query)


def test_coaching_boards_never_read_labs_doses_symptoms_or_alerts():
    for name, board in boards().items():
        if name.startswith("coaching/"):
            for where, query in queries(board):
                assert not measurements_in(query) & CLINICAL, (name, where)


def test_the_clinician_board_shows_labs_body_fat_load_doses_alerts_and_the_estimate():
    board = boards()["clinical/clinician.json"]
    read = set().union(*(measurements_in(q) for _, q in queries(board)))
    assert {"lab", "body_fat_trend", "training_load_daily", "dose", "alerts", "e2_correlation"} <= read
    assert {a["name"] for a in board["annotations"]["list"]} == {"Dose changes", "Alerts"}
