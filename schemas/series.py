"""InfluxDB series contract: every measurement the service writes, with its tags and fields, and who may read it.

Writers build points through `Series.point`, which refuses unknown tags or fields, and the Grafana
board tests query these same names, so renaming a measurement or field fails a test instead of a board.

Each series belongs to an audience, and each audience has its own InfluxDB database, so that InfluxDB's
own permissions (not a dashboard folder) keep clinical data from coaches: a coach's credentials can read
the coaching database only. A field derived from clinical data inside a coaching series (the body-fat
change since the last E2 draw tells when E2 was drawn) is stored under the same measurement in the
clinical database instead. `by_database` is the one place that routes points.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import cached_property
from typing import Iterable, Mapping

FieldValue = float | int | str | bool


# What an InfluxDB tag, tag key or field key cannot hold, as a regular expression's character class: line protocol
# has no escape for a line break there, a trailing backslash cannot be written, and InfluxDB 1.x and 2.x read a
# backslash before other characters differently. The event contract keeps its labels clear of it
# (schemas/events.py `Label`); the storage adapter refuses it (streams/influx.py `to_line`).
NOT_IN_A_TAG = r"\x00-\x1f\x7f\\"


@dataclass(frozen=True)
class Point:
    """One InfluxDB point as plain data; encoding to line protocol is the storage adapter's job."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time: datetime


class Audience(str, Enum):
    """Who may read a database: coaches (training and body composition) or clinicians (everything)."""

    COACHING = "coaching"
    CLINICAL = "clinical"


def database_name(base: str, audience: Audience) -> str:
    """The audience's InfluxDB database for a deployment's base name (settings' influx_database)."""
    return f"{base}_{audience.value}"


@dataclass(frozen=True)
class _SeriesNames:
    tags: frozenset[str]
    fields: frozenset[str]


@dataclass(frozen=True)
class Series:
    measurement: str
    tags: tuple[str, ...]
    fields: tuple[str, ...]
    audience: Audience
    doc: str = field(default="", compare=False)
    clinical_fields: tuple[str, ...] = ()
    """Fields of a coaching series that reveal clinical data; they are stored in the clinical database."""

    def __post_init__(self) -> None:
        if not set(self.clinical_fields) <= set(self.fields):
            raise ValueError(f"{self.measurement}: clinical fields {self.clinical_fields} are not fields")
        if self.clinical_fields and self.audience is Audience.CLINICAL:
            raise ValueError(f"{self.measurement}: a clinical series is clinical as a whole")

    def fields_for(self, audience: Audience) -> tuple[str, ...]:
        """The fields stored in (and readable from) the audience's database."""
        return self._fields_by_audience[audience]

    @cached_property
    def _names(self) -> "_SeriesNames":
        # Computed once: every point built checks its names against them (`point`).
        return _SeriesNames(frozenset(self.tags), frozenset(self.fields))

    @cached_property
    def _fields_by_audience(self) -> dict[Audience, tuple[str, ...]]:
        # Computed once: every write routes each point by it (`by_database`).
        return {
            audience: tuple(name for name in self.fields if name not in self.clinical_fields) if audience is self.audience
            else self.clinical_fields if audience is Audience.CLINICAL else ()
            for audience in Audience
        }

    def point(self, time: datetime, tags: Mapping[str, str], fields: Mapping[str, FieldValue | None]) -> Point:
        """Build a point, dropping None fields; ValueError names any tag or field not in the contract."""
        if not (tags.keys() <= self._names.tags and fields.keys() <= self._names.fields):
            unknown_tags = set(tags) - set(self.tags)
            unknown_fields = set(fields) - set(self.fields)
            raise ValueError(
                f"{self.measurement}: not in the series contract: "
                f"tags {sorted(unknown_tags)}, fields {sorted(unknown_fields)}"
            )
        present = {name: value for name, value in fields.items() if value is not None}
        if not present:
            raise ValueError(f"{self.measurement}: a point needs at least one field")
        return Point(self.measurement, dict(tags), present, time)


BODY_COMPOSITION = Series(
    "body_composition",
    tags=("athlete_id", "device"),
    fields=(
        "weight_kg",
        "body_fat_pct",
        "muscle_mass_kg",
        "lean_mass_kg",
        "bone_mass_kg",
        "hydration_pct",
        "visceral_fat_rating",
        "fat_mass_kg",
    ),
    audience=Audience.COACHING,
    doc="Raw scale readings, one point per weigh-in.",
)
BODY_FAT_TREND = Series(
    "body_fat_trend",
    tags=("athlete_id",),
    fields=("smoothed_pct", "slope_pct_per_week", "change_since_e2_pct"),
    audience=Audience.COACHING,
    clinical_fields=("change_since_e2_pct",),
    doc="Robust smoothed body-fat % per reading time, its weekly slope and change since the last E2 draw.",
)
WORKOUT = Series(
    "workout",
    tags=("athlete_id", "sport", "modality"),
    fields=(
        "workout_id",
        "duration_s",
        "avg_hr_bpm",
        "max_hr_bpm",
        "avg_power_w",
        "max_power_w",
        "distance_m",
        "trimp",
        "hrtss",
        "power_tss",
        "srpe_load",
        "load",
        "salvaged",
    ),
    audience=Audience.COACHING,
    doc="One point per workout at its start time.",
)
WORKOUT_SAMPLES = Series(
    "workout_samples",
    tags=("athlete_id", "workout_id"),
    fields=("hr_bpm", "power_w", "speed_mps", "cadence_rpm"),
    audience=Audience.COACHING,
    doc="Per-workout samples downsampled for boards (10 s means of the 1 Hz records).",
)
TRAINING_LOAD_DAILY = Series(
    "training_load_daily",
    tags=("athlete_id",),
    fields=("load", "ctl", "atl", "tsb", "acwr"),
    audience=Audience.COACHING,
    doc="Per athlete per day: load and the fitness/fatigue/form model.",
)
MODALITY_WEEKLY = Series(
    "modality_weekly",
    tags=("athlete_id", "modality"),
    fields=("load", "minutes", "share"),
    audience=Audience.COACHING,
    doc="Per athlete per ISO week (Monday 00:00 UTC) and modality: load, minutes and share of the week's load.",
)
LAB = Series(
    "lab",
    tags=("athlete_id", "analyte", "method", "censored"),
    fields=("value", "reference_low", "reference_high", "event_id"),
    audience=Audience.CLINICAL,
    doc="Lab results in canonical units (E2 pg/mL, T ng/dL, hs-CRP mg/L...); censored tag is '<', '>' or 'no'.",
)
DOSE = Series(
    "dose",
    tags=("athlete_id", "drug"),
    fields=("dose_mg", "times_per_week", "weekly_mg"),
    audience=Audience.CLINICAL,
    doc="Dose changes; weekly_mg = dose_mg x times_per_week (0 = stopped).",
)
SYMPTOMS = Series(
    "symptoms",
    tags=("athlete_id",),
    fields=("energy", "mood", "libido", "joint_comfort", "low_e2_symptoms", "high_e2_symptoms"),
    audience=Audience.CLINICAL,
    doc="Symptom logs: scores and counts of low-E2 and high-E2 symptom names.",
)
E2_CORRELATION = Series(
    "e2_correlation",
    tags=("athlete_id",),
    fields=(
        "e2_pg_ml",
        "body_fat_pct",
        "body_fat_change_pct",
        "weekly_load",
        "anastrozole_weekly_mg",
        "slope_pg_ml_per_pct",
        "pairs",
        "predicted_e2_pg_ml",
    ),
    audience=Audience.CLINICAL,
    doc="Per E2 draw: the body-fat and load context, and the per-athlete E2-vs-fat estimate.",
)
ALERTS = Series(
    "alerts",
    tags=("athlete_id", "kind", "rule", "severity"),
    fields=("alert_id", "summary", "historical"),
    audience=Audience.CLINICAL,
    doc="Every alert emitted, for annotations and the open-alerts table; `historical`: raised on imported history.",
)

ALL_SERIES = (
    BODY_COMPOSITION,
    BODY_FAT_TREND,
    WORKOUT,
    WORKOUT_SAMPLES,
    TRAINING_LOAD_DAILY,
    MODALITY_WEEKLY,
    LAB,
    DOSE,
    SYMPTOMS,
    E2_CORRELATION,
    ALERTS,
)

SERIES_BY_MEASUREMENT = {s.measurement: s for s in ALL_SERIES}


def by_database(points: Iterable[Point]) -> dict[Audience, list[Point]]:
    """Points grouped by the audience database they belong in; a point with fields for both is split.

    ValueError names a measurement outside the contract (it would have no database to go to).
    """
    routed: dict[Audience, list[Point]] = defaultdict(list)
    for point in points:
        found = SERIES_BY_MEASUREMENT.get(point.measurement)
        if found is None:
            raise ValueError(f"{point.measurement}: not a measurement of the series contract")
        if not found.clinical_fields:
            routed[found.audience].append(point)
            continue
        for audience in Audience:
            allowed = found.fields_for(audience)
            part = {k: v for k, v in point.fields.items() if k in allowed}
            if part:
                routed[audience].append(Point(point.measurement, point.tags, part, point.time))
    return dict(routed)
