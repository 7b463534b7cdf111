"""`aromatrack evaluate` end to end on the committed timelines (a real subprocess)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

TIMELINES = Path(__file__).parent.parent / "timelines"
EXPECTED = {
    "fat_loss_unchanged_ai": ["recheck.fat_loss_unchanged_ai", "recheck.fat_loss_unchanged_ai"],
    "low_e2_on_ai": ["dose_review.low_e2_on_ai"],
    "e2_pmol_high": ["dose_review.high_e2"],
    "censored_immunoassay": ["recheck.e2_immunoassay_low"],
    "symptomatic_high_e2": ["dose_review.high_e2_symptomatic"],
    "dose_change_recheck": ["recheck.after_dose_change"],
    "trt_start_recheck": ["recheck.after_trt_start"],
    "stable_control": [],
    "noisy_and_impossible": [],
}


def evaluate(path):
    return subprocess.run([sys.executable, "-m", "aromatrack.services.cli", "evaluate", str(path), "--json"],
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
