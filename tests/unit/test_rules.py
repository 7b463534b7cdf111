"""Each rule on its own: fires on its situation, stays silent on the near misses."""

import re
from dataclasses import asdict, replace
from datetime import datetime, timezone

import pytest

from aromatrack.domain import rules
from aromatrack.domain.correlation import E2Estimate
from aromatrack.domain.labs import Lab
from aromatrack.domain.rules import DAY_S, EventRef, RuleSettings, Situation, Symptoms, TrainingStatus

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
    on_ai(last_e2=e2(15, method="immunoassay")),  # immunoassay: recheck instead
    on_ai(last_e2=e2(15), last_dose_event=EventRef(DRAW_S + 2 * DAY_S, "ai-2")),  # answered by a dose change
    on_ai(last_e2=e2(15), last_dose_event=EventRef(DRAW_S, "ai-2")),  # a change at the draw's time: drawn first
])
def test_low_e2_near_misses_stay_silent(situation):
    assert rules.low_e2_on_ai(situation, CFG) is None


def test_a_crashed_e2_without_t_is_never_silent_it_asks_for_t_and_e2():
    finding = rules.low_e2_on_ai(on_ai(last_e2=e2(8), last_t=None, last_t_time_s=None), CFG)
    assert finding.kind == "dose_review" and finding.anchor == ("e2-1",) and finding.evidence_events == ()
    assert "no total T drawn" in finding.summary and "total T and E2 (LC/MS-MS)" in finding.summary
    assert {"name": "estradiol", "value": 8, "unit": "pg/mL", "event_ids": ("e2-1",)} in [asdict(e) for e in finding.evidence]
    stale_t = rules.low_e2_on_ai(on_ai(last_e2=e2(8), last_t_time_s=DRAW_S - 30 * DAY_S), CFG)
    assert "no total T drawn" in stale_t.summary  # a T a month away is not the panel's


@pytest.mark.parametrize("t_lab", [t(200), t(1100), Lab("testosterone_total", 50, "ng/dL",
                                   datetime.fromtimestamp(DRAW_S, timezone.utc), "t-1", comparator="<")])
def test_a_crashed_e2_with_t_out_of_range_shows_both_numbers(t_lab):
    finding = rules.low_e2_on_ai(on_ai(last_e2=e2(8), last_t=t_lab), CFG)
    assert finding.kind == "dose_review" and "not within its 264-916 ng/dL range" in finding.summary
    named = {e.name: e.value for e in finding.evidence}
    assert named["estradiol"] == 8 and named["testosterone_total"] == t_lab.shown()
    assert finding.evidence_events == ("t-1",)


def test_below_range_wording_names_the_limit_and_shows_the_labs_range():
    inside_lab_range = rules.low_e2_on_ai(on_ai(last_e2=replace(e2(15, reference_low=7.6), reference_high=42.6)), CFG)
    assert "below the 20 pg/mL floor" in inside_lab_range.summary and "below range" not in inside_lab_range.summary
    assert {e.name: e.value for e in inside_lab_range.evidence}["e2_reference_range"] == "7.6-42.6"
    at_lab_low = rules.low_e2_on_ai(on_ai(last_e2=e2(22, reference_low=22)), CFG)
    assert "at or below the lab's low reference of 22 pg/mL" in at_lab_low.summary


def test_the_t_range_is_credited_to_its_source():
    default = rules.low_e2_on_ai(on_ai(last_e2=e2(15)), CFG)
    assert any("CDC-harmonised" in x and "Endocrine Society 2018" in x and "not from the seeds" in x for x in default.sources)
    assert not any("AUA" in x for x in default.sources)
    own = replace(t(), reference_low=300.0, reference_high=1000.0)
    assert rules.LAB_T_RANGE_SOURCE in rules.low_e2_on_ai(on_ai(last_e2=e2(15), last_t=own), CFG).sources


@pytest.mark.parametrize("rule,lab", [(rules.high_e2, e2(75)), (rules.low_e2_on_ai, e2(15))])
def test_a_dose_change_after_the_draw_answers_its_dose_review(rule, lab):
    assert rule(on_ai(last_e2=lab, last_dose_event=EventRef(DRAW_S - DAY_S, "ai-1")), CFG) is not None
    assert rule(on_ai(last_e2=lab, last_dose_event=EventRef(DRAW_S + 2 * DAY_S, "ai-2")), CFG) is None


@pytest.mark.parametrize("comparator,value,low", [("<", 20, True), ("<=", 20, False), ("<=", 19.9, True)])
def test_censored_comparators_are_kept_distinct(comparator, value, low):
    # "<20" is surely under the 20 floor; "<=20" may be exactly 20, which is not under it
    assert rules.e2_is_low(e2(value, comparator=comparator), CFG) == low


def test_repeated_low_results_without_lc_msms_escalate():
    first = rules.immunoassay_low_e2(on_ai(last_e2=e2(15, method=None), unconfirmed_low_e2=1), CFG)
    second = rules.immunoassay_low_e2(on_ai(last_e2=e2(15, method=None), unconfirmed_low_e2=2), CFG)
    assert (first.severity, second.severity) == ("info", "warning")
    assert "2 times in a row" in second.summary and "never confirmed by LC/MS-MS" in second.summary
    assert any("not from the seeds" in x for x in first.sources)


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
    symptoms = (Symptoms(DRAW_S - 3 * DAY_S, frozenset({"water_retention"}), "s-1"),
                Symptoms(DRAW_S + 2 * DAY_S, frozenset({"nipple_sensitivity"}), "s-2"))
    finding = rules.high_e2_symptomatic(on_ai(last_e2=e2(45), symptoms=symptoms), CFG)
    assert finding.rule == "dose_review.high_e2_symptomatic" and finding.anchor == ("e2-1",)
    assert finding.evidence_events == ("s-1", "s-2")
    assert rules.high_e2_symptomatic(on_ai(last_e2=e2(45)), CFG) is None  # no symptoms
    assert rules.high_e2_symptomatic(on_ai(last_e2=e2(38), symptoms=symptoms), CFG) is None
    far = (Symptoms(DRAW_S - 40 * DAY_S, frozenset({"water_retention", "mood_swings"}), "s-0"),)
    assert rules.high_e2_symptomatic(on_ai(last_e2=e2(45), symptoms=far), CFG) is None


@pytest.mark.parametrize("names,fires", [
    ({"water_retention"}, False),  # one symptom: both sides need two
    ({"water_retention", "mood_swings"}, True),
    ({"low_libido", "water_retention"}, True),
    ({"low_libido", "fatigue"}, False),  # low libido is shared; fatigue is the other side's
])
def test_the_symptom_rules_count_alike_and_low_libido_never_decides(names, fires):
    high = on_ai(last_e2=e2(45), symptoms=(Symptoms(DRAW_S - DAY_S, frozenset(names), "s-1"),))
    assert (rules.high_e2_symptomatic(high, CFG) is not None) == fires
    mirrored = {"water_retention": "joint_pain", "mood_swings": "brain_fog", "fatigue": "water_retention"}
    low_names = frozenset(mirrored.get(n, n) for n in names)
    low = on_ai(last_e2=e2(30), body_fat_slope=-0.3, now_s=DRAW_S + 3 * DAY_S,
                symptoms=(Symptoms(DRAW_S + DAY_S, low_names, "s-1"),))
    assert (rules.low_e2_symptoms_fat_loss(low, CFG) is not None) == fires


def test_recheck_after_trt_start_is_due_at_six_weeks_without_a_draw():
    start = EventRef(0.0, "trt-1")
    due = Situation(now_s=42 * DAY_S, phase="trt", trt_start=start)
    finding = rules.recheck_after_trt_start(due, CFG)
    assert finding.anchor == ("trt-1",) and "total T and E2 (LC/MS-MS)" in finding.summary
    assert rules.recheck_after_trt_start(replace(due, now_s=41 * DAY_S), CFG) is None
    drawn = replace(due, last_e2=e2(30), last_e2_time_s=40 * DAY_S)
    assert rules.recheck_after_trt_start(drawn, CFG) is None


def test_recheck_after_dose_change():
    change = EventRef(200 * DAY_S, "dose-2")
    due = on_ai(last_e2=e2(30), last_dose_change=change, now_s=243 * DAY_S)
    assert rules.recheck_after_dose_change(due, CFG).rule == "recheck.after_dose_change"
    assert rules.recheck_after_dose_change(replace(due, now_s=230 * DAY_S), CFG) is None
    assert rules.recheck_after_dose_change(replace(due, last_e2_time_s=220 * DAY_S), CFG) is None
    # a draw at the change's own time was taken before it: the recheck is still due
    assert rules.recheck_after_dose_change(replace(due, last_e2_time_s=200 * DAY_S), CFG) is not None


def test_interval_recheck_names_the_panel():
    finding = rules.interval_recheck(on_ai(last_e2=e2(30), now_s=DRAW_S + 190 * DAY_S), CFG)
    assert "total T, E2 (LC/MS-MS), CBC and CMP" in finding.summary
    assert any("seed 001 says quarterly" in x for x in finding.sources)


def test_the_clock_knows_when_the_next_recheck_falls_due():
    started = Situation(now_s=DAY_S, phase="trt", trt_start=EventRef(0.0, "trt-1"))
    assert rules.next_due_s(started, CFG) == 42 * DAY_S
    assert rules.next_due_s(replace(started, now_s=42 * DAY_S), CFG) is None  # due now, nothing later
    drawn = on_ai(last_e2=e2(30), now_s=DRAW_S + DAY_S)
    assert rules.next_due_s(drawn, CFG) == DRAW_S + 182 * DAY_S


def test_interval_recheck_is_shorter_while_body_composition_changes():
    stable = on_ai(last_e2=e2(30), now_s=DRAW_S + 120 * DAY_S, body_fat_slope=0.0, body_fat_now=20, body_fat_at_last_e2=20)
    assert rules.interval_recheck(stable, CFG) is None
    assert rules.interval_recheck(replace(stable, now_s=DRAW_S + 183 * DAY_S), CFG).rule == "recheck.interval_stable"
    changing = replace(stable, body_fat_slope=-0.4)
    assert rules.interval_recheck(changing, CFG).rule == "recheck.interval_body_comp_changing"


def test_fat_loss_on_unchanged_ai_dose():
    base = on_ai(last_e2=e2(34), body_fat_now=22.5, body_fat_at_last_e2=26.0, body_fat_slope=-0.35)
    finding = rules.fat_loss_unchanged_ai(base, CFG)
    assert finding.kind == "lab_recheck" and finding.anchor == ("e2-1", "ai-1")
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
    symptoms = (Symptoms(DRAW_S + DAY_S, frozenset({"joint_pain", "brain_fog"}), "s-1"),)
    base = on_ai(last_e2=e2(30), body_fat_slope=-0.3, symptoms=symptoms, now_s=DRAW_S + 2 * DAY_S)
    assert rules.low_e2_symptoms_fat_loss(base, CFG).kind == "lab_recheck"
    assert rules.low_e2_symptoms_fat_loss(replace(base, body_fat_slope=0.0), CFG) is None
    one = (Symptoms(DRAW_S + DAY_S, frozenset({"joint_pain"}), "s-1"),)
    assert rules.low_e2_symptoms_fat_loss(replace(base, symptoms=one), CFG) is None


def test_a_normal_draw_answers_the_low_e2_symptoms_logged_before_it():
    before = (Symptoms(DRAW_S - DAY_S, frozenset({"joint_pain", "brain_fog"}), "s-1"),)
    after_normal_draw = on_ai(last_e2=e2(30), body_fat_slope=-0.3, symptoms=before, now_s=DRAW_S + DAY_S)
    assert rules.low_e2_symptoms_fat_loss(after_normal_draw, CFG) is None
    no_draw_yet = replace(after_normal_draw, last_e2=None, last_e2_time_s=None)
    assert rules.low_e2_symptoms_fat_loss(no_draw_yet, CFG) is not None


def overloaded(**kw):
    training = TrainingStatus(acwr=1.8, ctl=60, atl=108, high_acwr_days=7, high_acwr_since=EventRef(DRAW_S, "w-1"))
    return Situation(now_s=DRAW_S + 7 * DAY_S, phase="post_trt_recovery", training=replace(training, **kw))


def test_a_sustained_very_high_load_in_post_trt_recovery_is_a_training_review():
    finding = rules.post_trt_recovery_overload(overloaded(), CFG)
    assert finding.kind == "training_review" and finding.anchor == ("w-1",)
    assert {e.name: e.value for e in finding.evidence}["labs_to_watch"] == "LH, FSH, total T and E2"
    assert rules.post_trt_recovery_overload(overloaded(high_acwr_days=6), CFG) is None  # not yet a week
    assert rules.post_trt_recovery_overload(replace(overloaded(), phase="trt"), CFG) is None  # not in recovery


def rising(**kw):
    training = TrainingStatus(week_load=320, previous_weekly_load=100, regimen_start=EventRef(DRAW_S, "w-9"))
    return Situation(now_s=DRAW_S + 3 * DAY_S, phase="trt", training=training, **kw)


def test_a_sharp_rise_into_a_new_regimen_without_a_recent_panel_asks_for_the_baseline_panel():
    finding = rules.baseline_before_training_change(rising(), CFG)
    assert finding.kind == "lab_recheck" and finding.anchor == ("w-9",)
    assert "total T, free T, E2 (LC/MS-MS), LH, FSH, CBC and CMP" in finding.summary
    recent = dict(last_e2=e2(30), last_e2_time_s=DRAW_S - 20 * DAY_S, last_t=t(), last_t_time_s=DRAW_S - 20 * DAY_S)
    assert rules.baseline_before_training_change(rising(**recent), CFG) is None
    old = recent | dict(last_e2_time_s=DRAW_S - 60 * DAY_S, last_t_time_s=DRAW_S - 60 * DAY_S)
    assert rules.baseline_before_training_change(rising(**old), CFG) is not None
    no_rise = Situation(now_s=DRAW_S, training=TrainingStatus(week_load=320, previous_weekly_load=100))
    assert rules.baseline_before_training_change(no_rise, CFG) is None


def result(analyte, value, unit, day, event_id):
    return Lab(analyte, value, unit, datetime.fromtimestamp(DRAW_S + day * DAY_S, timezone.utc), event_id)


@pytest.mark.parametrize("rule,analyte,unit,before,after", [
    (rules.ai_hdl_fall, "hdl", "mg/dL", 52, 41),
    (rules.ai_ldl_rise, "ldl", "mg/dL", 108, 138),
    (rules.ai_bone_density_fall, "bmd_lumbar_spine", "g/cm2", 1.12, 1.08),
])
def test_anastrozoles_wider_effects_raise_a_review_with_the_numbers(rule, analyte, unit, before, after):
    history = {analyte: (result(analyte, before, unit, 0, "r-0"), result(analyte, after, unit, 365, "r-1"))}
    situation = on_ai(now_s=DRAW_S + 365 * DAY_S, results=history)
    finding = rule(situation, CFG)
    assert finding.kind == "dose_review" and finding.anchor == ("r-1",)
    assert f"from {before:.4g} to {after:.4g} {unit}" in finding.summary
    assert rule(replace(situation, anastrozole_weekly_mg=0.0), CFG) is None  # not on an AI
    acted = replace(situation, last_dose_event=EventRef(DRAW_S + 366 * DAY_S, "ai-2"))
    assert rule(acted, CFG) is None  # a dose change since the result answers it
    small = {analyte: (history[analyte][0], result(analyte, before * 1.01 if rule is rules.ai_ldl_rise else before * 0.99, unit, 365, "r-1"))}
    assert rule(replace(situation, results=small), CFG) is None


@pytest.mark.parametrize("rule,analyte,before,within_variation", [
    (rules.ai_hdl_fall, "hdl", 52, 43),  # -17%: within two results' normal variation
    (rules.ai_ldl_rise, "ldl", 108, 130),  # +20%
])
def test_a_lipid_change_within_normal_variation_raises_nothing(rule, analyte, before, within_variation):
    history = {analyte: (result(analyte, before, "mg/dL", 0, "r-0"), result(analyte, within_variation, "mg/dL", 90, "r-1"))}
    assert rule(on_ai(now_s=DRAW_S + 90 * DAY_S, results=history), CFG) is None


def every_finding():
    symptoms = (Symptoms(DRAW_S + DAY_S, frozenset({"joint_pain", "brain_fog", "water_retention", "mood_swings"}), "s-1"),)
    situations = [
        on_ai(last_e2=e2(15)), on_ai(last_e2=e2(24, "immunoassay", "<")), on_ai(last_e2=e2(70)),
        on_ai(last_e2=e2(45), symptoms=symptoms, body_fat_slope=-0.3, now_s=DRAW_S + 2 * DAY_S),
        Situation(now_s=50 * DAY_S, phase="trt", trt_start=EventRef(0.0, "x")),
        on_ai(last_e2=e2(30), last_dose_change=EventRef(DRAW_S + DAY_S, "d"), now_s=DRAW_S + 50 * DAY_S),
        on_ai(last_e2=e2(34), body_fat_now=22, body_fat_at_last_e2=26, now_s=DRAW_S + 200 * DAY_S),
    ]
    situations += [overloaded(), rising()]
    lipids = {"hdl": (result("hdl", 52, "mg/dL", 0, "h-0"), result("hdl", 40, "mg/dL", 300, "h-1")),
              "ldl": (result("ldl", 100, "mg/dL", 0, "l-0"), result("ldl", 130, "mg/dL", 300, "l-1")),
              "bmd_lumbar_spine": (result("bmd_lumbar_spine", 1.1, "g/cm2", 0, "b-0"),
                                   result("bmd_lumbar_spine", 1.0, "g/cm2", 300, "b-1"))}
    situations.append(on_ai(now_s=DRAW_S + 300 * DAY_S, results=lipids, last_e2=e2(30)))
    return [f for s in situations for f in rules.evaluate(s, CFG)]


def test_every_rule_is_covered_by_the_sample_and_names_sources():
    findings = every_finding()
    assert {f.rule.split(".")[0] for f in findings} == {"dose_review", "recheck", "training_review"}
    assert len({f.rule for f in findings}) == len(rules.RULES) + 1  # every rule; the interval rule has two ids
    assert all(f.sources and f.evidence for f in findings)


def test_no_summary_tells_anyone_to_change_a_dose():
    for finding in every_finding():
        assert not DOSE_INSTRUCTION.search(finding.summary), finding.summary
        assert finding.summary.endswith(".") and finding.summary.count(". ") == 0
