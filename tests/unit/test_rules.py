"""Each rule on its own: fires on its situation, stays silent on the near misses."""

import re
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from aromatrack.domain import rules
from aromatrack.domain.correlation import E2Estimate
from aromatrack.domain.labs import Lab
from aromatrack.domain.rules import DAY_S, EventRef, RuleSettings, Situation, Symptoms

CFG = RuleSettings()
DRAW_S = 100 * DAY_S
DOSE_INSTRUCTION = re.compile(r"\b(increase|decrease|reduce|raise|lower|stop|take|start|pause)\b", re.I)


def e2(value, method="lc_msms", comparator=None, reference_low=None):
    return Lab("estradiol", value, "pg/mL", datetime.fromtimestamp(DRAW_S, timezone.utc), "e2-1",
               comparator=comparator, method=method, reference_low=reference_low)


def t(value=650.0):
    return Lab("testosterone_total", value, "ng/dL", datetime.fromtimestamp(DRAW_S, timezone.utc), "t-1")


def on_ai(**kw):
    base = dict(now_s=DRAW_S, phase="trt", anastrozole_weekly_mg=1.0, anastrozole_since=EventRef(0.0, "ai-1"),
                trt_start=EventRef(0.0, "trt-1"), last_e2_time_s=DRAW_S, last_t=t(), last_t_time_s=DRAW_S)
    return Situation(**(base | kw))


def test_low_lcms_e2_on_ai_with_t_in_range_is_a_dose_review():
    finding = rules.low_e2_on_ai(on_ai(last_e2=e2(15)), CFG)
    assert finding.kind == "dose_review" and finding.rule == "dose_review.low_e2_on_ai"
    assert {"e2-1", "t-1", "ai-1"} <= {i for ev in finding.evidence for i in ev.event_ids}


@pytest.mark.parametrize("situation", [
    on_ai(last_e2=e2(25)),  # in range
    on_ai(last_e2=e2(15), anastrozole_weekly_mg=0.0),  # not on an AI
    on_ai(last_e2=e2(15), last_t=t(200)),  # T below range: not this rule
    on_ai(last_e2=e2(15), last_t=None, last_t_time_s=None),  # no T
    on_ai(last_e2=e2(15, method="immunoassay")),  # immunoassay: recheck instead
])
def test_low_e2_near_misses_stay_silent(situation):
    assert rules.low_e2_on_ai(situation, CFG) is None


def test_e2_at_the_labs_low_reference_counts_as_low():
    assert rules.low_e2_on_ai(on_ai(last_e2=e2(22, reference_low=22)), CFG) is not None


@pytest.mark.parametrize("lab", [e2(24, method="immunoassay", comparator="<"), e2(15, method="immunoassay"), e2(12, method=None)])
def test_low_or_censored_immunoassay_is_a_lab_recheck(lab):
    finding = rules.immunoassay_low_e2(on_ai(last_e2=lab), CFG)
    assert finding.kind == "lab_recheck" and "LC/MS-MS" in finding.summary
    assert rules.low_e2_on_ai(on_ai(last_e2=lab), CFG) is None


def test_immunoassay_in_range_is_silent():
    assert rules.immunoassay_low_e2(on_ai(last_e2=e2(30, method="immunoassay")), CFG) is None


def test_high_e2():
    assert rules.high_e2(on_ai(last_e2=e2(61)), CFG).rule == "dose_review.high_e2"
    assert rules.high_e2(on_ai(last_e2=e2(60)), CFG) is None
    assert rules.high_e2(on_ai(last_e2=e2(1500, comparator=">")), CFG) is not None


def test_high_e2_with_symptoms():
    symptoms = (Symptoms(DRAW_S - 3 * DAY_S, frozenset({"water_retention"}), "s-1"),)
    finding = rules.high_e2_symptomatic(on_ai(last_e2=e2(45), symptoms=symptoms), CFG)
    assert finding.rule == "dose_review.high_e2_symptomatic" and "s-1" in finding.situation
    assert rules.high_e2_symptomatic(on_ai(last_e2=e2(45)), CFG) is None  # no symptoms
    assert rules.high_e2_symptomatic(on_ai(last_e2=e2(38), symptoms=symptoms), CFG) is None
    far = (Symptoms(DRAW_S - 40 * DAY_S, frozenset({"water_retention"}), "s-0"),)
    assert rules.high_e2_symptomatic(on_ai(last_e2=e2(45), symptoms=far), CFG) is None


def test_recheck_after_trt_start_is_due_at_six_weeks_without_a_draw():
    start = EventRef(0.0, "trt-1")
    due = Situation(now_s=42 * DAY_S, phase="trt", trt_start=start)
    assert rules.recheck_after_trt_start(due, CFG).situation == ("trt-1",)
    assert rules.recheck_after_trt_start(replace(due, now_s=41 * DAY_S), CFG) is None
    drawn = replace(due, last_e2=e2(30), last_e2_time_s=40 * DAY_S)
    assert rules.recheck_after_trt_start(drawn, CFG) is None


def test_recheck_after_dose_change():
    change = EventRef(200 * DAY_S, "dose-2")
    due = on_ai(last_e2=e2(30), last_dose_change=change, now_s=243 * DAY_S)
    assert rules.recheck_after_dose_change(due, CFG).rule == "recheck.after_dose_change"
    assert rules.recheck_after_dose_change(replace(due, now_s=230 * DAY_S), CFG) is None
    assert rules.recheck_after_dose_change(replace(due, last_e2_time_s=220 * DAY_S), CFG) is None


def test_interval_recheck_is_shorter_while_body_composition_changes():
    stable = on_ai(last_e2=e2(30), now_s=DRAW_S + 120 * DAY_S, body_fat_slope=0.0, body_fat_now=20, body_fat_at_last_e2=20)
    assert rules.interval_recheck(stable, CFG) is None
    assert rules.interval_recheck(replace(stable, now_s=DRAW_S + 183 * DAY_S), CFG).rule == "recheck.interval_stable"
    changing = replace(stable, body_fat_slope=-0.4)
    assert rules.interval_recheck(changing, CFG).rule == "recheck.interval_body_comp_changing"


def test_fat_loss_on_unchanged_ai_dose():
    base = on_ai(last_e2=e2(34), body_fat_now=22.5, body_fat_at_last_e2=26.0, body_fat_slope=-0.35)
    finding = rules.fat_loss_unchanged_ai(base, CFG)
    assert finding.kind == "lab_recheck" and finding.situation == ("e2-1", "ai-1")
    assert rules.fat_loss_unchanged_ai(replace(base, body_fat_now=24.0), CFG) is None  # 2 points: not yet
    changed_after = replace(base, anastrozole_since=EventRef(DRAW_S + DAY_S, "ai-2"))
    assert rules.fat_loss_unchanged_ai(changed_after, CFG) is None


def test_fat_loss_fires_early_when_the_estimate_crosses_below_range():
    base = on_ai(last_e2=e2(24), body_fat_now=24.5, body_fat_at_last_e2=26.0,
                 e2_estimate=E2Estimate(18.0, 4.0, 5))
    finding = rules.fat_loss_unchanged_ai(base, CFG)
    assert finding.severity == "warning"
    assert any(ev.name == "prediction_method" and ev.value == "per_athlete_fit" for ev in finding.evidence)
    assert rules.fat_loss_unchanged_ai(replace(base, last_e2=e2(15)), CFG) is None  # already low: other rules


def test_low_e2_symptoms_during_fat_loss():
    symptoms = (Symptoms(DRAW_S - DAY_S, frozenset({"joint_pain", "brain_fog"}), "s-1"),)
    base = on_ai(last_e2=e2(30), body_fat_slope=-0.3, symptoms=symptoms)
    assert rules.low_e2_symptoms_fat_loss(base, CFG).kind == "lab_recheck"
    assert rules.low_e2_symptoms_fat_loss(replace(base, body_fat_slope=0.0), CFG) is None
    one = (Symptoms(DRAW_S - DAY_S, frozenset({"joint_pain"}), "s-1"),)
    assert rules.low_e2_symptoms_fat_loss(replace(base, symptoms=one), CFG) is None


def every_finding():
    symptoms = (Symptoms(DRAW_S - DAY_S, frozenset({"joint_pain", "brain_fog", "water_retention"}), "s-1"),)
    situations = [
        on_ai(last_e2=e2(15)), on_ai(last_e2=e2(24, "immunoassay", "<")), on_ai(last_e2=e2(70)),
        on_ai(last_e2=e2(45), symptoms=symptoms, body_fat_slope=-0.3),
        Situation(now_s=50 * DAY_S, phase="trt", trt_start=EventRef(0.0, "x")),
        on_ai(last_e2=e2(30), last_dose_change=EventRef(DRAW_S + DAY_S, "d"), now_s=DRAW_S + 50 * DAY_S),
        on_ai(last_e2=e2(34), body_fat_now=22, body_fat_at_last_e2=26, now_s=DRAW_S + 200 * DAY_S),
    ]
    return [f for s in situations for f in rules.evaluate(s, CFG)]


def test_every_rule_is_covered_by_the_sample_and_names_sources():
    findings = every_finding()
    assert {f.rule.split(".")[0] for f in findings} == {"dose_review", "recheck"}
    assert len({f.rule for f in findings}) >= 9
    assert all(f.sources and f.evidence for f in findings)


def test_no_summary_tells_anyone_to_change_a_dose():
    for finding in every_finding():
        assert not DOSE_INSTRUCTION.search(finding.summary), finding.summary
        assert finding.summary.endswith(".") and finding.summary.count(". ") == 0
