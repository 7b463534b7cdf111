"""Lab results in canonical units, with censoring and assay method kept.

Every unit the event contract accepts (`schemas.events.ANALYTE_UNITS`) converts here to one canonical unit
per analyte, so rules compare like with like. A censored result ("<24", "<=24") stays censored: its value is
the limit, and `comparator` says on which side the true value lies and whether the limit itself is possible
("<" excludes it, "<=" includes it), so the two are never merged.

Not from the seeds (DOMAIN.md, provenance): the unit factors below are general chemistry (molar masses), and
the lumbar-spine bone mineral density is a DXA areal density in g/cm2 (LOINC 24966-4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aromatrack.domain.events import LabResult

# Molar mass of testosterone (g/mol): 1 nmol/L = 288.42 ng/L = 28.842 ng/dL (DOMAIN.md: x 0.03467).
TESTOSTERONE_G_PER_MOL = 288.42
# Cholesterol (HDL/LDL): 1 mmol/L = 38.67 mg/dL.
CHOLESTEROL_MG_DL_PER_MMOL_L = 38.67
# Estradiol: pmol/L = pg/mL x 3.671 (DOMAIN.md).
ESTRADIOL_PMOL_L_PER_PG_ML = 3.671

CANONICAL_UNITS: dict[str, str] = {
    "estradiol": "pg/mL",
    "testosterone_total": "ng/dL",
    "testosterone_free": "pg/mL",
    "shbg": "nmol/L",
    "hs_crp": "mg/L",
    "lh": "IU/L",
    "fsh": "IU/L",
    "hematocrit": "%",
    "hdl": "mg/dL",
    "ldl": "mg/dL",
    "bmd_lumbar_spine": "g/cm2",
}

# Multiply a value in (analyte, unit) by this factor to get the canonical unit.
_TO_CANONICAL: dict[tuple[str, str], float] = {
    ("estradiol", "pmol/L"): 1 / ESTRADIOL_PMOL_L_PER_PG_ML,
    ("testosterone_total", "nmol/L"): TESTOSTERONE_G_PER_MOL / 10,
    ("testosterone_free", "pmol/L"): TESTOSTERONE_G_PER_MOL / 1000,
    ("testosterone_free", "ng/dL"): 10.0,
    ("testosterone_free", "nmol/L"): TESTOSTERONE_G_PER_MOL,
    ("hs_crp", "mg/dL"): 10.0,
    ("lh", "mIU/mL"): 1.0,
    ("fsh", "mIU/mL"): 1.0,
    ("hematocrit", "L/L"): 100.0,
    ("hdl", "mmol/L"): CHOLESTEROL_MG_DL_PER_MMOL_L,
    ("ldl", "mmol/L"): CHOLESTEROL_MG_DL_PER_MMOL_L,
}


class UnitError(ValueError):
    """A unit this analyte cannot be converted from; never guessed."""


def conversion_factor(analyte: str, unit: str) -> float:
    """Factor from `unit` to the analyte's canonical unit; UnitError names both if unknown."""
    if analyte not in CANONICAL_UNITS:
        raise UnitError(f"analyte: unknown analyte {analyte!r}")
    if unit == CANONICAL_UNITS[analyte]:
        return 1.0
    try:
        return _TO_CANONICAL[(analyte, unit)]
    except KeyError:
        raise UnitError(f"unit: cannot convert {unit!r} for {analyte}") from None


def to_canonical(analyte: str, value: float, unit: str) -> float:
    return value * conversion_factor(analyte, unit)


@dataclass(frozen=True)
class Lab:
    """One lab result in canonical units; `comparator` ('<', '<=', '>', '>=') marks a censored value.

    `method` is the assay the result names, or the performing lab's default method when it names none
    (`normalise(..., default_method=...)`); `lab_id` is the performing lab."""

    analyte: str
    value: float
    unit: str
    time: datetime
    event_id: str
    comparator: str | None = None
    method: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    lab_id: str | None = None
    # `time` in epoch seconds, computed once: the rules read it on every event.
    time_s: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time_s", self.time.timestamp())

    @property
    def censored(self) -> bool:
        return self.comparator is not None

    def surely_below(self, limit: float) -> bool:
        """True when the true value is known to lie below `limit`: "<x" with x <= limit, "<=x" with x < limit."""
        if self.comparator == "<":
            return self.value <= limit
        if self.comparator == "<=":
            return self.value < limit
        return self.comparator is None and self.value < limit

    def surely_at_or_below(self, limit: float) -> bool:
        """True when the true value is known to be at most `limit` ("<x" or "<=x" with x <= limit)."""
        if self.comparator in ("<", "<="):
            return self.value <= limit
        return self.comparator is None and self.value <= limit

    def surely_above(self, limit: float) -> bool:
        """True when the true value is known to lie above `limit`: ">x" with x >= limit, ">=x" with x > limit."""
        if self.comparator == ">":
            return self.value >= limit
        if self.comparator == ">=":
            return self.value > limit
        return self.comparator is None and self.value > limit

    def shown(self) -> str | float:
        """The value as a clinician reads it: "<24" for a censored one, else the number (2 decimals)."""
        return f"{self.comparator}{self.value:.4g}" if self.censored else round(self.value, 2)


def normalise(event: LabResult, default_method: str | None = None) -> Lab:
    """A lab result as a Lab in canonical units (reference range converted too); a result that names no assay
    method takes `default_method` (the performing lab's, a setting)."""
    factor = conversion_factor(event.analyte, event.unit)

    def scaled(value: float | None) -> float | None:
        return None if value is None else value * factor

    return Lab(
        analyte=event.analyte,
        value=event.value * factor,
        unit=CANONICAL_UNITS[event.analyte],
        time=event.time,
        event_id=event.event_id,
        comparator=event.comparator,
        method=event.method or default_method,
        reference_low=scaled(event.reference_low),
        reference_high=scaled(event.reference_high),
        lab_id=event.lab_id,
    )
