"""Review rules from DOMAIN.md: each a pure function of the athlete's situation, with a stable rule id.

A rule returns a Finding (or None): the alert kind, severity, a one-sentence summary, the evidence (numbers
and the event ids they came from), the `anchor` and the `evidence_events`. The anchor is the clinical question:
the ids of the events that define it (the draw, the dose change); the engine keeps one alert per rule and
anchor, and a change in `evidence_events` (another symptom log, a T drawn with the E2) updates that alert
instead of raising another. Summaries flag for a clinician; they never tell anyone what to do with a dose.
Thresholds are settings whose defaults are the DOMAIN.md rules of thumb; `sources` names the seeds behind an
alert and labels the defaults that are general practice rather than the seeds' (DOMAIN.md, provenance).

Answered questions stay answered: a dose change after a draw answers that draw's dose reviews (the recheck
after the change is what follows), and a draw answers the symptoms logged before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from aromatrack.domain.correlation import E2Estimate
from aromatrack.domain.events import Evidence
from aromatrack.domain.labs import Lab

DAY_S = 86400.0

SEED_MECHANISM = "seed 000_46065619a8547310.txt"
SEED_LABS = "seed 001_fae0c361840af692.txt"
SEED_RECOVERY = "seed 002_adf4ecbcbcc8abd3.txt"
SEED_SAFETY = "seed 003_a0b689e273172c13.txt"
# Defaults that are general practice, not the seeds' (DOMAIN.md, provenance); alerts resting on them say so.
T_RANGE_SOURCE = ("total T range 264-916 ng/dL: the CDC-harmonised range used by the Endocrine Society 2018 "
                  "guideline (general practice, not from the seeds)")
LAB_T_RANGE_SOURCE = "total T range: the performing lab's own reference range"
IMMUNOASSAY_SOURCE = ("not from the seeds: the ~24 pg/mL immunoassay floor and a recheck rather than a dose "
                      "review for a low immunoassay E2 (general practice, an inference)")
STABLE_INTERVAL_SOURCE = ("stable interval: seed 001 says quarterly or bi-annually, seed 000 6-12 months; "
                          "the default follows seed 001")
PANEL_SOURCE = "not from the seeds: which labs make the panel asked for (general practice)"
ACWR_SOURCE = ("not from the seeds: ACWR (EWMA acute 7 d / chronic 42 d load, Hulin 2016, Williams 2017) and its "
               "1.5 'very high' threshold are sports science")
BMD_CHANGE_SOURCE = ("not from the seeds: a lumbar-spine DXA change counts beyond ~3%, about the least significant "
                     "change of the method (general practice)")
LIPID_CHANGE_SOURCE = ("not from the seeds: the HDL/LDL change thresholds (a 20% fall, a 25% rise) are about the "
                       "reference change value of two single results, so normal within-person variation (~6-8%) "
                       "and the assay's (~3%) do not raise a review (general practice)")

# Labs each recheck asks for: a dose review needs a total T near the E2, and E2 by a sensitive assay.
T_AND_E2 = "total T and E2 (LC/MS-MS)"
INTERVAL_PANEL = "total T, E2 (LC/MS-MS), CBC and CMP"
BASELINE_PANEL = "total T, free T, E2 (LC/MS-MS), LH, FSH, CBC and CMP (SHBG, hs-CRP and lipids are useful too)"
RECOVERY_LABS = "LH, FSH, total T and E2"

# Symptom lists from seed 000 (DOMAIN.md). Low libido is on both, so it counts toward a side's symptoms but
# never decides between them: each side needs `min_symptoms` distinct names, one at least of its own.
LOW_E2_SYMPTOMS = frozenset({"joint_pain", "fatigue", "low_libido", "erectile_dysfunction", "brain_fog", "low_mood"})
HIGH_E2_SYMPTOMS = frozenset({"water_retention", "nipple_sensitivity", "mood_swings", "low_libido"})
SHARED_SYMPTOMS = LOW_E2_SYMPTOMS & HIGH_E2_SYMPTOMS
SEVERITY_RANK = {"info": 0, "warning": 1, "urgent": 2}


@dataclass(frozen=True)
class RuleSettings:
    e2_low_pg_ml: float = 20.0
    e2_high_pg_ml: float = 60.0
    e2_high_symptomatic_pg_ml: float = 40.0
    # Used only when the T result carries no reference range of its own (T_RANGE_SOURCE).
    t_low_ng_dl: float = 264.0
    t_high_ng_dl: float = 916.0
    panel_window_days: float = 14.0  # E2 and T this close count as one panel
    symptom_window_days: float = 14.0  # symptoms this close to a draw (or to now) count
    min_symptoms: int = 2  # distinct names from one side's list, one at least not shared with the other side
    recheck_after_trt_start_days: float = 42.0  # 4-6 weeks
    recheck_after_dose_change_days: float = 42.0  # 4-6 weeks
    stable_interval_days: float = 182.0  # 3-6 months
    changing_interval_days: float = 112.0  # 3-4 months while body composition changes
    changing_slope_pct_per_week: float = 0.25  # |trend slope| at or above this = "changing"
    changing_since_e2_pct: float = 2.0  # or |change since last E2| at or above this
    fat_loss_recheck_pct: float = 3.0  # fat drop since the last E2 on an unchanged AI dose
    fat_loss_min_drop_pct: float = 1.0  # a predicted crossing below range needs at least this drop (beyond noise)
    fat_loss_symptoms_slope_pct_per_week: float = -0.1  # "losing fat" for the low-E2-symptom rule
    unconfirmed_low_e2_escalation: int = 2  # this many low E2 results in a row without LC/MS-MS escalate
    # Performing lab id -> the assay it uses when a result names none (a result with neither is "unstated").
    default_method_by_lab: Mapping[str, str] = field(default_factory=dict)
    # Post-TRT recovery: "sustained very high acute load relative to chronic load" (DOMAIN.md) is ACWR above
    # `overload_acwr` on each of `overload_days` consecutive days, once the load history is long enough for
    # the ratio to mean something (a chronic load built from a few days makes any week look "acute").
    overload_acwr: float = 1.5
    overload_days: int = 7
    overload_min_ctl: float = 10.0  # TSS/day
    load_history_min_days: float = 35.0  # days of load before the first day an ACWR counts
    # Baseline before a big change in training: the last 7 days' load above `regimen_change_ratio` x the
    # weekly average of the 4 weeks before, and at least `regimen_min_weekly_load`; a T and E2 drawn from
    # `baseline_lookback_days` before the rise onwards counts as the baseline.
    regimen_change_ratio: float = 2.0
    regimen_min_weekly_load: float = 150.0  # TSS/week: roughly three hard hours
    baseline_lookback_days: float = 42.0
    # Anastrozole's wider effects (seed 003): a change from the previous result beyond these, on an AI. The lipid
    # limits are about the reference change value of two single results (LIPID_CHANGE_SOURCE): smaller changes are
    # within normal variation and would page clinicians on noise.
    hdl_fall_pct: float = 20.0
    ldl_rise_pct: float = 25.0
    bmd_fall_pct: float = 3.0


@dataclass(frozen=True)
class EventRef:
    """A reference to the event that set a fact: when (epoch s) and its id."""

    time_s: float
    event_id: str


@dataclass(frozen=True)
class Symptoms:
    time_s: float
    names: frozenset[str]
    event_id: str


@dataclass(frozen=True)
class TrainingStatus:
    """Training load as of the last finished day (the engine folds days as they end)."""

    acwr: float | None = None
    ctl: float = 0.0
    atl: float = 0.0
    high_acwr_days: int = 0  # consecutive finished days with ACWR above the overload threshold
    high_acwr_since: EventRef | None = None  # the first workout of that run
    week_load: float = 0.0  # the last 7 finished days
    previous_weekly_load: float | None = None  # weekly average of the 28 days before those 7 (None: too little history)
    regimen_start: EventRef | None = None  # the first workout of a sharp rise in weekly load, while it lasts


@dataclass(frozen=True)
class Situation:
    """What the engine knows about one athlete at `now_s` (an event's time, or a clock step's)."""

    now_s: float
    phase: str = "none"
    trt_start: EventRef | None = None
    anastrozole_weekly_mg: float = 0.0
    anastrozole_since: EventRef | None = None  # the dose event in force
    last_dose_change: EventRef | None = None  # any T or AI dose change after starting
    last_dose_event: EventRef | None = None  # any dose event at all (starting included)
    last_e2: Lab | None = None
    last_e2_time_s: float | None = None
    last_t: Lab | None = None
    last_t_time_s: float | None = None
    unconfirmed_low_e2: int = 0  # low E2 results in a row, up to the last, none by LC/MS-MS
    body_fat_now: float | None = None
    body_fat_slope: float | None = None
    body_fat_at_last_e2: float | None = None
    last_scale: EventRef | None = None
    e2_estimate: E2Estimate | None = None
    symptoms: tuple[Symptoms, ...] = ()
    phase_since: EventRef | None = None  # the event that set the current phase
    training: TrainingStatus = TrainingStatus()
    results: Mapping[str, tuple[Lab, ...]] = field(default_factory=dict)  # last two lipid and BMD results

    @property
    def on_ai(self) -> bool:
        return self.anastrozole_weekly_mg > 0

    @property
    def fat_change_since_e2(self) -> float | None:
        if self.body_fat_now is None or self.body_fat_at_last_e2 is None:
            return None
        return self.body_fat_now - self.body_fat_at_last_e2


@dataclass(frozen=True)
class Finding:
    rule: str
    kind: str
    severity: str
    summary: str
    evidence: tuple[Evidence, ...]
    anchor: tuple[str, ...]  # the events that define the clinical question (one alert per rule and anchor)
    sources: tuple[str, ...] = field(default=())
    evidence_events: tuple[str, ...] = ()  # events whose arrival is new evidence for the same question


def _days(seconds: float) -> float:
    return round(seconds / DAY_S, 1)


def _text(lab: Lab) -> str:
    """A result as a summary states it: "8", "14.5", "<24"."""
    return f"{lab.comparator or ''}{lab.value:.4g}"


def _lab_evidence(name: str, lab: Lab) -> Evidence:
    return Evidence(name=name, value=lab.shown(), unit=lab.unit, event_ids=(lab.event_id,))


def _range_evidence(name: str, lab: Lab) -> tuple[Evidence, ...]:
    """The lab's own reference range, as the lab printed it (either bound may be missing)."""
    if lab.reference_low is None and lab.reference_high is None:
        return ()
    low = "" if lab.reference_low is None else f"{lab.reference_low:.4g}"
    high = "" if lab.reference_high is None else f"{lab.reference_high:.4g}"
    return (Evidence(name=name, value=f"{low}-{high}", unit=lab.unit, event_ids=(lab.event_id,)),)


def _dose_evidence(s: Situation) -> Evidence:
    ids = (s.anastrozole_since.event_id,) if s.anastrozole_since else ()
    return Evidence(name="anastrozole_weekly_mg", value=round(s.anastrozole_weekly_mg, 4), unit="mg/week", event_ids=ids)


def _asked_for(labs: str) -> Evidence:
    return Evidence(name="labs_to_draw", value=labs)


def _panel_t(s: Situation, settings: RuleSettings) -> Lab | None:
    """The total T drawn with the last E2 (within the panel window), if any."""
    if s.last_e2 is None or s.last_t is None or s.last_t_time_s is None or s.last_e2_time_s is None:
        return None
    if abs(s.last_t_time_s - s.last_e2_time_s) > settings.panel_window_days * DAY_S:
        return None
    return s.last_t


def _t_range(t: Lab, settings: RuleSettings) -> tuple[float, float, str]:
    """The T range to judge by: the lab's own where it gave one, else the default, with its source."""
    if t.reference_low is not None and t.reference_high is not None:
        return t.reference_low, t.reference_high, LAB_T_RANGE_SOURCE
    return settings.t_low_ng_dl, settings.t_high_ng_dl, T_RANGE_SOURCE


def _t_in_range(t: Lab, settings: RuleSettings) -> bool:
    """Known to be within the range: a censored T ("<50", ">1500") never is."""
    low, high, _ = _t_range(t, settings)
    return not t.censored and low <= t.value <= high


def _t_evidence(t: Lab, settings: RuleSettings) -> tuple[Evidence, ...]:
    low, high, _ = _t_range(t, settings)
    return (
        _lab_evidence("testosterone_total", t),
        Evidence(name="testosterone_total_range", value=f"{low:g}-{high:g}", unit="ng/dL", event_ids=(t.event_id,)),
    )


def _answered_by_dose_change(s: Situation) -> bool:
    """A dose event at or after the last draw answers that draw's dose reviews (same-time draws come first)."""
    return (
        s.last_dose_event is not None
        and s.last_e2_time_s is not None
        and s.last_dose_event.time_s >= s.last_e2_time_s
    )


def _symptoms_named(logs: list[Symptoms], side: frozenset[str], settings: RuleSettings) -> list[str] | None:
    """The side's symptom names across `logs` when they make the count (see LOW_E2_SYMPTOMS), else None."""
    names = set().union(*(x.names & side for x in logs)) if logs else set()
    if len(names) < settings.min_symptoms or not names - SHARED_SYMPTOMS:
        return None
    return sorted(names)


def _symptoms_near_e2(s: Situation, names: frozenset[str], settings: RuleSettings) -> list[Symptoms]:
    if s.last_e2_time_s is None:
        return []
    window = settings.symptom_window_days * DAY_S
    return [x for x in s.symptoms if abs(x.time_s - s.last_e2_time_s) <= window and x.names & names]


def _e2_low_limit(e2: Lab, settings: RuleSettings) -> float:
    """Low if under 20 pg/mL or at/below the lab's own low reference, whichever is higher."""
    return max(settings.e2_low_pg_ml, e2.reference_low or 0.0)


def e2_is_low(e2: Lab, settings: RuleSettings) -> bool:
    """E2 known to be under the floor (20 pg/mL), or at/below the lab's low reference."""
    at_reference_low = e2.reference_low is not None and e2.surely_at_or_below(e2.reference_low)
    return e2.surely_below(settings.e2_low_pg_ml) or at_reference_low


def _low_e2_reason(e2: Lab, settings: RuleSettings) -> str:
    """Which limit a low E2 is under, in words: the floor, or the lab's own low reference."""
    if e2.surely_below(settings.e2_low_pg_ml):
        return f"below the {settings.e2_low_pg_ml:g} pg/mL floor"
    return f"at or below the lab's low reference of {e2.reference_low:.4g} pg/mL"


def immunoassay_low_e2(s: Situation, settings: RuleSettings) -> Finding | None:
    """A low or censored-low E2 not measured by LC/MS-MS is unreliable in men: recheck, not a dose review.
    Repeated low results without an LC/MS-MS one between them escalate (warning), so an unstated method is
    never a reason to stay at "info" for ever."""
    e2 = s.last_e2
    if e2 is None or e2.method == "lc_msms" or not (e2.comparator in ("<", "<=") or e2_is_low(e2, settings)):
        return None
    method = e2.method or "an unstated method"
    repeated = s.unconfirmed_low_e2 >= settings.unconfirmed_low_e2_escalation
    summary = (
        f"E2 has been low or below quantitation {s.unconfirmed_low_e2} times in a row by {method}, never "
        f"confirmed by LC/MS-MS; a recheck of {T_AND_E2} is warranted before any dose review."
        if repeated else
        f"Low or below-quantitation E2 by {method}; a recheck of {T_AND_E2} is warranted before any dose review."
    )
    return Finding(
        rule="recheck.e2_immunoassay_low",
        kind="lab_recheck",
        severity="warning" if repeated else "info",
        summary=summary,
        evidence=(
            _lab_evidence("estradiol", e2),
            Evidence(name="assay_method", value=method),
            Evidence(name="low_results_without_lc_msms", value=s.unconfirmed_low_e2),
            *_range_evidence("e2_reference_range", e2),
            _asked_for(T_AND_E2),
        ),
        anchor=(e2.event_id,),
        sources=(SEED_LABS, SEED_MECHANISM, IMMUNOASSAY_SOURCE),
    )


def low_e2_on_ai(s: Situation, settings: RuleSettings) -> Finding | None:
    """LC/MS-MS E2 below range on anastrozole: a dose review when total T is in range (seed 000: "while
    testosterone levels remain optimal"). Never silence on a crashed E2: with no T near the draw the clinician
    sees the E2 and is asked for total T and E2; with T out of range, both numbers in a protocol review. A T
    that arrives later is new evidence for the same alert (an update)."""
    e2 = s.last_e2
    if e2 is None or not s.on_ai or e2.method != "lc_msms" or not e2_is_low(e2, settings):
        return None
    if _answered_by_dose_change(s):
        return None
    t = _panel_t(s, settings)
    low_e2 = f"E2 {_text(e2)} pg/mL is {_low_e2_reason(e2, settings)} on anastrozole"
    evidence: tuple[Evidence, ...] = (
        _lab_evidence("estradiol", e2),
        Evidence(name="e2_low_limit", value=_e2_low_limit(e2, settings), unit="pg/mL"),
        *_range_evidence("e2_reference_range", e2),
    )
    sources = [SEED_LABS, SEED_MECHANISM]
    if t is None:
        summary = (f"{low_e2} with no total T drawn within {settings.panel_window_days:g} days; a clinician's "
                   f"review is warranted, with a recheck of {T_AND_E2}.")
        evidence += (
            Evidence(name="testosterone_total", value=f"not drawn within {settings.panel_window_days:g} d"),
            _asked_for(T_AND_E2),
        )
    else:
        low, high, t_source = _t_range(t, settings)
        sources.append(t_source)
        evidence += _t_evidence(t, settings)
        if _t_in_range(t, settings):
            summary = f"{low_e2} while total T is in range; a clinician's dose review is warranted."
        else:
            summary = (f"{low_e2} and total T {_text(t)} ng/dL is not within its {low:g}-{high:g} ng/dL range; "
                       "a clinician's review of the protocol is warranted.")
    return Finding(
        rule="dose_review.low_e2_on_ai",
        kind="dose_review",
        severity="warning",
        summary=summary,
        evidence=(*evidence, _dose_evidence(s)),
        anchor=(e2.event_id,),
        evidence_events=() if t is None else (t.event_id,),
        sources=tuple(sources),
    )


def high_e2(s: Situation, settings: RuleSettings) -> Finding | None:
    """E2 above 60 pg/mL, unless a dose change since the draw has answered it."""
    e2 = s.last_e2
    if e2 is None or not e2.surely_above(settings.e2_high_pg_ml) or _answered_by_dose_change(s):
        return None
    return Finding(
        rule="dose_review.high_e2",
        kind="dose_review",
        severity="warning",
        summary=f"E2 {_text(e2)} pg/mL is above {settings.e2_high_pg_ml:g} pg/mL; a clinician's review of the "
        "protocol is warranted.",
        evidence=(_lab_evidence("estradiol", e2), *_range_evidence("e2_reference_range", e2), _dose_evidence(s)),
        anchor=(e2.event_id,),
        sources=(SEED_LABS,),
    )


def high_e2_symptomatic(s: Situation, settings: RuleSettings) -> Finding | None:
    """E2 above 40 pg/mL (but not above the plain high limit) with high-E2 symptoms logged near the draw."""
    e2 = s.last_e2
    if e2 is None or not e2.surely_above(settings.e2_high_symptomatic_pg_ml) or e2.surely_above(settings.e2_high_pg_ml):
        return None
    if _answered_by_dose_change(s):
        return None
    logs = _symptoms_near_e2(s, HIGH_E2_SYMPTOMS, settings)
    names = _symptoms_named(logs, HIGH_E2_SYMPTOMS, settings)
    if names is None:
        return None
    return Finding(
        rule="dose_review.high_e2_symptomatic",
        kind="dose_review",
        severity="warning",
        summary=f"E2 {_text(e2)} pg/mL is above {settings.e2_high_symptomatic_pg_ml:g} pg/mL with high-E2 "
        "symptoms logged; a clinician's review of the protocol is warranted.",
        evidence=(
            _lab_evidence("estradiol", e2),
            Evidence(name="high_e2_symptoms", value=", ".join(names), event_ids=tuple(x.event_id for x in logs)),
            _dose_evidence(s),
        ),
        anchor=(e2.event_id,),
        evidence_events=tuple(x.event_id for x in logs),
        sources=(SEED_LABS, SEED_MECHANISM),
    )


def _no_e2_since(anchor: EventRef, s: Situation) -> bool:
    """No E2 drawn after `anchor` (a draw at the same time was processed before it, so it does not count)."""
    return s.last_e2_time_s is None or s.last_e2_time_s <= anchor.time_s


def _scheduled_recheck(
    s: Situation, anchor: EventRef, days: float, rule: str, happened: str, evidence: str, sources: tuple[str, ...]
) -> Finding | None:
    """A T and E2 recheck due `days` after `anchor` when no E2 has been drawn since it."""
    if not _no_e2_since(anchor, s) or s.now_s < anchor.time_s + days * DAY_S:
        return None
    return Finding(
        rule=rule,
        kind="lab_recheck",
        severity="info",
        summary=f"{happened} {days:g} or more days ago with no E2 drawn since; a recheck of {T_AND_E2} is due.",
        evidence=(
            Evidence(name=evidence, value=_days(s.now_s - anchor.time_s), unit="d", event_ids=(anchor.event_id,)),
            Evidence(name="due_after_days", value=days, unit="d"),
            _asked_for(T_AND_E2),
        ),
        anchor=(anchor.event_id,),
        sources=sources,
    )


def recheck_after_trt_start(s: Situation, settings: RuleSettings) -> Finding | None:
    """T and E2 are due 4-6 weeks after TRT starts."""
    if s.trt_start is None or s.phase != "trt":
        return None
    return _scheduled_recheck(s, s.trt_start, settings.recheck_after_trt_start_days, "recheck.after_trt_start",
                              "TRT started", "days_since_trt_start", (SEED_LABS, SEED_MECHANISM))


def recheck_after_dose_change(s: Situation, settings: RuleSettings) -> Finding | None:
    """T and E2 are due 4-6 weeks after any T or anastrozole dose change."""
    change = s.last_dose_change
    if change is None or change == s.trt_start:
        return None
    return _scheduled_recheck(s, change, settings.recheck_after_dose_change_days, "recheck.after_dose_change",
                              "The dose changed", "days_since_dose_change", (SEED_LABS,))


def body_comp_changing(s: Situation, settings: RuleSettings) -> bool:
    slope_changing = s.body_fat_slope is not None and abs(s.body_fat_slope) >= settings.changing_slope_pct_per_week
    change = s.fat_change_since_e2
    return slope_changing or (change is not None and abs(change) >= settings.changing_since_e2_pct)


def _interval(s: Situation, settings: RuleSettings) -> tuple[float, bool]:
    """The routine interval in days, and whether body composition is changing (the shorter one)."""
    changing = body_comp_changing(s, settings)
    return (settings.changing_interval_days if changing else settings.stable_interval_days), changing


def interval_recheck(s: Situation, settings: RuleSettings) -> Finding | None:
    """On a protocol, the panel is due every 3-6 months, every 3-4 months while body composition is changing."""
    e2 = s.last_e2
    if e2 is None or s.last_e2_time_s is None or s.phase == "none":
        return None
    interval, changing = _interval(s, settings)
    if s.now_s < s.last_e2_time_s + interval * DAY_S:
        return None
    why = "while body composition is changing" if changing else "on a stable protocol"
    return Finding(
        rule="recheck.interval_body_comp_changing" if changing else "recheck.interval_stable",
        kind="lab_recheck",
        severity="info",
        summary=f"The last E2 was drawn {interval:g} or more days ago, the interval {why}; a routine panel of "
        f"{INTERVAL_PANEL} is due.",
        evidence=(
            Evidence(name="days_since_last_e2", value=_days(s.now_s - s.last_e2_time_s), unit="d", event_ids=(e2.event_id,)),
            Evidence(name="interval_days", value=interval, unit="d"),
            *_fat_evidence(s),
            _asked_for(INTERVAL_PANEL),
        ),
        anchor=(e2.event_id,),
        sources=(SEED_LABS, SEED_MECHANISM, PANEL_SOURCE) + (() if changing else (STABLE_INTERVAL_SOURCE,)),
    )


def next_due_s(s: Situation, settings: RuleSettings) -> float | None:
    """The earliest time after `s.now_s` at which a scheduled recheck falls due with no new event (the engine's
    clock steps there), or None when nothing is scheduled."""
    due = []
    if s.trt_start is not None and s.phase == "trt" and _no_e2_since(s.trt_start, s):
        due.append(s.trt_start.time_s + settings.recheck_after_trt_start_days * DAY_S)
    if s.last_dose_change is not None and s.last_dose_change != s.trt_start and _no_e2_since(s.last_dose_change, s):
        due.append(s.last_dose_change.time_s + settings.recheck_after_dose_change_days * DAY_S)
    if s.last_e2_time_s is not None and s.phase != "none":
        due.append(s.last_e2_time_s + _interval(s, settings)[0] * DAY_S)
    future = [time_s for time_s in due if time_s > s.now_s]
    return min(future) if future else None


def _fat_evidence(s: Situation) -> tuple[Evidence, ...]:
    scale_ids = (s.last_scale.event_id,) if s.last_scale else ()
    items = []
    if s.body_fat_slope is not None:
        items.append(Evidence(name="body_fat_slope", value=round(s.body_fat_slope, 3), unit="%/week", event_ids=scale_ids))
    if s.fat_change_since_e2 is not None:
        items.append(Evidence(name="body_fat_change_since_e2", value=round(s.fat_change_since_e2, 2), unit="%", event_ids=scale_ids))
    return tuple(items)


def fat_loss_unchanged_ai(s: Situation, settings: RuleSettings) -> Finding | None:
    """Fat has fallen since the last E2 on the same anastrozole dose: E2 has likely fallen too (seed 000).

    Fires when the per-athlete estimate (or, before enough pairs, the proportional rule of thumb) puts E2
    below the low limit, or when the fall reaches `fat_loss_recheck_pct` points.
    """
    e2, change, estimate = s.last_e2, s.fat_change_since_e2, s.e2_estimate
    if e2 is None or change is None or not s.on_ai or s.anastrozole_since is None or s.last_e2_time_s is None:
        return None
    if s.anastrozole_since.time_s >= s.last_e2_time_s:
        return None  # the dose changed after the last draw: the dose-change recheck covers it
    # The prediction counts only when it crosses the limit: a draw already low is the low-E2 rules' business.
    predicted_low = (
        estimate is not None
        and not e2_is_low(e2, settings)
        and estimate.predicted_e2_pg_ml < settings.e2_low_pg_ml
    )
    meaningful = change <= -settings.fat_loss_min_drop_pct
    if not (change <= -settings.fat_loss_recheck_pct or (meaningful and predicted_low)):
        return None
    evidence = [_lab_evidence("last_estradiol", e2), *_fat_evidence(s), _dose_evidence(s)]
    if estimate is not None:
        evidence.append(Evidence(name="predicted_e2", value=round(estimate.predicted_e2_pg_ml, 1), unit="pg/mL"))
        evidence.append(Evidence(name="prediction_method", value=estimate.method))
    return Finding(
        rule="recheck.fat_loss_unchanged_ai",
        kind="lab_recheck",
        severity="warning" if predicted_low else "info",
        summary=f"Body fat has fallen {-change:.1f} points since the last E2 on an unchanged anastrozole dose, "
        f"so E2 has likely dropped; a recheck of {T_AND_E2} is warranted.",
        evidence=(*evidence, _asked_for(T_AND_E2)),
        anchor=(e2.event_id, s.anastrozole_since.event_id),
        sources=(SEED_MECHANISM, SEED_LABS),
    )


def low_e2_symptoms_fat_loss(s: Situation, settings: RuleSettings) -> Finding | None:
    """Low-E2 symptoms logged since the last draw while losing fat on anastrozole: a recheck is warranted.
    Symptoms logged before the last draw were answered by it."""
    if not s.on_ai or s.body_fat_slope is None or s.body_fat_slope > settings.fat_loss_symptoms_slope_pct_per_week:
        return None
    window = settings.symptom_window_days * DAY_S
    since_draw = s.last_e2_time_s if s.last_e2_time_s is not None else float("-inf")
    recent = [
        x for x in s.symptoms
        if s.now_s - x.time_s <= window and x.time_s > since_draw and x.names & LOW_E2_SYMPTOMS
    ]
    names = _symptoms_named(recent, LOW_E2_SYMPTOMS, settings)
    if names is None:
        return None
    return Finding(
        rule="recheck.low_e2_symptoms_fat_loss",
        kind="lab_recheck",
        severity="warning",
        summary="Low-E2 symptoms are logged since the last E2 while body fat is falling on anastrozole; a recheck "
        f"of {T_AND_E2} is warranted.",
        evidence=(
            Evidence(name="low_e2_symptoms", value=", ".join(names), event_ids=tuple(x.event_id for x in recent)),
            *_fat_evidence(s),
            _dose_evidence(s),
            _asked_for(T_AND_E2),
        ),
        anchor=(
            s.last_e2.event_id if s.last_e2 else "",
            s.anastrozole_since.event_id if s.anastrozole_since else "",
        ),
        evidence_events=tuple(x.event_id for x in recent),
        sources=(SEED_MECHANISM,),
    )


def post_trt_recovery_overload(s: Situation, settings: RuleSettings) -> Finding | None:
    """During post-TRT recovery, a sustained very high acute:chronic load (seeds 002/003: overtraining
    suppresses hormonal output while the HPG axis restarts): for the clinician and the coach, with the labs
    to watch. A moderate, steady block stays silent."""
    tr = s.training
    if s.phase != "post_trt_recovery" or tr.high_acwr_since is None or tr.high_acwr_days < settings.overload_days:
        return None
    if tr.acwr is None:
        return None
    return Finding(
        rule="training_review.post_trt_recovery_overload",
        kind="training_review",
        severity="warning",
        summary=f"During post-TRT recovery the acute:chronic training load has been above "
        f"{settings.overload_acwr:g} for {tr.high_acwr_days} days in a row; a review by the clinician and the "
        f"coach is warranted, with {RECOVERY_LABS} the labs to watch.",
        evidence=(
            Evidence(name="acwr", value=round(tr.acwr, 2), event_ids=(tr.high_acwr_since.event_id,)),
            Evidence(name="days_above_acwr_limit", value=tr.high_acwr_days, unit="d"),
            Evidence(name="acwr_limit", value=settings.overload_acwr),
            Evidence(name="atl", value=round(tr.atl, 1), unit="TSS/d"),
            Evidence(name="ctl", value=round(tr.ctl, 1), unit="TSS/d"),
            Evidence(name="labs_to_watch", value=RECOVERY_LABS),
        ),
        anchor=(tr.high_acwr_since.event_id,),
        sources=(SEED_RECOVERY, SEED_SAFETY, ACWR_SOURCE),
    )


def baseline_before_training_change(s: Situation, settings: RuleSettings) -> Finding | None:
    """A sharp rise into a new training regimen with no recent panel: the baseline panel, early in the regimen
    (DOMAIN.md schedule: "full panel before the new regimen starts")."""
    tr = s.training
    if tr.regimen_start is None or tr.previous_weekly_load is None:
        return None
    since = tr.regimen_start.time_s - settings.baseline_lookback_days * DAY_S
    if all(t is not None and t >= since for t in (s.last_e2_time_s, s.last_t_time_s)):
        return None
    return Finding(
        rule="recheck.baseline_before_training_change",
        kind="lab_recheck",
        severity="info",
        summary=f"Weekly training load rose to {tr.week_load:.0f}, over {settings.regimen_change_ratio:g} times the "
        f"previous four weeks' average of {tr.previous_weekly_load:.0f}, with no T and E2 drawn since "
        f"{settings.baseline_lookback_days:g} days before the rise; a baseline panel of {BASELINE_PANEL} is "
        "warranted early in the new regimen.",
        evidence=(
            Evidence(name="weekly_load", value=round(tr.week_load, 1), unit="TSS/week",
                     event_ids=(tr.regimen_start.event_id,)),
            Evidence(name="previous_weekly_load", value=round(tr.previous_weekly_load, 1), unit="TSS/week"),
            Evidence(name="last_e2_days_before_rise", value=None if s.last_e2_time_s is None else
                     _days(tr.regimen_start.time_s - s.last_e2_time_s), unit="d",
                     event_ids=(s.last_e2.event_id,) if s.last_e2 else ()),
            _asked_for(BASELINE_PANEL),
        ),
        anchor=(tr.regimen_start.event_id,),
        sources=(SEED_LABS, SEED_MECHANISM, "not from the seeds: the load ratio and weekly minimum (training-load defaults)"),
    )


def _ai_result_change(
    s: Situation, analyte: str, sign: int, limit_pct: float
) -> tuple[Lab, Lab, float] | None:
    """The previous and latest uncensored results of `analyte` and the change in % when it moved in the
    `sign` direction by at least `limit_pct`, on anastrozole, unanswered by a dose change since."""
    history = s.results.get(analyte, ())
    if len(history) < 2:
        return None
    previous, latest = history[-2], history[-1]
    if previous.censored or latest.censored or previous.value <= 0:
        return None
    if not s.on_ai or s.anastrozole_since is None or s.anastrozole_since.time_s > latest.time_s:
        return None
    if s.last_dose_event is not None and s.last_dose_event.time_s >= latest.time_s:
        return None
    change_pct = (latest.value - previous.value) / previous.value * 100
    return (previous, latest, change_pct) if sign * change_pct >= limit_pct else None


def _ai_wider_effect(
    s: Situation, analyte: str, sign: int, limit_pct: float, rule: str, what: str, source: str
) -> Finding | None:
    change = _ai_result_change(s, analyte, sign, limit_pct)
    if change is None:
        return None
    previous, latest, change_pct = change
    moved = "fallen" if change_pct < 0 else "risen"
    return Finding(
        rule=rule,
        kind="dose_review",
        severity="warning",
        summary=f"{what} has {moved} {abs(change_pct):.0f}% on anastrozole, from {_text(previous)} to "
        f"{_text(latest)} {latest.unit}; a clinician's review of the anastrozole protocol is warranted.",
        evidence=(
            _lab_evidence(f"previous_{analyte}", previous),
            _lab_evidence(analyte, latest),
            Evidence(name="change_pct", value=round(change_pct, 1), unit="%"),
            Evidence(name="change_limit_pct", value=sign * limit_pct, unit="%"),
            _dose_evidence(s),
        ),
        anchor=(latest.event_id,),
        sources=(SEED_SAFETY, source),
    )


def ai_hdl_fall(s: Situation, settings: RuleSettings) -> Finding | None:
    """HDL falling on anastrozole (seed 003: lipid profile changes are a reason to review the dose)."""
    return _ai_wider_effect(s, "hdl", -1, settings.hdl_fall_pct, "dose_review.ai_hdl_fall", "HDL cholesterol",
                            LIPID_CHANGE_SOURCE)


def ai_ldl_rise(s: Situation, settings: RuleSettings) -> Finding | None:
    """LDL rising on anastrozole (seed 003)."""
    return _ai_wider_effect(s, "ldl", 1, settings.ldl_rise_pct, "dose_review.ai_ldl_rise", "LDL cholesterol",
                            LIPID_CHANGE_SOURCE)


def ai_bone_density_fall(s: Situation, settings: RuleSettings) -> Finding | None:
    """Lumbar-spine bone mineral density falling on anastrozole (seed 003, reported in older men)."""
    return _ai_wider_effect(s, "bmd_lumbar_spine", -1, settings.bmd_fall_pct, "dose_review.ai_bone_density_fall",
                            "Lumbar-spine bone mineral density", BMD_CHANGE_SOURCE)


RULES: tuple[Callable[[Situation, RuleSettings], Finding | None], ...] = (
    immunoassay_low_e2,
    low_e2_on_ai,
    high_e2,
    high_e2_symptomatic,
    recheck_after_trt_start,
    recheck_after_dose_change,
    interval_recheck,
    fat_loss_unchanged_ai,
    low_e2_symptoms_fat_loss,
    post_trt_recovery_overload,
    baseline_before_training_change,
    ai_hdl_fall,
    ai_ldl_rise,
    ai_bone_density_fall,
)


def evaluate(s: Situation, settings: RuleSettings) -> list[Finding]:
    """Every rule's finding for this situation, in rule order."""
    return [finding for rule in RULES if (finding := rule(s, settings)) is not None]
