"""Review rules from DOMAIN.md: each a pure function of the athlete's situation, with a stable rule id.

A rule returns a Finding (or None): the alert kind, severity, a one-sentence summary, the evidence (numbers
and the event ids they came from) and a `situation` key, the ids of the events that define the situation.
The engine uses that key for dedupe: the same situation does not alert again until something in it changes
or the cooldown passes. Summaries flag for a clinician; they never tell anyone what to do with a dose.
Thresholds are settings whose defaults are the DOMAIN.md rules of thumb.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from aromatrack.domain.correlation import E2Estimate
from aromatrack.domain.labs import Lab
from aromatrack.schemas.events import AlertEvidence

DAY_S = 86400.0

SEED_MECHANISM = "seed 000_46065619a8547310.txt"
SEED_LABS = "seed 001_fae0c361840af692.txt"
SEED_RECOVERY = "seed 002_adf4ecbcbcc8abd3.txt"
SEED_SAFETY = "seed 003_a0b689e273172c13.txt"
AUA_2018 = "AUA Testosterone Deficiency Guideline 2018 (total T normal range)"

LOW_E2_SYMPTOMS = frozenset({"joint_pain", "fatigue", "low_libido", "erectile_dysfunction", "brain_fog", "low_mood"})
HIGH_E2_SYMPTOMS = frozenset({"water_retention", "nipple_sensitivity", "mood_swings", "low_libido"})


@dataclass(frozen=True)
class RuleSettings:
    e2_low_pg_ml: float = 20.0
    e2_high_pg_ml: float = 60.0
    e2_high_symptomatic_pg_ml: float = 40.0
    # Used only when the T result carries no reference range of its own.
    t_low_ng_dl: float = 264.0
    t_high_ng_dl: float = 916.0
    panel_window_days: float = 14.0  # E2 and T this close count as one panel
    symptom_window_days: float = 14.0  # symptoms this close to a draw count with it
    recheck_after_trt_start_days: float = 42.0  # 4-6 weeks
    recheck_after_dose_change_days: float = 42.0  # 4-6 weeks
    stable_interval_days: float = 182.0  # 3-6 months
    changing_interval_days: float = 112.0  # 3-4 months while body composition changes
    changing_slope_pct_per_week: float = 0.25  # |trend slope| at or above this = "changing"
    changing_since_e2_pct: float = 2.0  # or |change since last E2| at or above this
    fat_loss_recheck_pct: float = 3.0  # fat drop since the last E2 on an unchanged AI dose
    fat_loss_min_drop_pct: float = 1.0  # a predicted crossing below range needs at least this drop (beyond noise)
    fat_loss_symptoms_slope_pct_per_week: float = -0.1  # "losing fat" for the low-E2-symptom rule
    min_low_e2_symptoms: int = 2  # distinct low-E2 symptom names in the window
    cooldown_days: float = 28.0


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
class Situation:
    """What the engine knows about one athlete at `now_s`, the time of the event being processed."""

    now_s: float
    phase: str = "none"
    trt_start: EventRef | None = None
    anastrozole_weekly_mg: float = 0.0
    anastrozole_since: EventRef | None = None  # the dose event in force
    last_dose_change: EventRef | None = None  # any T or AI dose change
    last_e2: Lab | None = None
    last_e2_time_s: float | None = None
    last_t: Lab | None = None
    last_t_time_s: float | None = None
    body_fat_now: float | None = None
    body_fat_slope: float | None = None
    body_fat_at_last_e2: float | None = None
    last_scale: EventRef | None = None
    e2_estimate: E2Estimate | None = None
    symptoms: tuple[Symptoms, ...] = ()

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
    evidence: tuple[AlertEvidence, ...]
    situation: tuple[str, ...]
    sources: tuple[str, ...] = field(default=())


def _days(seconds: float) -> float:
    return round(seconds / DAY_S, 1)


def _lab_evidence(name: str, lab: Lab) -> AlertEvidence:
    shown = f"{lab.comparator}{lab.value:.4g}" if lab.censored else round(lab.value, 2)
    return AlertEvidence(name=name, value=shown, unit=lab.unit, event_ids=[lab.event_id])


def _dose_evidence(s: Situation) -> AlertEvidence:
    ids = [s.anastrozole_since.event_id] if s.anastrozole_since else []
    return AlertEvidence(name="anastrozole_weekly_mg", value=round(s.anastrozole_weekly_mg, 4), unit="mg/week", event_ids=ids)


def _panel_t(s: Situation, settings: RuleSettings) -> Lab | None:
    """The total T drawn with the last E2 (within the panel window), if any."""
    if s.last_e2 is None or s.last_t is None or s.last_t_time_s is None or s.last_e2_time_s is None:
        return None
    if abs(s.last_t_time_s - s.last_e2_time_s) > settings.panel_window_days * DAY_S:
        return None
    return s.last_t


def _t_in_range(t: Lab, settings: RuleSettings) -> bool:
    low = t.reference_low if t.reference_low is not None else settings.t_low_ng_dl
    high = t.reference_high if t.reference_high is not None else settings.t_high_ng_dl
    return not t.censored and low <= t.value <= high


def _symptoms_near_e2(s: Situation, names: frozenset[str], settings: RuleSettings) -> list[Symptoms]:
    if s.last_e2_time_s is None:
        return []
    window = settings.symptom_window_days * DAY_S
    return [x for x in s.symptoms if abs(x.time_s - s.last_e2_time_s) <= window and x.names & names]


def _e2_low_limit(e2: Lab, settings: RuleSettings) -> float:
    """Low if under 20 pg/mL or at/below the lab's own low reference, whichever is higher."""
    return max(settings.e2_low_pg_ml, e2.reference_low or 0.0)


def _e2_is_low(e2: Lab, settings: RuleSettings) -> bool:
    """E2 < 20 pg/mL, or at/below the lab's low reference; a "<x" counts when x is at/below that limit."""
    if e2.comparator == "<":
        return e2.value <= _e2_low_limit(e2, settings)
    at_reference_low = e2.reference_low is not None and e2.value <= e2.reference_low
    return e2.comparator is None and (e2.value < settings.e2_low_pg_ml or at_reference_low)


def immunoassay_low_e2(s: Situation, settings: RuleSettings) -> Finding | None:
    """A low or censored-low E2 not measured by LC/MS-MS is unreliable in men: recheck, not a dose review."""
    e2 = s.last_e2
    if e2 is None or e2.method == "lc_msms" or not (e2.comparator == "<" or _e2_is_low(e2, settings)):
        return None
    method = e2.method or "an unstated method"
    return Finding(
        rule="recheck.e2_immunoassay_low",
        kind="lab_recheck",
        severity="info",
        summary=f"Low or below-quantitation E2 by {method}; a recheck with a sensitive LC/MS-MS assay is "
        "warranted before any dose review.",
        evidence=(_lab_evidence("estradiol", e2), AlertEvidence(name="assay_method", value=method)),
        situation=(e2.event_id,),
        sources=(SEED_LABS, SEED_MECHANISM),
    )


def low_e2_on_ai(s: Situation, settings: RuleSettings) -> Finding | None:
    """LC/MS-MS E2 below range on anastrozole with total T in range."""
    e2, t = s.last_e2, _panel_t(s, settings)
    if e2 is None or t is None or not s.on_ai or e2.method != "lc_msms" or not _e2_is_low(e2, settings):
        return None
    if not _t_in_range(t, settings):
        return None
    return Finding(
        rule="dose_review.low_e2_on_ai",
        kind="dose_review",
        severity="warning",
        summary="E2 is below range on anastrozole while total T is in range; a clinician's dose review is warranted.",
        evidence=(
            _lab_evidence("estradiol", e2),
            AlertEvidence(name="e2_low_limit", value=_e2_low_limit(e2, settings), unit="pg/mL"),
            _lab_evidence("testosterone_total", t),
            _dose_evidence(s),
        ),
        situation=(e2.event_id, t.event_id),
        sources=(SEED_LABS, SEED_MECHANISM, AUA_2018),
    )


def high_e2(s: Situation, settings: RuleSettings) -> Finding | None:
    """E2 above 60 pg/mL."""
    e2 = s.last_e2
    if e2 is None or not e2.surely_above(settings.e2_high_pg_ml):
        return None
    return Finding(
        rule="dose_review.high_e2",
        kind="dose_review",
        severity="warning",
        summary=f"E2 is above {settings.e2_high_pg_ml:g} pg/mL; a clinician's review of the protocol is warranted.",
        evidence=(_lab_evidence("estradiol", e2), _dose_evidence(s)),
        situation=(e2.event_id,),
        sources=(SEED_LABS,),
    )


def high_e2_symptomatic(s: Situation, settings: RuleSettings) -> Finding | None:
    """E2 above 40 pg/mL (but not above the plain high limit) with high-E2 symptoms logged near the draw."""
    e2 = s.last_e2
    if e2 is None or not e2.surely_above(settings.e2_high_symptomatic_pg_ml) or e2.surely_above(settings.e2_high_pg_ml):
        return None
    logs = _symptoms_near_e2(s, HIGH_E2_SYMPTOMS, settings)
    if not logs:
        return None
    names = sorted(set().union(*(x.names & HIGH_E2_SYMPTOMS for x in logs)))
    return Finding(
        rule="dose_review.high_e2_symptomatic",
        kind="dose_review",
        severity="warning",
        summary=f"E2 is above {settings.e2_high_symptomatic_pg_ml:g} pg/mL with high-E2 symptoms logged; "
        "a clinician's review of the protocol is warranted.",
        evidence=(
            _lab_evidence("estradiol", e2),
            AlertEvidence(name="high_e2_symptoms", value=", ".join(names), event_ids=[x.event_id for x in logs]),
            _dose_evidence(s),
        ),
        situation=(e2.event_id, *(x.event_id for x in logs)),
        sources=(SEED_LABS, SEED_MECHANISM),
    )


def _overdue(anchor: EventRef, days: float, s: Situation) -> bool:
    return s.now_s >= anchor.time_s + days * DAY_S


def _no_e2_since(anchor: EventRef, s: Situation) -> bool:
    return s.last_e2_time_s is None or s.last_e2_time_s < anchor.time_s


def _scheduled_recheck(
    s: Situation, anchor: EventRef, days: float, rule: str, happened: str, evidence: str, sources: tuple[str, ...]
) -> Finding | None:
    """A T and E2 recheck due `days` after `anchor` when no E2 has been drawn since it."""
    if not _no_e2_since(anchor, s) or not _overdue(anchor, days, s):
        return None
    elapsed = _days(s.now_s - anchor.time_s)
    return Finding(
        rule=rule,
        kind="lab_recheck",
        severity="info",
        summary=f"{happened} {elapsed:g} days ago with no E2 drawn since; a T and E2 recheck is due.",
        evidence=(AlertEvidence(name=evidence, value=elapsed, unit="d", event_ids=[anchor.event_id]),),
        situation=(anchor.event_id,),
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


def interval_recheck(s: Situation, settings: RuleSettings) -> Finding | None:
    """On a protocol, E2 is due every 3-6 months, every 3-4 months while body composition is changing."""
    e2 = s.last_e2
    if e2 is None or s.last_e2_time_s is None or s.phase == "none":
        return None
    changing = body_comp_changing(s, settings)
    interval = settings.changing_interval_days if changing else settings.stable_interval_days
    if s.now_s < s.last_e2_time_s + interval * DAY_S:
        return None
    why = "while body composition is changing" if changing else "on a stable protocol"
    return Finding(
        rule="recheck.interval_body_comp_changing" if changing else "recheck.interval_stable",
        kind="lab_recheck",
        severity="info",
        summary=f"The last E2 was {_days(s.now_s - s.last_e2_time_s):g} days ago, beyond the "
        f"{interval:g}-day interval {why}; a routine recheck is due.",
        evidence=(
            AlertEvidence(name="days_since_last_e2", value=_days(s.now_s - s.last_e2_time_s), unit="d", event_ids=[e2.event_id]),
            AlertEvidence(name="interval_days", value=interval, unit="d"),
            *_fat_evidence(s),
        ),
        situation=(e2.event_id,),
        sources=(SEED_LABS, SEED_MECHANISM),
    )


def _fat_evidence(s: Situation) -> tuple[AlertEvidence, ...]:
    scale_ids = [s.last_scale.event_id] if s.last_scale else []
    items = []
    if s.body_fat_slope is not None:
        items.append(AlertEvidence(name="body_fat_slope", value=round(s.body_fat_slope, 3), unit="%/week", event_ids=scale_ids))
    if s.fat_change_since_e2 is not None:
        items.append(AlertEvidence(name="body_fat_change_since_e2", value=round(s.fat_change_since_e2, 2), unit="%", event_ids=scale_ids))
    return tuple(items)


def fat_loss_unchanged_ai(s: Situation, settings: RuleSettings) -> Finding | None:
    """Fat has fallen since the last E2 on the same anastrozole dose: E2 has likely fallen too (seed 000).

    Fires when the per-athlete estimate (or, before enough pairs, the proportional rule of thumb) puts E2
    below the low limit, or when the fall reaches `fat_loss_recheck_pct` points.
    """
    e2, change, estimate = s.last_e2, s.fat_change_since_e2, s.e2_estimate
    if e2 is None or change is None or not s.on_ai or s.anastrozole_since is None or s.last_e2_time_s is None:
        return None
    if s.anastrozole_since.time_s > s.last_e2_time_s:
        return None  # the dose changed after the last draw: the dose-change recheck covers it
    # The prediction counts only when it crosses the limit: a draw already low is the low-E2 rules' business.
    predicted_low = (
        estimate is not None
        and not _e2_is_low(e2, settings)
        and estimate.predicted_e2_pg_ml < settings.e2_low_pg_ml
    )
    meaningful = change <= -settings.fat_loss_min_drop_pct
    if not (change <= -settings.fat_loss_recheck_pct or (meaningful and predicted_low)):
        return None
    evidence = [_lab_evidence("last_estradiol", e2), *_fat_evidence(s), _dose_evidence(s)]
    if estimate is not None:
        evidence.append(AlertEvidence(name="predicted_e2", value=round(estimate.predicted_e2_pg_ml, 1), unit="pg/mL"))
        evidence.append(AlertEvidence(name="prediction_method", value=estimate.method))
    return Finding(
        rule="recheck.fat_loss_unchanged_ai",
        kind="lab_recheck",
        severity="warning" if predicted_low else "info",
        summary=f"Body fat has fallen {-change:.1f} points since the last E2 on an unchanged anastrozole dose, "
        "so E2 has likely dropped; an E2 recheck is warranted.",
        evidence=tuple(evidence),
        situation=(e2.event_id, s.anastrozole_since.event_id),
        sources=(SEED_MECHANISM, SEED_LABS),
    )


def low_e2_symptoms_fat_loss(s: Situation, settings: RuleSettings) -> Finding | None:
    """Low-E2 symptoms logged while losing fat on anastrozole: an E2 recheck is warranted."""
    if not s.on_ai or s.body_fat_slope is None or s.body_fat_slope > settings.fat_loss_symptoms_slope_pct_per_week:
        return None
    window = settings.symptom_window_days * DAY_S
    recent = [x for x in s.symptoms if s.now_s - x.time_s <= window and x.names & LOW_E2_SYMPTOMS]
    names = sorted(set().union(*(x.names & LOW_E2_SYMPTOMS for x in recent))) if recent else []
    if len(names) < settings.min_low_e2_symptoms:
        return None
    situation_anchor = (s.last_e2.event_id,) if s.last_e2 else ()
    return Finding(
        rule="recheck.low_e2_symptoms_fat_loss",
        kind="lab_recheck",
        severity="warning",
        summary="Low-E2 symptoms are logged while body fat is falling on anastrozole; an E2 recheck is warranted.",
        evidence=(
            AlertEvidence(name="low_e2_symptoms", value=", ".join(names), event_ids=[x.event_id for x in recent]),
            *_fat_evidence(s),
            _dose_evidence(s),
        ),
        situation=(*situation_anchor, s.anastrozole_since.event_id if s.anastrozole_since else ""),
        sources=(SEED_MECHANISM,),
    )


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
)


def evaluate(s: Situation, settings: RuleSettings) -> list[Finding]:
    """Every rule's finding for this situation, in rule order."""
    return [finding for rule in RULES if (finding := rule(s, settings)) is not None]
