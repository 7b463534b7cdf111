"""The provisioned boards are well-formed, and every query reads only what its datasource's audience may read."""

from __future__ import annotations

from aromatrack.schemas import series
from aromatrack.schemas.series import Audience

from ..grafana_boards import boards, datasource_audiences, measurements_in, queries

AUDIENCES = datasource_audiences()


def test_there_is_a_coach_an_athlete_and_a_clinician_board_in_two_folders():
    assert set(boards()) == {"coaching/coach.json", "coaching/athlete.json", "clinical/clinician.json"}


def test_boards_are_complete_and_use_a_provisioned_datasource():
    for name, board in boards().items():
        assert board["uid"].startswith("aromatrack-") and board["schemaVersion"] >= 39, name
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] in AUDIENCES, (name, panel["title"])
            assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), (name, panel["title"])
            assert panel["targets"], (name, panel["title"])


def test_the_measurement_finder_sees_quoted_unquoted_and_subquery_sources():
    assert measurements_in('SELECT "value" FROM lab WHERE x') == {"lab"}
    assert measurements_in('SELECT last(w) FROM (SELECT sum(load) FROM "training_load_daily") GROUP BY a') == {
        "training_load_daily"}
    assert measurements_in("select value from dose") == {"dose"}


def test_every_query_reads_measurements_its_datasource_database_holds():
    for name, board in boards().items():
        for query in queries(board):
            read = measurements_in(query.influxql)
            audience = AUDIENCES[query.datasource_uid]
            held = {s.measurement for s in series.ALL_SERIES if s.fields_for(audience)}
            assert read and read <= held, (name, query.where, query.influxql)


def test_coaching_boards_use_only_the_coaching_datasource():
    for name, board in boards().items():
        if name.startswith("coaching/"):
            for query in queries(board):
                assert AUDIENCES[query.datasource_uid] is Audience.COACHING, (name, query.where)
                assert "change_since_e2" not in query.influxql, (name, query.where)


def test_the_clinician_board_shows_labs_body_fat_load_doses_alerts_and_the_estimate():
    board = boards()["clinical/clinician.json"]
    read = set().union(*(measurements_in(q.influxql) for q in queries(board)))
    assert {"lab", "body_fat_trend", "training_load_daily", "dose", "alerts", "e2_correlation"} <= read
    assert {a["name"] for a in board["annotations"]["list"]} == {"Dose changes", "Alerts"}
