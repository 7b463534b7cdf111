"""The clinical engine: one athlete's state and a step function, event -> state + alerts.

`step` folds one event (in event-time order) into the athlete's state and runs every rule on the resulting
situation. Dedupe: a rule's finding carries a `situation` key (the ids of the events that define it); the same
rule with the same situation alerts again only after `cooldown_days`, and each alert's id is a hash of the
athlete, rule, situation and occurrence number, so replaying a history yields the same ids and consumers can
drop repeats. State stays bounded: the trend keeps `keep_days`, pairs keep `max_pairs`, symptoms keep their
window, training load is a running total since the last E2, and old dedupe entries are pruned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable

from aromatrack.domain import bodycomp, correlation, labs, rules, training_load
from aromatrack.domain.rules import DAY_S, EventRef, Symptoms
from aromatrack.schemas.events import Alert, EventBase

# Same-time events are processed in this order, then by event id, so every run sees one order.
TYPE_ORDER = {
    "athlete.profile": 0,
    "protocol.phase": 1,
    "dose.change": 2,
    "scale.reading": 3,
    "workout.summary": 4,
    "workout.fit": 4,
    "symptom.log": 5,
    "lab.result": 6,
}
# A T dose within this many days of the TRT start is part of starting, not a dose change.
TRT_START_GRACE_DAYS = 14.0
DEDUPE_MEMORY_DAYS = 400.0


@dataclass(frozen=True)
class EngineSettings:
    rules: rules.RuleSettings = field(default_factory=rules.RuleSettings)
    trend: bodycomp.TrendSettings = field(default_factory=bodycomp.TrendSettings)
    correlation: correlation.CorrelationSettings = field(default_factory=correlation.CorrelationSettings)


@dataclass
class AthleteState:
    athlete_id: str
    phase: str = "none"
    trt_start: EventRef | None = None
    anastrozole_weekly_mg: float = 0.0
    anastrozole_since: EventRef | None = None
    last_dose_change: EventRef | None = None
    last_e2: labs.Lab | None = None
    last_t: labs.Lab | None = None
    trend: bodycomp.BodyFatTrend = field(default_factory=bodycomp.BodyFatTrend)
    last_scale: EventRef | None = None
    fat_at_last_e2: float | None = None
    pairs: list[correlation.E2Pair] = field(default_factory=list)
    symptoms: list[Symptoms] = field(default_factory=list)
    load_since_e2: float = 0.0
    modality_minutes_since_e2: dict[str, float] = field(default_factory=dict)
    fired: dict[tuple[str, tuple[str, ...]], tuple[float, int]] = field(default_factory=dict)
    last_time_s: float | None = None
    profile: dict[str, float | str | None] | None = None  # the numbers training_load.Athlete needs


@dataclass(frozen=True)
class TrendSample:
    """The body-fat trend after an accepted reading (for the BODY_FAT_TREND series)."""

    smoothed_pct: float
    slope_pct_per_week: float | None
    change_since_e2_pct: float | None


@dataclass(frozen=True)
class E2Context:
    """An E2 draw with its body-fat, training and dose context (for the E2_CORRELATION series)."""

    e2_pg_ml: float
    body_fat_pct: float | None
    body_fat_change_pct: float | None
    weekly_load: float | None
    modality_share: dict[str, float]
    anastrozole_weekly_mg: float
    slope_pg_ml_per_pct: float | None
    pairs: int
    predicted_e2_pg_ml: float | None


@dataclass
class Outcome:
    alerts: list[Alert] = field(default_factory=list)
    rejection: str | None = None
    trend: TrendSample | None = None
    e2: E2Context | None = None


def order_key(event: EventBase) -> tuple:
    return (event.time, TYPE_ORDER.get(event.type, 9), event.event_id or "")


def _ts(event: EventBase) -> float:
    return event.time.timestamp()


def _ref(event: EventBase) -> EventRef:
    return EventRef(_ts(event), event.event_id or "")


def workout_load(event: EventBase, athlete: training_load.Athlete) -> tuple[float, str]:
    """A workout's load (TSS scale) and modality: as a FIT-derived summary carries them, else computed by the
    training-load core from the summary and the athlete's profile (`training_load.summary_load`, as the
    workouts agent does)."""
    loaded = training_load.summary_load(event.model_dump(), athlete)
    return loaded.load, loaded.modality


def _athlete(state: AthleteState) -> training_load.Athlete:
    return training_load.Athlete(**state.profile) if state.profile else training_load.Athlete()


def _apply_dose(state: AthleteState, event: EventBase) -> None:
    ref = _ref(event)
    if event.drug == "anastrozole":
        state.anastrozole_weekly_mg = event.dose_mg * event.times_per_week
        state.anastrozole_since = ref
    if event.drug == "testosterone_cypionate" and event.times_per_week > 0 and state.phase != "trt":
        state.phase, state.trt_start = "trt", ref
    starting = state.trt_start is not None and ref.time_s - state.trt_start.time_s <= TRT_START_GRACE_DAYS * DAY_S
    if event.drug in ("anastrozole", "testosterone_cypionate") and not starting:
        state.last_dose_change = ref


def _apply_scale(state: AthleteState, event: EventBase, settings: EngineSettings, outcome: Outcome) -> None:
    previous_time = state.trend.points[-1][0] if state.trend.points else None
    reason = bodycomp.add_reading(state.trend, _ts(event), event.body_fat_pct, settings.trend)
    if reason is not None:
        outcome.rejection = reason
        return
    state.last_scale = _ref(event)
    e2_time = state.last_e2.time.timestamp() if state.last_e2 else None
    if e2_time is not None and previous_time is not None and previous_time <= e2_time <= _ts(event):
        # the first reading after the draw: interpolate the fat at the draw instead of carrying it forward
        _set_fat_at_last_e2(state, bodycomp.trend_at(state.trend, e2_time, settings.trend))
    smoothed = state.trend.points[-1][1]
    change = None if state.fat_at_last_e2 is None else smoothed - state.fat_at_last_e2
    outcome.trend = TrendSample(smoothed, state.trend.slope_per_week, change)


def _set_fat_at_last_e2(state: AthleteState, fat: float | None) -> None:
    state.fat_at_last_e2 = fat
    if fat is not None and state.pairs and state.last_e2 and state.pairs[-1].e2_event_id == state.last_e2.event_id:
        state.pairs[-1] = replace(state.pairs[-1], body_fat_pct=fat)


def _apply_lab(state: AthleteState, event: EventBase, settings: EngineSettings, outcome: Outcome) -> None:
    lab = labs.normalise(event)
    if lab.analyte == "testosterone_total":
        state.last_t = lab
    if lab.analyte != "estradiol":
        return
    draw_s = _ts(event)
    fat = bodycomp.trend_at(state.trend, draw_s, settings.trend)
    previous_fat = state.fat_at_last_e2
    last_pair = state.pairs[-1] if state.pairs else None
    predicted = None
    if last_pair is not None and fat is not None:
        predicted = correlation.predict_e2(state.pairs, last_pair, fat, settings.correlation).predicted_e2_pg_ml
    weeks = (draw_s - state.last_e2.time.timestamp()) / (7 * DAY_S) if state.last_e2 else None
    total_minutes = sum(state.modality_minutes_since_e2.values())
    outcome.e2 = E2Context(
        e2_pg_ml=lab.value,
        body_fat_pct=fat,
        body_fat_change_pct=None if fat is None or previous_fat is None else fat - previous_fat,
        weekly_load=state.load_since_e2 / weeks if weeks else None,
        modality_share={m: v / total_minutes for m, v in sorted(state.modality_minutes_since_e2.items())} if total_minutes else {},
        anastrozole_weekly_mg=state.anastrozole_weekly_mg,
        slope_pg_ml_per_pct=correlation.fitted_slope(state.pairs, settings.correlation),
        pairs=len(state.pairs),
        predicted_e2_pg_ml=predicted,
    )
    state.last_e2 = lab
    state.fat_at_last_e2 = fat
    state.load_since_e2 = 0.0
    state.modality_minutes_since_e2 = {}
    if fat is not None and not lab.censored:
        pair = correlation.E2Pair(draw_s, lab.value, fat, lab.event_id)
        state.pairs = [*state.pairs, pair][-settings.correlation.max_pairs :]


def _apply(state: AthleteState, event: EventBase, settings: EngineSettings, outcome: Outcome) -> None:
    kind = event.type
    if kind == "athlete.profile":
        state.profile = training_load.profile_numbers(event.model_dump())
    elif kind == "protocol.phase":
        if event.phase == "trt" and state.phase != "trt":
            state.trt_start = _ref(event)
        state.phase = event.phase
    elif kind == "dose.change":
        _apply_dose(state, event)
    elif kind == "scale.reading":
        _apply_scale(state, event, settings, outcome)
    elif kind == "workout.summary":
        load, modality = workout_load(event, _athlete(state))
        state.load_since_e2 += load
        state.modality_minutes_since_e2[modality] = state.modality_minutes_since_e2.get(modality, 0.0) + event.duration_s / 60
    elif kind == "symptom.log":
        state.symptoms.append(Symptoms(_ts(event), frozenset(event.symptoms), event.event_id or ""))
    elif kind == "lab.result":
        _apply_lab(state, event, settings, outcome)


def situation(state: AthleteState, now_s: float, settings: EngineSettings) -> rules.Situation:
    """The rules' view of the state at `now_s`."""
    fat_now = state.trend.points[-1][1] if state.trend.points else None
    estimate = None
    last_pair = state.pairs[-1] if state.pairs else None
    if fat_now is not None and last_pair is not None and state.last_e2 and last_pair.e2_event_id == state.last_e2.event_id:
        estimate = correlation.predict_e2(state.pairs, last_pair, fat_now, settings.correlation)
    return rules.Situation(
        now_s=now_s,
        phase=state.phase,
        trt_start=state.trt_start,
        anastrozole_weekly_mg=state.anastrozole_weekly_mg,
        anastrozole_since=state.anastrozole_since,
        last_dose_change=state.last_dose_change,
        last_e2=state.last_e2,
        last_e2_time_s=state.last_e2.time.timestamp() if state.last_e2 else None,
        last_t=state.last_t,
        last_t_time_s=state.last_t.time.timestamp() if state.last_t else None,
        body_fat_now=fat_now,
        body_fat_slope=state.trend.slope_per_week,
        body_fat_at_last_e2=state.fat_at_last_e2,
        last_scale=state.last_scale,
        e2_estimate=estimate,
        symptoms=tuple(state.symptoms),
    )


def alert_id(athlete_id: str, rule: str, situation_key: tuple[str, ...], occurrence: int) -> str:
    """Stable: the same athlete, rule, situation and occurrence always give the same id."""
    body = "|".join((athlete_id, rule, ",".join(situation_key), str(occurrence)))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _raise(state: AthleteState, findings: list[rules.Finding], now_s: float, settings: EngineSettings) -> list[Alert]:
    cooldown_s = settings.rules.cooldown_days * DAY_S
    alerts = []
    for finding in findings:
        key = (finding.rule, finding.situation)
        last = state.fired.get(key)
        if last is not None and now_s - last[0] < cooldown_s:
            continue
        occurrence = 0 if last is None else last[1] + 1
        state.fired[key] = (now_s, occurrence)
        alerts.append(
            Alert(
                alert_id=alert_id(state.athlete_id, finding.rule, finding.situation, occurrence),
                athlete_id=state.athlete_id,
                time=datetime.fromtimestamp(now_s, tz=timezone.utc),
                kind=finding.kind,
                rule=finding.rule,
                severity=finding.severity,
                summary=finding.summary,
                evidence=list(finding.evidence),
                sources=list(finding.sources),
            )
        )
    return alerts


def _prune(state: AthleteState, now_s: float, settings: EngineSettings) -> None:
    symptom_start = now_s - 2 * settings.rules.symptom_window_days * DAY_S
    state.symptoms = [s for s in state.symptoms if s.time_s >= symptom_start]
    dedupe_start = now_s - DEDUPE_MEMORY_DAYS * DAY_S
    state.fired = {key: value for key, value in state.fired.items() if value[0] >= dedupe_start}


def step(state: AthleteState, event: EventBase, settings: EngineSettings = EngineSettings()) -> tuple[AthleteState, Outcome]:
    """Fold one event (the next in event-time order) into the state; return it with the alerts raised.

    The state is updated in place and returned: the caller owns it (a fold), and copying the whole history
    on every event would cost more than it protects.
    """
    outcome = Outcome()
    now_s = _ts(event)
    _apply(state, event, settings, outcome)
    state.last_time_s = now_s
    _prune(state, now_s, settings)
    outcome.alerts = _raise(state, rules.evaluate(situation(state, now_s, settings), settings.rules), now_s, settings)
    return state, outcome


def fold(events: Iterable[EventBase], settings: EngineSettings = EngineSettings()) -> Iterable[tuple[EventBase, Outcome]]:
    """Run a timeline (any order, any athletes) through the engine in event-time order."""
    states: dict[str, AthleteState] = {}
    for event in sorted(events, key=order_key):
        state = states.setdefault(event.athlete_id, AthleteState(event.athlete_id))
        _, outcome = step(state, event, settings)
        yield event, outcome


def evaluate(events: Iterable[EventBase], settings: EngineSettings = EngineSettings()) -> list[Alert]:
    """Every alert a timeline raises, in event-time order."""
    return [alert for _, outcome in fold(events, settings) for alert in outcome.alerts]
