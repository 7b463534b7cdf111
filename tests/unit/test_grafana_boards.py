"""The provisioned boards are well-formed, and every query reads only what its datasource's audience may read."""

from __future__ import annotations

from aromatrack.domain.rules import RuleSettings
from aromatrack.schemas import series
from aromatrack.schemas.series import Audience
from aromatrack.services.grafana import MIXED

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
            if panel["datasource"]["uid"] == MIXED:  # then every target names its own
                assert all(target["datasource"]["uid"] in AUDIENCES for target in panel["targets"]), panel["title"]
            else:
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


def clinician_panel(title_part: str) -> dict:
    (panel,) = [p for p in boards()["clinical/clinician.json"]["panels"] if title_part in p["title"]]
    return panel


def test_e2_is_drawn_in_pg_ml_with_lines_at_the_rule_thresholds_and_t_on_its_own_axis():
    panel = clinician_panel("estradiol (pg/mL)")
    defaults = panel["fieldConfig"]["defaults"]
    steps = [step["value"] for step in defaults["thresholds"]["steps"][1:]]
    assert steps == [RuleSettings().e2_low_pg_ml, RuleSettings().e2_high_pg_ml]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line" and "pg/mL" in defaults["unit"]
    overrides = {o["matcher"]["options"]: {p["id"]: p["value"] for p in o["properties"]}
                 for o in panel["fieldConfig"]["overrides"]}
    assert overrides["^total T.*"]["custom.axisPlacement"] == "right"
    assert overrides["^E2 censored.*"]["custom.drawStyle"] == "points"
    (e2,) = [t for t in panel["targets"] if "'estradiol'" in t["query"]]
    assert 'GROUP BY "method", "censored"' in e2["query"]  # censored and assay method are their own series
    renamed = [t["options"]["renamePattern"] for t in panel["transformations"]]
    assert any(name.startswith("E2 censored") for name in renamed)


def test_doses_are_step_lines_carried_to_the_end_of_the_range_with_anastrozole_on_its_own_axis():
    panel = clinician_panel("doses")
    (target,) = panel["targets"]
    assert "fill(previous)" in target["query"] and "${__to}" in target["query"]
    assert "$timeFilter" not in target["query"]  # the last change may be older than the range
    assert panel["fieldConfig"]["defaults"]["custom"]["lineInterpolation"] == "stepAfter"
    (override,) = panel["fieldConfig"]["overrides"]
    assert "anastrozole" in override["matcher"]["options"]
    assert {"id": "custom.axisPlacement", "value": "right"} in override["properties"]


def test_the_clinician_sees_weekly_load_symptoms_other_labs_and_an_overview_over_a_year():
    board = boards()["clinical/clinician.json"]
    assert board["time"]["from"] == "now-1y"
    load = clinician_panel("weekly training load")
    assert load["type"] == "timeseries" and "GROUP BY time(7d, 4d)" in load["targets"][0]["query"]
    assert clinician_panel("symptoms (counts")["type"] == "timeseries"
    assert "!~ /^(estradiol|testosterone_total)$/" in clinician_panel("safety labs")["targets"][0]["query"]
    assert clinician_panel("E2 against body fat")["type"] == "xychart"
    overview = [p for p in board["panels"] if p["title"].startswith("Your athletes")]
    assert len(overview) == 3
    for panel in overview:
        assert "athlete_id" not in panel["targets"][0]["query"].split("WHERE")[1].split("GROUP BY")[0]
        assert "var-athlete=${__data.fields.athlete_id}" in panel["fieldConfig"]["defaults"]["links"][0]["url"]
