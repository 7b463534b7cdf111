"""Map validated events onto the InfluxDB series contract (pure: events in, points out)."""

from __future__ import annotations

from functools import singledispatch

from aromatrack.schemas import series
from aromatrack.domain import labs
from aromatrack.domain.rules import HIGH_E2_SYMPTOMS, LOW_E2_SYMPTOMS
from aromatrack.schemas.boundary import domain_event
from aromatrack.schemas.events import DoseChange, EventBase, LabResult, ScaleReading, SymptomLog
from aromatrack.schemas.series import Point


@singledispatch
def event_points(event: EventBase) -> list[Point]:
    """Points that record this event as-is; event types without a raw series return none."""
    return []


@event_points.register
def _(event: ScaleReading) -> list[Point]:
    fields = {name: getattr(event, name) for name in series.BODY_COMPOSITION.fields if name != "fat_mass_kg"}
    fields["fat_mass_kg"] = round(event.weight_kg * event.body_fat_pct / 100, 3)
    tags = {"athlete_id": event.athlete_id, "device": event.device or ""}
    return [series.BODY_COMPOSITION.point(event.time, tags, fields)]


@event_points.register
def _(event: LabResult) -> list[Point]:
    lab = labs.normalise(domain_event(event))
    tags = {"athlete_id": event.athlete_id, "analyte": lab.analyte, "method": lab.method or "", "censored": lab.comparator or "no"}
    fields = {"value": lab.value, "reference_low": lab.reference_low, "reference_high": lab.reference_high, "event_id": lab.event_id}
    return [series.LAB.point(event.time, tags, fields)]


@event_points.register
def _(event: DoseChange) -> list[Point]:
    fields = {"dose_mg": event.dose_mg, "times_per_week": event.times_per_week, "weekly_mg": event.dose_mg * event.times_per_week}
    return [series.DOSE.point(event.time, {"athlete_id": event.athlete_id, "drug": event.drug}, fields)]


@event_points.register
def _(event: SymptomLog) -> list[Point]:
    names = set(event.symptoms)
    fields = {
        "energy": event.energy,
        "mood": event.mood,
        "libido": event.libido,
        "joint_comfort": event.joint_comfort,
        "low_e2_symptoms": len(names & LOW_E2_SYMPTOMS),
        "high_e2_symptoms": len(names & HIGH_E2_SYMPTOMS),
    }
    return [series.SYMPTOMS.point(event.time, {"athlete_id": event.athlete_id}, fields)]
