"""The clinical engine: one athlete's state, a step function (event -> state + alerts) and a clock.

Events in and alerts out are the core's own values (`domain.events`); `schemas.boundary` translates the event
contract's messages at the edge.

`step` folds one event (in event-time order) into the athlete's state and runs every rule on the resulting
situation. `advance` moves the athlete's clock to a time without an event: scheduled rechecks (after TRT
starts, after a dose change, the routine intervals) fall due on the clock, not on the next event, and `step`
first advances the clock to the event, so evaluate and a stream that ticks give the same alerts.

One alert per clinical question. A finding names its rule and `anchor` (the draw or event that defines the
question). The first finding for a rule and anchor raises an alert, version 1, whose id is a hash of the
athlete, rule, anchor and severity, so replays give the same ids. While it stands, a finding citing events it
has not cited before (`evidence_events`: another symptom log, the T drawn with the E2) is new evidence: the
same alert again with the next `version`. Anything else is the same question again and raises nothing;
reminders are the delivery layer's job. A step up in severity is a new question: a new alert (new id).
A new draw is a new anchor, so a new alert.

Imports do not page: an alert is `historical` when its time is more than `historical_after_days` older than
the moment it is raised (made known), i.e. it is news from a history imported long after the fact (a
backfill, a bulk send, a clinic onboarding). The fold has no wall clock, so the mark is made where the raise
time is known (`mark_historical`): by the stream when it releases an alert version (the release time), and by
`evaluate(..., as_of_s=T)`, which reads the timeline as a history received whole at T, as the stream would
see a bulk send at T. A timeline folded without `as_of_s` is read as arriving live: nothing is old when raised.

State stays bounded: the trend keeps `keep_days`, pairs keep `max_pairs`, symptoms keep their window,
training load is a running total since the last E2, and alerts whose question has not come up for
`ALERT_MEMORY_DAYS` are forgotten.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Iterable

from aromatrack.domain import bodycomp, correlation, labs, rules, training_load
from aromatrack.domain.events import (
    Alert,
    DoseChange,
    Event,
    LabResult,
    PhaseChange,
    Profile,
    ScaleReading,
    SymptomLog,
    WorkoutFile,
    WorkoutSummary,
)
from aromatrack.domain.rules import DAY_S, EventRef, Symptoms

# Same-time events are processed in this order, then by event id, so every run sees one order. A draw comes
# before a dose change at the same time: the draw was taken on the dose before the change.
TYPE_ORDER: dict[type[Event], int] = {
    Profile: 0,
    PhaseChange: 1,
    ScaleReading: 2,
    WorkoutSummary: 3,
    WorkoutFile: 3,
    SymptomLog: 4,
    LabResult: 5,
    DoseChange: 6,
}
# Labs drawn at the same time are one panel: the rules that anchor on the E2 see the rest of it first.
LAB_ORDER = {"estradiol": 1}
# Results whose trend a rule compares (anastrozole's wider effects); the last two of each are kept.
TRACKED_RESULTS = ("hdl", "ldl", "bmd_lumbar_spine")
# Finished days of load kept: a week and the four weeks before it (the regimen-change comparison).
LOAD_DAYS_KEPT = 35
# A T dose within this many days of the TRT start is part of starting, not a dose change.
TRT_START_GRACE_DAYS = 14.0
ALERT_MEMORY_DAYS = 400.0
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class EngineSettings:
    rules: rules.RuleSettings = field(default_factory=rules.RuleSettings)
    trend: bodycomp.TrendSettings = field(default_factory=bodycomp.TrendSettings)
    correlation: correlation.CorrelationSettings = field(default_factory=correlation.CorrelationSettings)
    # An alert raised this long after its time is history, not news: stored and summarised, not paged.
    historical_after_days: float = 14.0


@dataclass(frozen=True)
class OpenAlert:
    """The latest version of one clinical question's alert, and what it has cited so far."""

    alert_id: str
    severity: str
    version: int
    raised_s: float  # when version 1 was raised
    last_seen_s: float  # the last time a rule found this question (for forgetting it)
    cited: frozenset[str]


@dataclass
class LoadState:
    """Daily training load folded day by day (CTL/ATL by `training_load.daily_load_model`, carried over), the
    finished days' loads kept for the weekly comparison, and the runs the training rules look at."""

    first_day: int | None = None  # the first day with load (the model starts cold there)
    folded_through: int | None = None  # the last finished day folded (days since the epoch, UTC)
    ctl: float = 0.0
    atl: float = 0.0
    acwr: float | None = None
    open_days: dict[int, float] = field(default_factory=dict)  # load of days not finished yet
    finished: list[tuple[int, float]] = field(default_factory=list)  # (day, load), the last LOAD_DAYS_KEPT
    first_workouts: dict[int, EventRef] = field(default_factory=dict)  # the first workout of each kept day
    high_acwr_days: int = 0
    high_acwr_since: EventRef | None = None
    regimen_start: EventRef | None = None
    week_load: float = 0.0
    previous_weekly_load: float | None = None


@dataclass
class AthleteState:
    athlete_id: str
    phase: str = "none"
    trt_start: EventRef | None = None
    anastrozole_weekly_mg: float = 0.0
    anastrozole_since: EventRef | None = None
    last_dose_change: EventRef | None = None
    last_dose_event: EventRef | None = None
    last_e2: labs.Lab | None = None
    unconfirmed_low_e2: int = 0
    last_t: labs.Lab | None = None
    trend: bodycomp.BodyFatTrend = field(default_factory=bodycomp.BodyFatTrend)
    last_scale: EventRef | None = None
    fat_at_last_e2: float | None = None
    pairs: list[correlation.E2Pair] = field(default_factory=list)
    symptoms: list[Symptoms] = field(default_factory=list)
    load_since_e2: float = 0.0
    modality_minutes_since_e2: dict[str, float] = field(default_factory=dict)
    alerts: dict[tuple[str, tuple[str, ...]], OpenAlert] = field(default_factory=dict)  # by (rule, anchor)
    phase_since: EventRef | None = None
    results: dict[str, tuple[labs.Lab, ...]] = field(default_factory=dict)
    load: "LoadState" = field(default_factory=lambda: LoadState())
    last_time_s: float | None = None  # the athlete's clock: the last event's time, or a later clock step
    next_due_s: float | None = None  # when the next scheduled recheck falls due, as of the last rules run
    athlete: training_load.Athlete = training_load.Athlete()  # the latest profile's numbers


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


def type_rank(event: Event) -> tuple[int, int]:
    """Where an event goes among events at the same time (before its id breaks the tie)."""
    return TYPE_ORDER[type(event)], LAB_ORDER.get(event.analyte, 0) if isinstance(event, LabResult) else 0


def order_key(event: Event) -> tuple:
    return (event.time, type_rank(event), event.event_id)


def _ref(event: Event) -> EventRef:
    return EventRef(event.time_s, event.event_id)


def _apply_dose(state: AthleteState, event: DoseChange) -> None:
    ref = _ref(event)
    state.last_dose_event = ref
    if event.drug == "anastrozole":
        state.anastrozole_weekly_mg = event.dose_mg * event.times_per_week
        state.anastrozole_since = ref
    if event.drug == "testosterone_cypionate" and event.times_per_week > 0 and state.phase != "trt":
        state.phase, state.trt_start = "trt", ref
    starting = state.trt_start is not None and ref.time_s - state.trt_start.time_s <= TRT_START_GRACE_DAYS * DAY_S
    if event.drug in ("anastrozole", "testosterone_cypionate") and not starting:
        state.last_dose_change = ref


def _apply_scale(state: AthleteState, event: ScaleReading, settings: EngineSettings, outcome: Outcome) -> None:
    previous_time = state.trend.points[-1][0] if state.trend.points else None
    reason = bodycomp.add_reading(state.trend, event.time_s, event.body_fat_pct, settings.trend)
    if reason is not None:
        outcome.rejection = reason
        return
    state.last_scale = _ref(event)
    e2_time = state.last_e2.time_s if state.last_e2 else None
    if e2_time is not None and previous_time is not None and previous_time <= e2_time <= event.time_s:
        # the first reading after the draw: interpolate the fat at the draw instead of carrying it forward
        _set_fat_at_last_e2(state, bodycomp.trend_at(state.trend, e2_time, settings.trend))
    smoothed = state.trend.points[-1][1]
    change = None if state.fat_at_last_e2 is None else smoothed - state.fat_at_last_e2
    outcome.trend = TrendSample(smoothed, state.trend.slope_per_week, change)


def _set_fat_at_last_e2(state: AthleteState, fat: float | None) -> None:
    state.fat_at_last_e2 = fat
    if fat is not None and state.pairs and state.last_e2 and state.pairs[-1].e2_event_id == state.last_e2.event_id:
        state.pairs[-1] = replace(state.pairs[-1], body_fat_pct=fat)


def _apply_lab(state: AthleteState, event: LabResult, settings: EngineSettings, outcome: Outcome) -> None:
    lab = labs.normalise(event, settings.rules.default_method_by_lab.get(event.lab_id or ""))
    if lab.analyte in TRACKED_RESULTS:
        state.results[lab.analyte] = (*state.results.get(lab.analyte, ())[-1:], lab)
    if lab.analyte == "testosterone_total":
        state.last_t = lab
    if lab.analyte != "estradiol":
        return
    low = lab.comparator in ("<", "<=") or rules.e2_is_low(lab, settings.rules)
    state.unconfirmed_low_e2 = state.unconfirmed_low_e2 + 1 if low and lab.method != "lc_msms" else 0
    draw_s = event.time_s
    fat = bodycomp.trend_at(state.trend, draw_s, settings.trend)
    previous_fat = state.fat_at_last_e2
    last_pair = state.pairs[-1] if state.pairs else None
    predicted = None
    if last_pair is not None and fat is not None:
        predicted = correlation.predict_e2(state.pairs, last_pair, fat, settings.correlation).predicted_e2_pg_ml
    weeks = (draw_s - state.last_e2.time_s) / (7 * DAY_S) if state.last_e2 else None
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


def _day(time_s: float) -> int:
    return int(time_s // DAY_S)


def _fold_days(state: AthleteState, through_day: int, settings: EngineSettings) -> None:
    """Fold every finished day up to `through_day` into the load model and update the runs the training rules
    read: the days in a row with a very high ACWR, and a sharp rise of the weekly load over the 4 weeks before."""
    load = state.load
    if load.folded_through is None:
        if not load.open_days:
            return
        load.first_day = min(load.open_days)
        load.folded_through = load.first_day - 1
    if through_day <= load.folded_through:
        return
    finished = {day: value for day, value in load.open_days.items() if day <= through_day}
    days = training_load.daily_load_model(
        {date.fromordinal(day + EPOCH_ORDINAL): value for day, value in finished.items()},
        start=date.fromordinal(load.folded_through + 1 + EPOCH_ORDINAL),
        end=date.fromordinal(through_day + EPOCH_ORDINAL),
        carry=(load.ctl, load.atl),
    )
    rules_settings = settings.rules
    for model_day in days:
        day = model_day.day.toordinal() - EPOCH_ORDINAL
        load.ctl, load.atl, load.acwr = model_day.ctl, model_day.atl, model_day.acwr
        load.finished = [*load.finished, (day, model_day.load)][-LOAD_DAYS_KEPT:]
        # A model that started cold reads any load as acute until the chronic load has built up.
        very_high = (
            day - (load.first_day or day) >= rules_settings.load_history_min_days
            and model_day.acwr is not None
            and model_day.acwr > rules_settings.overload_acwr
            and model_day.ctl >= rules_settings.overload_min_ctl
        )
        if very_high:
            load.high_acwr_days += 1
            if load.high_acwr_since is None:
                load.high_acwr_since = load.first_workouts.get(day) or _latest_workout(load, day)
        else:
            load.high_acwr_days, load.high_acwr_since = 0, None
        _update_regimen(load, day, rules_settings)
    load.open_days = {day: value for day, value in load.open_days.items() if day > through_day}
    load.first_workouts = {day: ref for day, ref in load.first_workouts.items() if day > through_day - LOAD_DAYS_KEPT}
    load.folded_through = through_day


def _latest_workout(load: LoadState, day: int) -> EventRef | None:
    earlier = [d for d in load.first_workouts if d <= day]
    return load.first_workouts[max(earlier)] if earlier else None


def _update_regimen(load: LoadState, day: int, settings: rules.RuleSettings) -> None:
    """The last 7 finished days against the weekly average of the 28 before; a rise starts a regimen (anchored
    on its first workout) that lasts until the comparison no longer shows it. `finished` holds every day (rest
    days as zero) up to `day`, so the week and the four before are its last 7 and the 28 before them."""
    week = sum(value for _, value in load.finished[-7:])
    load.week_load = week
    # Before five weeks of load history, a "rise" is the tracker starting, not the athlete.
    if len(load.finished) < LOAD_DAYS_KEPT:
        load.previous_weekly_load, load.regimen_start = None, None
        return
    previous = sum(value for _, value in load.finished[:-7]) / 4
    load.previous_weekly_load = previous
    rising = week >= settings.regimen_min_weekly_load and week > settings.regimen_change_ratio * previous
    if not rising:
        load.regimen_start = None
    elif load.regimen_start is None:
        starts = [d for d in load.first_workouts if day - 7 < d <= day]
        load.regimen_start = load.first_workouts[min(starts)] if starts else None


def _apply_workout(state: AthleteState, event: WorkoutSummary) -> None:
    """A workout's load (TSS scale) and modality, as a FIT-derived summary carries them or else computed with the
    athlete's profile (`training_load.summary_load`, as the workouts agent does), counted on its day."""
    loaded = training_load.summary_load(event, state.athlete)
    day = _day(event.time_s)
    state.load.open_days[day] = state.load.open_days.get(day, 0.0) + loaded.load
    state.load.first_workouts.setdefault(day, _ref(event))
    state.load_since_e2 += loaded.load
    minutes = state.modality_minutes_since_e2
    minutes[loaded.modality] = minutes.get(loaded.modality, 0.0) + event.workout.duration_s / 60


def _apply(state: AthleteState, event: Event, settings: EngineSettings, outcome: Outcome) -> None:
    """The event's effect on the state (a FIT upload not decoded, `WorkoutFile`, has none: only the clock moves)."""
    _fold_days(state, _day(event.time_s) - 1, settings)
    if isinstance(event, Profile):
        state.athlete = event.athlete
    elif isinstance(event, PhaseChange):
        if event.phase == "trt" and state.phase != "trt":
            state.trt_start = _ref(event)
        if event.phase != state.phase:
            state.phase_since = _ref(event)
        state.phase = event.phase
    elif isinstance(event, DoseChange):
        _apply_dose(state, event)
    elif isinstance(event, ScaleReading):
        _apply_scale(state, event, settings, outcome)
    elif isinstance(event, WorkoutSummary):
        _apply_workout(state, event)
    elif isinstance(event, SymptomLog):
        state.symptoms.append(Symptoms(event.time_s, event.symptoms, event.event_id))
    elif isinstance(event, LabResult):
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
        last_dose_event=state.last_dose_event,
        last_e2=state.last_e2,
        unconfirmed_low_e2=state.unconfirmed_low_e2,
        last_e2_time_s=state.last_e2.time_s if state.last_e2 else None,
        last_t=state.last_t,
        last_t_time_s=state.last_t.time_s if state.last_t else None,
        body_fat_now=fat_now,
        body_fat_slope=state.trend.slope_per_week,
        body_fat_at_last_e2=state.fat_at_last_e2,
        last_scale=state.last_scale,
        e2_estimate=estimate,
        symptoms=tuple(state.symptoms),
        phase_since=state.phase_since,
        training=rules.TrainingStatus(
            acwr=state.load.acwr,
            ctl=state.load.ctl,
            atl=state.load.atl,
            high_acwr_days=state.load.high_acwr_days,
            high_acwr_since=state.load.high_acwr_since,
            week_load=state.load.week_load,
            previous_weekly_load=state.load.previous_weekly_load,
            regimen_start=state.load.regimen_start,
        ),
        results=dict(state.results),
    )


def alert_id(athlete_id: str, rule: str, anchor: tuple[str, ...], severity: str) -> str:
    """Stable: the same athlete, rule, anchor and severity always give the same id."""
    body = "|".join((athlete_id, rule, ",".join(anchor), severity))
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def _alert(state: AthleteState, finding: rules.Finding, open_alert: OpenAlert, now_s: float) -> Alert:
    return Alert(
        alert_id=open_alert.alert_id,
        version=open_alert.version,
        raised_at=datetime.fromtimestamp(open_alert.raised_s, tz=timezone.utc),
        athlete_id=state.athlete_id,
        time=datetime.fromtimestamp(now_s, tz=timezone.utc),
        kind=finding.kind,
        rule=finding.rule,
        severity=finding.severity,
        summary=finding.summary,
        evidence=finding.evidence,
        sources=finding.sources,
        anchor_event_ids=finding.anchor,
    )


def _raise(state: AthleteState, findings: list[rules.Finding], now_s: float) -> list[Alert]:
    """New alerts and new versions for these findings (see the module docstring)."""
    alerts = []
    for finding in findings:
        key = (finding.rule, finding.anchor)
        known = state.alerts.get(key)
        cited = frozenset(finding.evidence_events)
        if known is None or rules.SEVERITY_RANK[finding.severity] > rules.SEVERITY_RANK[known.severity]:
            identity = alert_id(state.athlete_id, finding.rule, finding.anchor, finding.severity)
            current = OpenAlert(identity, finding.severity, 1, now_s, now_s, cited)
        elif finding.severity == known.severity and not cited <= known.cited:
            current = replace(known, version=known.version + 1, last_seen_s=now_s, cited=known.cited | cited)
        else:
            state.alerts[key] = replace(known, last_seen_s=now_s)
            continue
        state.alerts[key] = current
        alerts.append(_alert(state, finding, current, now_s))
    return alerts


def is_historical(alert_time: datetime, raised_at_s: float, settings: EngineSettings = EngineSettings()) -> bool:
    """Whether an alert version of `alert_time` raised (made known) at `raised_at_s` is news from imported history."""
    return raised_at_s - alert_time.timestamp() > settings.historical_after_days * DAY_S


def mark_historical(alert: Alert, raised_at_s: float, settings: EngineSettings = EngineSettings()) -> Alert:
    """The alert as raised at `raised_at_s`: marked `historical` when it is (see the module docstring)."""
    return replace(alert, historical=is_historical(alert.time, raised_at_s, settings))


def _prune(state: AthleteState, now_s: float, settings: EngineSettings) -> None:
    symptom_start = now_s - 2 * settings.rules.symptom_window_days * DAY_S
    state.symptoms = [s for s in state.symptoms if s.time_s >= symptom_start]
    memory_start = now_s - ALERT_MEMORY_DAYS * DAY_S
    state.alerts = {key: value for key, value in state.alerts.items() if value.last_seen_s >= memory_start}


def _run_rules(state: AthleteState, now_s: float, settings: EngineSettings) -> list[Alert]:
    _prune(state, now_s, settings)
    current = situation(state, now_s, settings)
    state.next_due_s = rules.next_due_s(current, settings.rules)
    return _raise(state, rules.evaluate(current, settings.rules), now_s)


def _tick(state: AthleteState, until_s: float, settings: EngineSettings, *, inclusive: bool) -> list[Alert]:
    """Step the clock through every scheduled due time up to `until_s` (before it unless `inclusive`). Only the
    clock has moved since the last rules run, so the due time that run computed still holds."""
    alerts: list[Alert] = []
    while state.last_time_s is not None:
        due = state.next_due_s
        if due is None or due > until_s or (due == until_s and not inclusive):
            break
        state.last_time_s = due
        alerts += _run_rules(state, due, settings)
    return alerts


def advance(state: AthleteState, until_s: float, settings: EngineSettings = EngineSettings()) -> list[Alert]:
    """Move the athlete's clock to `until_s` (epoch s) without an event; return the alerts that fall due on the
    way, each stamped with its due time. A clock already at or past `until_s` stays where it is."""
    alerts = _tick(state, until_s, settings, inclusive=True)
    if state.last_time_s is not None and until_s > state.last_time_s:
        state.last_time_s = until_s
    return alerts


def step(state: AthleteState, event: Event, settings: EngineSettings = EngineSettings()) -> tuple[AthleteState, Outcome]:
    """Fold one event (the next in event-time order) into the state; return it with the alerts raised: those
    falling due on the clock before the event, then the event's own.

    The state is updated in place and returned: the caller owns it (a fold), and copying the whole history
    on every event would cost more than it protects.
    """
    outcome = Outcome()
    now_s = event.time_s
    due_alerts = _tick(state, now_s, settings, inclusive=False)
    _apply(state, event, settings, outcome)
    state.last_time_s = now_s if state.last_time_s is None else max(state.last_time_s, now_s)
    outcome.alerts = due_alerts + _run_rules(state, now_s, settings)
    return state, outcome


def fold(
    events: Iterable[Event],
    settings: EngineSettings = EngineSettings(),
    states: dict[str, AthleteState] | None = None,
) -> Iterable[tuple[Event, Outcome]]:
    """Run a timeline (any order, any athletes) through the engine in event-time order; `states` (athlete id ->
    state) is filled in as it goes, for a caller that advances the clocks afterwards."""
    states = {} if states is None else states
    for event in sorted(events, key=order_key):
        state = states.setdefault(event.athlete_id, AthleteState(event.athlete_id))
        _, outcome = step(state, event, settings)
        yield event, outcome


def evaluate(
    events: Iterable[Event], settings: EngineSettings = EngineSettings(), as_of_s: float | None = None
) -> list[Alert]:
    """Every alert version a timeline raises, in event-time order, then those falling due as every athlete's
    clock runs on to `as_of_s`. With `as_of_s` the timeline is a history received whole at that time (as the
    stream sees a bulk send then): each version is marked `historical` as raised at `as_of_s`. Without it each
    clock stops at the athlete's last event and nothing is marked (a timeline arriving live)."""
    states: dict[str, AthleteState] = {}
    alerts = [alert for _, outcome in fold(events, settings, states) for alert in outcome.alerts]
    if as_of_s is None:
        return alerts
    for state in states.values():
        alerts += advance(state, as_of_s, settings)
    return [mark_historical(alert, as_of_s, settings) for alert in alerts]
