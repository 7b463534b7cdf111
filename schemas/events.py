"""Event contract v1: the one definition of every event shape (see shared/EVENTS.md).

Every event is a flat JSON object: the envelope (type, athlete_id, time, event_id) and the payload
fields side by side. The same models validate Kafka messages, HTTP bodies and JSON-lines files, and
are exported as JSON Schema (`aromatrack schemas export`) for producers in other languages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from aromatrack.domain.training_load import zone
from aromatrack.schemas.series import NOT_IN_A_TAG

SCHEMA_VERSION = 1
# No event but a FIT upload needs more than a few hundred bytes; the cap stops a huge payload (allowed extra
# fields would otherwise let one through) from being stored or forwarded. FIT uploads are bounded by
# Kafka's 1 MB message limit instead.
MAX_EVENT_BYTES = 64 * 1024
# What JSON may carry into any entry point (HTTP bodies and Kafka messages alike, via `load_json`/`check_json`):
# events are flat and FHIR resources nest about 8 deep; integers fit in 64 bits, as in most consumers' languages;
# numbers are finite (JSON has no Infinity/NaN, and 1e999 would read as one); strings are valid Unicode.
MAX_JSON_DEPTH = 32
MAX_JSON_INT = 2**63 - 1
_MAX_INT_DIGITS = len(str(MAX_JSON_INT)) + 1  # a sign

# Identifiers and the labels stored as InfluxDB tags (an athlete, an event, a scale's device, a sport) are one line
# of text without backslashes. Line protocol has no escape for a line break in a tag, and a tag ending in a
# backslash cannot be written at all (InfluxDB 1.x and 2.x also read a backslash before other characters
# differently): one such label had InfluxDB refuse its whole batch, and the ingest consumer stopped on it again at
# every restart.
ONE_LINE_PATTERN = f"^[^{NOT_IN_A_TAG}]*$"  # matched by pydantic's core; `_describe` words the refusal
LABEL_REFUSAL = ("must be one line of text without backslashes: control characters (a line break, a tab) and "
                 "backslashes are not allowed")
Label = Annotated[str, Field(pattern=ONE_LINE_PATTERN)]

# Event times InfluxDB can store (1677 to 2262), with room for what is derived from them (a recheck falls due
# months after its event): a weigh-in dated in the year 3000 was accepted, and InfluxDB's refusal of its trend
# point stopped the clinical agent again at every restart.
EARLIEST_EVENT_TIME = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST_EVENT_TIME = datetime(2200, 1, 1, tzinfo=timezone.utc)
EventTime = Annotated[AwareDatetime, Field(
    ge=EARLIEST_EVENT_TIME, lt=LATEST_EVENT_TIME,
    description="With a UTC offset; from 1900-01-01T00:00:00Z up to, not including, 2200-01-01T00:00:00Z.")]

ANALYTES = (
    "estradiol",
    "testosterone_total",
    "testosterone_free",
    "shbg",
    "hs_crp",
    "lh",
    "fsh",
    "hematocrit",
    "hdl",
    "ldl",
    "bmd_lumbar_spine",  # DXA lumbar spine bone mineral density (areal, g/cm2)
)
Analyte = Literal[ANALYTES]  # type: ignore[valid-type]  (the literal values are the tuple above)

# Units accepted per analyte: part of the contract, so producers can check before sending.
# The conversion factors live in the domain core (aromatrack.domain.labs).
ANALYTE_UNITS: dict[str, tuple[str, ...]] = {
    "estradiol": ("pg/mL", "pmol/L"),
    "testosterone_total": ("ng/dL", "nmol/L"),
    "testosterone_free": ("pg/mL", "pmol/L", "ng/dL", "nmol/L"),
    "shbg": ("nmol/L",),
    "hs_crp": ("mg/L", "mg/dL"),
    "lh": ("IU/L", "mIU/mL"),
    "fsh": ("IU/L", "mIU/mL"),
    "hematocrit": ("%", "L/L"),
    "hdl": ("mg/dL", "mmol/L"),
    "ldl": ("mg/dL", "mmol/L"),
    "bmd_lumbar_spine": ("g/cm2",),
}

Drug = Literal["testosterone_cypionate", "anastrozole", "gonadorelin", "clomiphene", "tamoxifen"]
Phase = Literal["trt", "post_trt_recovery", "none"]
SymptomName = Literal[
    "joint_pain",
    "fatigue",
    "low_libido",
    "erectile_dysfunction",
    "brain_fog",
    "low_mood",
    "water_retention",
    "nipple_sensitivity",
    "mood_swings",
]
Score = Annotated[float, Field(ge=0, le=10)]


class EventBase(BaseModel):
    """The envelope shared by every input event. Extra fields are kept, as the contract allows."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    athlete_id: Annotated[Label, Field(min_length=1, max_length=128)]
    time: EventTime
    event_id: Annotated[Label, Field(min_length=1, max_length=128)] | None = None
    schema_version: Literal[1] = SCHEMA_VERSION
    # Optional fields declared after event ids were first hashed: left out of `stable_event_id` when null, so an
    # event keeps the id it always had (and a model dump parsed again, nulls and all, keeps it too).
    unhashed_when_null: ClassVar[frozenset[str]] = frozenset()


class AthleteProfile(EventBase):
    type: Literal["athlete.profile"] = "athlete.profile"
    sex: Literal["male", "female"]
    birth_year: Annotated[int, Field(ge=1900, le=2100)]
    hr_rest_bpm: Annotated[float, Field(ge=25, le=120)]
    hr_max_bpm: Annotated[float, Field(ge=100, le=240)]
    ftp_w: Annotated[float, Field(gt=0, le=700)] | None = None
    coach_id: str | None = None
    clinician_id: str | None = None
    time_zone: Annotated[str, Field(max_length=64)] | None = None
    """IANA name (e.g. "America/Los_Angeles"): the athlete's days and weeks for training load; without it the
    offset each event carries decides."""

    @field_validator("time_zone")
    @classmethod
    def _iana_time_zone(cls, name: str | None) -> str | None:
        if name is not None:
            zone(name)  # ValueError names the unknown zone
        return name

    @model_validator(mode="after")
    def _rest_below_max(self) -> "AthleteProfile":
        if self.hr_rest_bpm >= self.hr_max_bpm:
            raise ValueError(
                f"hr_rest_bpm ({self.hr_rest_bpm:g}) must be below hr_max_bpm ({self.hr_max_bpm:g})"
            )
        return self


class ScaleReading(EventBase):
    """One smart-scale weigh-in. Bounds reject physically impossible values, not merely unusual ones."""

    type: Literal["scale.reading"] = "scale.reading"
    weight_kg: Annotated[float, Field(ge=25, le=350)]
    body_fat_pct: Annotated[float, Field(ge=2, le=75)]
    muscle_mass_kg: Annotated[float, Field(gt=0, le=200)] | None = None
    lean_mass_kg: Annotated[float, Field(gt=0, le=250)] | None = None
    bone_mass_kg: Annotated[float, Field(gt=0, le=15)] | None = None
    hydration_pct: Annotated[float, Field(ge=20, le=85)] | None = None
    visceral_fat_rating: Annotated[float, Field(ge=1, le=60)] | None = None
    device: Label | None = None

    @model_validator(mode="after")
    def _masses_fit_in_weight(self) -> "ScaleReading":
        for name in ("muscle_mass_kg", "lean_mass_kg", "bone_mass_kg"):
            value = getattr(self, name)
            if value is not None and value > self.weight_kg:
                raise ValueError(f"{name} ({value:g}) cannot exceed weight_kg ({self.weight_kg:g})")
        return self


class WorkoutFit(EventBase):
    """A FIT file. On Kafka the bytes travel in `fit_b64`; JSON-lines files may give a `path` instead."""

    type: Literal["workout.fit"] = "workout.fit"
    fit_b64: str | None = None
    path: str | None = None
    filename: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "WorkoutFit":
        if (self.fit_b64 is None) == (self.path is None):
            raise ValueError("exactly one of fit_b64 or path must be given")
        if self.fit_b64 is not None:
            try:
                base64.b64decode(self.fit_b64, validate=True)
            except ValueError as exc:
                raise ValueError(f"fit_b64 is not valid base64: {exc}") from None
        return self

    def fit_bytes(self) -> bytes:
        """The file's bytes, read from `fit_b64` or from `path`."""
        if self.fit_b64 is not None:
            return base64.b64decode(self.fit_b64)
        with open(self.path, "rb") as handle:  # type: ignore[arg-type]
            return handle.read()


class WorkoutSummary(EventBase):
    type: Literal["workout.summary"] = "workout.summary"
    sport: Annotated[Label, Field(min_length=1, max_length=64)]
    sub_sport: Label | None = None
    duration_s: Annotated[float, Field(gt=0, le=7 * 24 * 3600)]
    avg_hr_bpm: Annotated[float, Field(ge=20, le=250)] | None = None
    max_hr_bpm: Annotated[float, Field(ge=20, le=250)] | None = None
    avg_power_w: Annotated[float, Field(ge=0, le=3000)] | None = None
    distance_m: Annotated[float, Field(ge=0, le=2_000_000)] | None = None
    rpe: Annotated[float, Field(ge=1, le=10)] | None = None
    normalized_power_w: Annotated[float, Field(ge=0, le=3000)] | None = None
    load: Annotated[float, Field(ge=0)] | None = None
    """Training load on the TSS scale, with `modality`: what a summary made from a FIT file carries, computed from
    the file's samples (which the summary no longer holds). Without both, the load is computed from the fields
    above and the athlete's profile."""
    modality: str | None = None
    """One of the load model's modalities (`MODALITIES`); a summary naming another (v1 has always accepted any) has
    its load computed instead."""
    trimp: Annotated[float, Field(ge=0)] | None = None
    """Banister TRIMP of the same samples, when the sender computed it."""

    unhashed_when_null: ClassVar[frozenset[str]] = frozenset({"normalized_power_w", "load", "modality", "trimp"})


class LabResult(EventBase):
    """One analyte from one blood draw (or a DXA scan for bone density); `time` is the draw time. Censored results
    keep their comparator, "<=" and ">=" distinct from "<" and ">". `lab_id` names the performing lab, whose
    default assay method (a setting) applies when `method` is absent."""

    type: Literal["lab.result"] = "lab.result"
    analyte: Analyte
    value: Annotated[float, Field(ge=0)]
    unit: str
    comparator: Literal["<", "<=", ">", ">="] | None = None
    method: Literal["lc_msms", "immunoassay"] | None = None
    lab_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    reference_low: Annotated[float, Field(ge=0)] | None = None
    reference_high: Annotated[float, Field(ge=0)] | None = None
    loinc: str | None = None

    @model_validator(mode="after")
    def _known_unit_and_range(self) -> "LabResult":
        accepted = ANALYTE_UNITS[self.analyte]
        if self.unit not in accepted:
            raise ValueError(
                f"unknown unit {self.unit!r} for {self.analyte}; accepted: {', '.join(accepted)}"
            )
        if (
            self.reference_low is not None
            and self.reference_high is not None
            and self.reference_low > self.reference_high
        ):
            raise ValueError("reference_low is above reference_high")
        return self


class DoseChange(EventBase):
    type: Literal["dose.change"] = "dose.change"
    drug: Drug
    dose_mg: Annotated[float, Field(ge=0, le=2000)]
    times_per_week: Annotated[float, Field(ge=0, le=21)]


class ProtocolPhase(EventBase):
    type: Literal["protocol.phase"] = "protocol.phase"
    phase: Phase


class SymptomLog(EventBase):
    type: Literal["symptom.log"] = "symptom.log"
    energy: Score | None = None
    mood: Score | None = None
    libido: Score | None = None
    joint_comfort: Score | None = None
    symptoms: list[SymptomName] = Field(default_factory=list)


Event = Annotated[
    Union[
        AthleteProfile,
        ScaleReading,
        WorkoutFit,
        WorkoutSummary,
        LabResult,
        DoseChange,
        ProtocolPhase,
        SymptomLog,
    ],
    Field(discriminator="type"),
]
EVENT_MODELS: dict[str, type[EventBase]] = {
    model.model_fields["type"].default: model
    for model in (
        AthleteProfile,
        ScaleReading,
        WorkoutFit,
        WorkoutSummary,
        LabResult,
        DoseChange,
        ProtocolPhase,
        SymptomLog,
    )
}
EVENT_TYPES = tuple(EVENT_MODELS)


class AlertEvidence(BaseModel):
    """One number behind an alert and the events it came from."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float | str | None
    unit: str | None = None
    event_ids: list[str] = Field(default_factory=list)


ALERT_SCHEMA_VERSION = 2


class Alert(BaseModel):
    """Output: a flag for a clinician. It names its rule and evidence and never instructs a dose.

    Alert contract v2 (v1 messages still validate: their new fields take the defaults). One alert per clinical
    question: `alert_id` names the question (rule, anchoring events, severity) and `version` counts its updates;
    a message with a known id and a higher version is new evidence for an alert already sent, to be shown as
    an update, not as a new page. `time` is this version's time, `raised_at` version 1's. `historical` marks an
    alert raised on history imported long after the fact: stored and summarised, not paged one by one.
    """

    model_config = ConfigDict(frozen=True)

    type: Literal["alert"] = "alert"
    schema_version: Literal[1, 2] = ALERT_SCHEMA_VERSION
    alert_id: str
    version: Annotated[int, Field(ge=1)] = 1
    athlete_id: str
    time: AwareDatetime
    raised_at: AwareDatetime | None = None
    kind: Literal["lab_recheck", "dose_review", "training_review"]
    rule: str
    severity: Literal["info", "warning", "urgent"]
    summary: str
    evidence: list[AlertEvidence]
    sources: list[str]
    anchor_event_ids: list[str] = Field(default_factory=list)
    historical: bool = False

    @property
    def delivery_key(self) -> str:
        """Unique per version: what consumers deduplicate on (an update shares the alert id, not this key)."""
        return f"{self.alert_id}.v{self.version}"


class AlertWithdrawal(BaseModel):
    """Output: an alert sent earlier that the whole history no longer supports (an event that arrived late
    changed it). It carries the withdrawn alert's id, athlete, time and rule, so the clinician can be told."""

    model_config = ConfigDict(frozen=True)

    type: Literal["alert.withdrawal"] = "alert.withdrawal"
    schema_version: Literal[1] = SCHEMA_VERSION
    status: Literal["withdrawn"] = "withdrawn"
    alert_id: str
    athlete_id: str
    time: AwareDatetime
    kind: Literal["lab_recheck", "dose_review", "training_review"]
    rule: str
    reason: str


class EventError(ValueError):
    """Input that is not a valid v1 event; the message names each bad field and the problem."""


_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


class _Unrepresentable(ValueError):
    """A JSON element the contract cannot carry; `path` is filled in, innermost key first, as it propagates."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.path: list[str] = []

    def message(self) -> str:
        return f"{'.'.join(reversed(self.path)) or 'body'}: {self}"


def _no_constant(name: str) -> Any:
    raise _Unrepresentable(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS or abs(value := int(text)) > MAX_JSON_INT:
        raise _Unrepresentable(f"an integer of {len(text.lstrip('-'))} digits is outside the 64-bit range")
    return value


# One decoder (json.loads with hooks would build a new one per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_int=_bounded_int)


def load_json(raw: bytes | str) -> Any:
    """Parse JSON text within the contract's limits (see MAX_JSON_DEPTH); EventError names what is wrong."""
    value = decode_json(raw)
    check_json(value)
    return value


def decode_json(raw: bytes | str) -> Any:
    """Parse JSON text with the contract's number rules but without `check_json`: for a container whose items
    are checked one by one (a timeline batch's events, each within the limits as if sent alone)."""
    try:
        return _DECODER.decode(raw.decode() if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise EventError(f"body: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except _Unrepresentable as exc:
        raise EventError(exc.message()) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError(f"body: not JSON: {exc}") from None


def check_json(value: Any) -> None:
    """Refuse a parsed JSON value beyond the contract's limits, naming the bad element's path."""
    try:
        _check_value(value, 0)
    except _Unrepresentable as exc:
        raise EventError(exc.message()) from None


def _check_value(item: Any, depth: int, below: float | None = None) -> None:
    """Raise _Unrepresentable for an element beyond the limits; with `below`, also for a number whose magnitude is
    not under it (the bytes path's certainty bound: see `_certainly_within_limits`)."""
    kind = type(item)
    if kind is dict or kind is list:
        if depth >= MAX_JSON_DEPTH:
            raise _Unrepresentable(f"nested deeper than {MAX_JSON_DEPTH} levels")
        for key, child in item.items() if kind is dict else enumerate(item):
            try:
                if type(key) is str and not key.isascii():
                    _check_text(key)
                _check_value(child, depth + 1, below)
            except _Unrepresentable as exc:
                exc.path.append(str(key) if type(key) is not str or _valid(key) else ascii(key))
                raise
    elif kind is str:
        if not item.isascii():
            _check_text(item)
    elif kind is float:
        if not math.isfinite(item):
            raise _Unrepresentable("not a finite number")
        if below is not None and abs(item) >= below:
            raise _Unrepresentable(f"a number of magnitude {below:g} or more")
    elif kind is int:
        if abs(item) > MAX_JSON_INT:
            raise _Unrepresentable("an integer outside the 64-bit range")
        if below is not None and abs(item) >= below:
            raise _Unrepresentable(f"a number of magnitude {below:g} or more")


def _valid(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check_text(text: str) -> None:
    if not _valid(text):
        raise _Unrepresentable("a lone surrogate is not valid Unicode")


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(p) for p in item["loc"] if not str(p).startswith(EVENT_TYPES))
        if item["type"] == "string_pattern_mismatch" and item["ctx"]["pattern"] == ONE_LINE_PATTERN:
            message = LABEL_REFUSAL
        else:
            message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location or 'event'}: {message}")
    return "; ".join(parts)


# Past this magnitude a number may have come from a literal the limits refuse (an integer of 19 digits or more).
_CERTAINLY_SMALL = 1e18


def _certainly_within_limits(event: EventBase) -> bool:
    """Whether the values pydantic read from JSON certainly keep the limits `load_json` enforces on the text they
    came from: the limits' own walk, with every number also below 1e18 (a float field may hold what was an
    integer literal of 19 digits). False means only that the long way must decide."""
    try:
        for value in (*event.__dict__.values(), *(event.__pydantic_extra__ or {}).values()):
            _check_value(value, 1, _CERTAINLY_SMALL)
    except _Unrepresentable:
        return False
    return True


def _validated_at_once(raw: bytes) -> EventBase | None:
    """The event validated by pydantic straight from the message's bytes (its parser skips building the JSON as
    Python objects and walking them: 9 us a canonical event against 14), or None when that fails or its values do
    not certainly keep the limits: the caller then takes the long way, which names the problem as it always has.
    Both ways read every message the same (tests/unit/test_events.py)."""
    if len(raw) > MAX_EVENT_BYTES or raw[:1] != b"{":
        return None
    try:
        event = _EVENT_ADAPTER.validate_json(raw)
    except ValidationError:
        return None
    return event if _certainly_within_limits(event) else None


@dataclass(frozen=True)
class CanonicalEvent:
    """A validated event with its canonical JSON (`dump_event`), computed once where it was needed anyway."""

    event: EventBase
    canonical: bytes


def certainly_as_sent_alone(event: EventBase) -> CanonicalEvent | None:
    """An event pydantic read from JSON inside a larger message (a timeline batch), with its stable id: what
    `parse_event` gives for the event's own JSON, or None when that is not certain (its values may break the
    limits, or its canonical form is over the size limit) and the event must be read alone the long way. Its
    canonical form comes with it: the size check made it, and the clinical timeline keeps events as those bytes."""
    if not _certainly_within_limits(event):
        return None
    event = _with_event_id(event)
    canonical = dump_event(event)
    if event.type != "workout.fit" and len(canonical) > MAX_EVENT_BYTES:
        return None
    return CanonicalEvent(event, canonical)


def parse_event(raw: bytes | str | dict[str, Any]) -> EventBase:
    """Validate one event from bytes, text or a dict and return it with a stable `event_id`.

    The same limits hold whatever the input's form (`check_json`, and MAX_EVENT_BYTES on the event as it goes
    onto Kafka), so what the API accepts the stream worker accepts. Raises EventError naming every bad field,
    so callers can dead-letter or answer 4xx with it.
    """
    event = _validated_at_once(raw) if isinstance(raw, bytes) else None
    if event is not None:
        return _with_event_id(event)
    size = len(raw) if isinstance(raw, (bytes, str)) else None
    if isinstance(raw, (bytes, str)):
        raw = load_json(raw)
    else:
        check_json(raw)
    if not isinstance(raw, dict):
        raise EventError(f"an event must be a JSON object, got {type(raw).__name__}")
    event_type = raw.get("type")
    if event_type not in EVENT_MODELS:
        raise EventError(
            f"type: unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}"
        )
    if size is not None:
        _check_size(size, event_type)  # before validating, so a huge message costs no more than its parse
    try:
        event = _with_event_id(_EVENT_ADAPTER.validate_python(raw))
    except ValidationError as exc:
        raise EventError(_describe(exc)) from None
    if size is None and event_type != "workout.fit":
        _check_size(len(dump_event(event)), event_type)  # as it will go onto Kafka
    return event


def _with_event_id(event: EventBase) -> EventBase:
    return event if event.event_id is not None else event.model_copy(update={"event_id": stable_event_id(event)})


def _check_size(size: int, event_type: str) -> None:
    if size > MAX_EVENT_BYTES and event_type != "workout.fit":
        raise EventError(f"event: {size} bytes is over the {MAX_EVENT_BYTES}-byte limit for {event_type} events")


def stable_event_id(event: EventBase) -> str:
    """A content hash of the event, so a replayed or retried event keeps the same id."""
    body = event.model_dump(mode="json", exclude={"event_id"})
    for name in event.unhashed_when_null:
        if body[name] is None:
            del body[name]
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def dump_event(event: BaseModel) -> bytes:
    """Canonical JSON bytes for Kafka and files (no nulls, so the wire stays small)."""
    return event.model_dump_json(exclude_none=True).encode()
