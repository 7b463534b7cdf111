"""The clinical core's own values: the events it folds and the alerts it raises, as frozen dataclasses.

The event contract (`aromatrack.schemas`) validates what arrives and translates it into these values at the
boundary (`aromatrack.schemas.boundary`), and the core's alerts back into wire messages; the core never reads a
wire message, so the contract can change its form without the rules noticing. Each event value carries what
the core reads of that event, no more.

Public API:

- `Event(athlete_id, time, event_id)` -- the envelope every event value shares: `time` is the event's instant
  (an aware datetime), `event_id` the contract's stable id (also what alerts cite as evidence).
- `Profile(..., athlete)` -- an athlete's numbers for training load (`training_load.Athlete`).
- `PhaseChange(..., phase)` -- the protocol phase set: "trt", "post_trt_recovery" or "none".
- `DoseChange(..., drug, dose_mg, times_per_week)` -- a dose set (`times_per_week` 0: stopped).
- `ScaleReading(..., body_fat_pct)` -- a weigh-in's body fat.
- `LabResult(..., analyte, value, unit, comparator=None, method=None, lab_id=None, reference_low=None,
  reference_high=None)` -- one analyte of one draw as the lab reported it (`labs.normalise` gives it in
  canonical units); `time` is the draw time.
- `WorkoutSummary(..., workout, load=None, modality=None, trimp=None)` -- a workout's numbers
  (`training_load.WorkoutInput`) and, for a summary made from a FIT file, the load (TSS scale), modality and
  TRIMP computed from the file's samples, which the summary no longer holds (`training_load.summary_load`).
- `WorkoutFile(...)` -- a FIT upload not decoded into summaries: the core reads only its time.
- `SymptomLog(..., symptoms)` -- the symptom names logged.
- `Evidence(name, value, unit=None, event_ids=())` -- one number behind an alert and the events it came from.
- `Alert(alert_id, version, athlete_id, time, raised_at, kind, rule, severity, summary, evidence, sources,
  anchor_event_ids, historical=False)` -- a flag for a clinician (`engine` says how ids and versions work).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aromatrack.domain.training_load import Athlete, WorkoutInput


@dataclass(frozen=True)
class Event:
    athlete_id: str
    time: datetime
    event_id: str
    # `time` in epoch seconds, computed once: the fold reads it several times an event.
    time_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time_s", self.time.timestamp())


@dataclass(frozen=True)
class Profile(Event):
    athlete: Athlete


@dataclass(frozen=True)
class PhaseChange(Event):
    phase: str


@dataclass(frozen=True)
class DoseChange(Event):
    drug: str
    dose_mg: float
    times_per_week: float


@dataclass(frozen=True)
class ScaleReading(Event):
    body_fat_pct: float


@dataclass(frozen=True)
class LabResult(Event):
    analyte: str
    value: float
    unit: str
    comparator: str | None = None
    method: str | None = None
    lab_id: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None


@dataclass(frozen=True)
class WorkoutSummary(Event):
    workout: WorkoutInput
    load: float | None = None
    modality: str | None = None  # the load is the summary's own when this is one of training_load.MODALITIES
    trimp: float | None = None


@dataclass(frozen=True)
class WorkoutFile(Event):
    pass


@dataclass(frozen=True)
class SymptomLog(Event):
    symptoms: frozenset[str]


@dataclass(frozen=True)
class Evidence:
    name: str
    value: float | str | None
    unit: str | None = None
    event_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alert:
    alert_id: str
    version: int
    athlete_id: str
    time: datetime  # this version's time
    raised_at: datetime  # version 1's time
    kind: str
    rule: str
    severity: str
    summary: str
    evidence: tuple[Evidence, ...]
    sources: tuple[str, ...]
    anchor_event_ids: tuple[str, ...]
    historical: bool = False
