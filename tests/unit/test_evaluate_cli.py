"""`aromatrack evaluate` end to end on the committed timelines (a real subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

TIMELINES = Path(__file__).parent.parent / "timelines"
EXPECTED = {
    "fat_loss_unchanged_ai": ["recheck.fat_loss_unchanged_ai"],
    "low_e2_on_ai": ["dose_review.low_e2_on_ai"],
    "e2_pmol_high": ["dose_review.high_e2"],
    "censored_immunoassay": ["recheck.e2_immunoassay_low"],
    "symptomatic_high_e2": ["dose_review.high_e2_symptomatic"],
    "dose_change_recheck": ["recheck.after_dose_change"],
    "trt_start_recheck": ["recheck.after_trt_start"],
    "trt_start_then_silence": [],  # the recheck falls due after the last event: see the --as-of test
    "crashed_e2_without_t": ["recheck.fat_loss_unchanged_ai", "dose_review.low_e2_on_ai"],
    "dose_reduced_after_low_e2": ["dose_review.low_e2_on_ai", "recheck.after_dose_change"],
    "post_trt_recovery_overload": ["training_review.post_trt_recovery_overload"],
    "post_trt_recovery_steady": [],
    "baseline_before_training_change": ["recheck.baseline_before_training_change"],
    "baseline_drawn_before_training_change": [],
    "ai_lipids_and_bone_worsen": ["dose_review.ai_hdl_fall", "dose_review.ai_ldl_rise", "dose_review.ai_bone_density_fall"],
    "ai_lipids_and_bone_stable": [],
    "stable_control": [],
    "noisy_and_impossible": [],
}


def evaluate(path, *options):
    return subprocess.run([sys.executable, "-m", "aromatrack.services.cli", "evaluate", str(path), "--json", *options],
                          capture_output=True, text=True)


def test_every_timeline_has_an_expectation():
    assert {p.stem for p in TIMELINES.glob("*.jsonl")} == set(EXPECTED)


@pytest.fixture(scope="module")
def results():
    return {name: evaluate(TIMELINES / f"{name}.jsonl") for name in EXPECTED}


@pytest.mark.parametrize("name", EXPECTED)
def test_timeline_raises_exactly_its_alerts(results, name):
    result = results[name]
    assert result.returncode == 0, result.stderr
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["rule"] for a in alerts] == EXPECTED[name]
    for alert in alerts:
        assert alert["evidence"] and alert["sources"] and alert["alert_id"]


def test_e2_in_pmol_is_compared_in_pg_ml(results):
    alert = json.loads(results["e2_pmol_high"].stdout)
    e2 = next(ev for ev in alert["evidence"] if ev["name"] == "estradiol")
    assert e2["unit"] == "pg/mL" and e2["value"] == pytest.approx(260 / 3.671, abs=0.01)


def test_censored_immunoassay_is_never_a_dose_review(results):
    alert = json.loads(results["censored_immunoassay"].stdout)
    assert alert["kind"] == "lab_recheck"
    assert {"name": "estradiol", "value": "<24", "unit": "pg/mL", "event_ids": alert["evidence"][0]["event_ids"]} == alert["evidence"][0]


def test_bad_lines_and_impossible_readings_go_to_stderr(results):
    stderr = results["noisy_and_impossible"].stderr.splitlines()
    assert sum("noisy_and_impossible.jsonl:" in line and "reading rejected" not in line for line in stderr) == 3
    assert sum("reading rejected" in line for line in stderr) == 2
    assert any("body_fat_pct: Input should be less than or equal to 75" in line for line in stderr)


def test_input_order_does_not_matter(tmp_path, results):
    lines = (TIMELINES / "fat_loss_unchanged_ai.jsonl").read_text().splitlines()
    reversed_file = tmp_path / "reversed.jsonl"
    reversed_file.write_text("\n".join(reversed(lines)) + "\n")
    assert evaluate(reversed_file).stdout == results["fat_loss_unchanged_ai"].stdout


def test_the_clock_raises_the_recheck_after_trt_start_with_nothing_sent_after_it():
    path = TIMELINES / "trt_start_then_silence.jsonl"
    before_due = evaluate(path, "--as-of", "2025-04-13T07:00:00Z")
    assert before_due.returncode == 0 and before_due.stdout == ""
    result = evaluate(path, "--as-of", "2025-05-15")
    alerts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["rule"], a["time"]) for a in alerts] == [("recheck.after_trt_start", "2025-04-14T08:00:00Z")]  # day 42


def test_a_crashed_e2_without_t_shows_the_e2_and_asks_for_t(results):
    alert = json.loads(results["crashed_e2_without_t"].stdout.splitlines()[-1])
    assert "8 pg/mL is below the 20 pg/mL floor" in alert["summary"] and "no total T drawn" in alert["summary"]
    assert {e["name"]: e["value"] for e in alert["evidence"]}["e2_reference_range"] == "7.6-42.6"


def test_one_line_per_alert_in_its_final_version_and_history_shows_updates(tmp_path):
    lines = [json.dumps({"type": "lab.result", "athlete_id": "h", "time": "2025-03-01T07:00:00Z", "analyte": "estradiol",
                         "value": 48, "unit": "pg/mL", "method": "lc_msms"})]
    lines += [json.dumps({"type": "symptom.log", "athlete_id": "h", "time": f"2025-03-0{day}T21:00:00Z",
                          "symptoms": ["water_retention", "mood_swings"]}) for day in (2, 3, 4)]
    path = tmp_path / "updates.jsonl"
    path.write_text("\n".join(lines) + "\n")
    final = [json.loads(line) for line in evaluate(path).stdout.splitlines()]
    history = [json.loads(line) for line in evaluate(path, "--history").stdout.splitlines()]
    assert [(a["rule"], a["version"]) for a in final] == [("dose_review.high_e2_symptomatic", 3)]
    assert [a["version"] for a in history] == [1, 2, 3] and {a["alert_id"] for a in history} == {final[0]["alert_id"]}


def test_the_recovery_overload_names_the_labs_to_watch_for_the_clinician_and_the_coach(results):
    alert = json.loads(results["post_trt_recovery_overload"].stdout)
    assert alert["kind"] == "training_review" and alert["time"].startswith("2025-08-04")  # the block's 7th day
    evidence = {e["name"]: e["value"] for e in alert["evidence"]}
    assert evidence["labs_to_watch"] == "LH, FSH, total T and E2" and evidence["acwr"] > 1.5
    assert any("not from the seeds" in s for s in alert["sources"])
