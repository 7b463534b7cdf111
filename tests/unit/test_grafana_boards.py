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


def panel_of(board: str, title_part: str) -> dict:
    (panel,) = [p for p in boards()[board]["panels"] if title_part in p["title"]]
    return panel


def properties(panel: dict, name: str) -> dict:
    (found,) = [o for o in panel["fieldConfig"]["overrides"] if o["matcher"]["options"] == name]
    return {p["id"]: p["value"] for p in found["properties"]}


def test_weeks_start_on_monday_in_every_board():
    for name, board in boards().items():
        for query in queries(board):
            assert "time(7d)" not in query.influxql.replace(" ", ""), (name, query.where)  # a Thursday week


def test_the_athlete_board_shows_only_the_signed_in_athlete():
    board = boards()["coaching/athlete.json"]
    assert [v["name"] for v in board["templating"]["list"]] == ["workout"]
    for query in queries(board):
        assert "\"athlete_id\" = '${__user.login}'" in query.influxql, query.where


def test_the_performance_manager_has_load_bars_ctl_atl_lines_and_tsb_on_its_own_shaded_axis():
    for board, who in (("coaching/coach.json", "$athlete:"), ("coaching/athlete.json", "Your")):
        panel = panel_of(board, f"{who} Performance Manager")
        assert properties(panel, "daily load")["custom.drawStyle"] == "bars"
        form = properties(panel, "TSB (form)")
        assert form["custom.axisPlacement"] == "right" and form["custom.thresholdsStyle"]["mode"] == "area"
        assert [s["value"] for s in form["thresholds"]["steps"]] == [None, -30, -10, 5, 25]
        assert "derivative(last(\"ctl\"), 7d)" in panel_of(board, f"{who} ramp rate")["targets"][0]["query"]


def test_team_tables_date_their_rows_link_to_the_athlete_and_band_acwr():
    team = panel_of("coaching/coach.json", "Team: fitness")
    query = team["targets"][0]["query"]
    assert query.count("last(") == 1  # one selector: the other fields and the time are of that same day
    assert properties(team, "Time")["displayName"] == "as of"
    assert [s["value"] for s in properties(team, "ACWR")["thresholds"]["steps"]] == [None, 0.8, 1.3, 1.5]
    for title in ("Team: fitness", "Team: load of the last complete week", "Team: body-fat change"):
        links = panel_of("coaching/coach.json", title)["fieldConfig"]["defaults"]["links"]
        assert "var-athlete=${__data.fields.athlete_id}" in links[0]["url"]
    assert "time <= ${__to}ms - 7d" in panel_of("coaching/coach.json", "last complete week")["targets"][0]["query"]
    change = panel_of("coaching/coach.json", "Team: body-fat change")["targets"][0]["query"]
    assert "${__to}ms - 28d" in change and "GROUP BY time" not in change  # real readings, not a stale bucket


def test_modality_share_is_load_weighted_and_stacked_to_100_percent():
    panel = panel_of("coaching/coach.json", "modality mix")
    assert panel["options"]["stacking"] == "percent" and 'sum("load")' in panel["targets"][0]["query"]


def test_workouts_are_newest_first_with_durations_and_a_trace_per_workout():
    workouts = panel_of("coaching/athlete.json", "Your workouts")
    assert workouts["targets"][0]["query"].endswith("ORDER BY time DESC")
    assert properties(workouts, "duration_s")["unit"] == "dtdurations"
    trace = panel_of("coaching/athlete.json", "heart rate (bpm) and power")
    assert "workout_samples" in trace["targets"][0]["query"] and "'$workout'" in trace["targets"][0]["query"]


def test_every_panel_states_its_units_or_is_a_table_of_labelled_columns():
    for name, board in boards().items():
        for panel in board["panels"]:
            if panel["type"] in ("timeseries", "barchart", "xychart"):
                assert panel["fieldConfig"]["defaults"].get("unit"), (name, panel["title"])
            assert panel["description"], (name, panel["title"])
