"""The boundary between the event contract and the clinical core: validated events in, alerts out.

`domain_event` turns a validated event (`events.parse_event`) into the core's value for it
(`aromatrack.domain.events`), and `wire_alert` the core's alert into the contract's `Alert` message; `evaluate`
is the engine's `evaluate` on validated events. Every caller of the core (the CLI, the clinical and workouts
agents, the benchmarks and tests) translates here, so the contract and the core each have one definition of
their shapes.
"""

from __future__ import annotations

from typing import Iterable

from aromatrack.domain import engine
from aromatrack.domain import events as domain
from aromatrack.domain.training_load import Athlete, WorkoutInput, profile_numbers
from aromatrack.schemas.events import (
    Alert,
    AlertEvidence,
    AthleteProfile,
    DoseChange,
    EventBase,
    LabResult,
    ProtocolPhase,
    ScaleReading,
    SymptomLog,
    WorkoutFit,
    WorkoutSummary,
)


def domain_event(event: EventBase) -> domain.Event:
    """The core's value for a validated event (TypeError for a model that is not an event type)."""
    envelope = (event.athlete_id, event.time, event.event_id or "")
    if isinstance(event, WorkoutSummary):
        return workout_summary(event)
    if isinstance(event, ScaleReading):
        return domain.ScaleReading(*envelope, body_fat_pct=event.body_fat_pct)
    if isinstance(event, SymptomLog):
        return domain.SymptomLog(*envelope, symptoms=frozenset(event.symptoms))
    if isinstance(event, LabResult):
        return domain.LabResult(
            *envelope, analyte=event.analyte, value=event.value, unit=event.unit, comparator=event.comparator,
            method=event.method, lab_id=event.lab_id, reference_low=event.reference_low,
            reference_high=event.reference_high,
        )
    if isinstance(event, DoseChange):
        return domain.DoseChange(*envelope, drug=event.drug, dose_mg=event.dose_mg, times_per_week=event.times_per_week)
    if isinstance(event, ProtocolPhase):
        return domain.PhaseChange(*envelope, phase=event.phase)
    if isinstance(event, AthleteProfile):
        return domain.Profile(*envelope, athlete=Athlete(**profile_numbers(event.model_dump())))
    if isinstance(event, WorkoutFit):
        return domain.WorkoutFile(*envelope)
    raise TypeError(f"not an event type: {type(event).__name__}")


def workout_summary(event: WorkoutSummary) -> domain.WorkoutSummary:
    """A `workout.summary` as the core reads it (the workouts agent computes its load from this too)."""
    workout = WorkoutInput(
        sport=event.sport, duration_s=event.duration_s, sub_sport=event.sub_sport, avg_hr_bpm=event.avg_hr_bpm,
        max_hr_bpm=event.max_hr_bpm, avg_power_w=event.avg_power_w, normalized_power_w=event.normalized_power_w,
        rpe=event.rpe,
    )
    return domain.WorkoutSummary(
        event.athlete_id, event.time, event.event_id or "", workout=workout, load=event.load,
        modality=event.modality, trimp=event.trimp,
    )


def wire_alert(alert: domain.Alert) -> Alert:
    """The contract's message for one of the core's alerts."""
    return Alert(
        alert_id=alert.alert_id,
        version=alert.version,
        raised_at=alert.raised_at,
        athlete_id=alert.athlete_id,
        time=alert.time,
        kind=alert.kind,
        rule=alert.rule,
        severity=alert.severity,
        summary=alert.summary,
        evidence=[
            AlertEvidence(name=item.name, value=item.value, unit=item.unit, event_ids=list(item.event_ids))
            for item in alert.evidence
        ],
        sources=list(alert.sources),
        anchor_event_ids=list(alert.anchor_event_ids),
        historical=alert.historical,
    )


def evaluate(
    events: Iterable[EventBase], settings: engine.EngineSettings = engine.EngineSettings(), as_of_s: float | None = None
) -> list[Alert]:
    """`engine.evaluate` on validated events: every alert version the timeline raises, as wire messages."""
    return [wire_alert(alert) for alert in engine.evaluate(map(domain_event, events), settings, as_of_s)]
