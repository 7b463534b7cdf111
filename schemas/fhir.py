"""FHIR R4 lab Observations (and Bundles of them) as `lab.result` events.

Only LOINC codes in `LOINC_CODES` are accepted, each with the analyte and the property (kind of quantity)
LOINC publishes for it; a unit must measure that property (a pmol/L value under a [Mass/volume] code is an
error, not a conversion). An unknown code or unit is an error naming it, never a guess. Units are read from
`valueQuantity.code` (UCUM) or `.unit`.

Reference ranges: FHIR allows several (by sex, age, ...). The one taken is a normal range that applies to the
athlete's sex (an `appliesTo` naming it, else one with no `appliesTo`); a range that applies only to the other
sex is never used, and with none that applies the result carries no range. Each bound is converted from its
own unit to the value's unit (a pg/mL range on a pmol/L result is scaled, not relabelled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aromatrack.domain.labs import UnitError, conversion_factor
from aromatrack.schemas.events import EventError, LabResult, parse_event

LOINC_SYSTEM = "http://loinc.org"


@dataclass(frozen=True)
class LoincCode:
    analyte: str
    property: str  # LOINC's property axis: MCnc, SCnc, ACnc, VFr, VFr_pure (unitless fraction), ArMass
    name: str  # LOINC long common name, as published


# Looked up from LOINC's published names (loinc.org and FHIR value sets), not guessed.
LOINC_CODES: dict[str, LoincCode] = {
    code: LoincCode(*entry)
    for code, entry in {
        "2243-4": ("estradiol", "MCnc", "Estradiol (E2) [Mass/volume] in Serum or Plasma"),
        "14715-7": ("estradiol", "SCnc", "Estradiol (E2) [Moles/volume] in Serum or Plasma"),
        "2986-8": ("testosterone_total", "MCnc", "Testosterone [Mass/volume] in Serum or Plasma"),
        "14913-8": ("testosterone_total", "SCnc", "Testosterone [Moles/volume] in Serum or Plasma"),
        "2991-8": ("testosterone_free", "MCnc", "Testosterone Free [Mass/volume] in Serum or Plasma"),
        "14914-6": ("testosterone_free", "SCnc", "Testosterone Free [Moles/volume] in Serum or Plasma"),
        "13967-5": ("shbg", "SCnc", "Sex hormone binding globulin [Moles/volume] in Serum or Plasma"),
        "30522-7": ("hs_crp", "MCnc", "C reactive protein [Mass/volume] in Serum or Plasma by High sensitivity method"),
        "10501-5": ("lh", "ACnc", "Lutropin [Units/volume] in Serum or Plasma"),
        "15067-2": ("fsh", "ACnc", "Follitropin [Units/volume] in Serum or Plasma"),
        "4544-3": ("hematocrit", "VFr", "Hematocrit [Volume Fraction] of Blood by Automated count"),
        "20570-8": ("hematocrit", "VFr", "Hematocrit [Volume Fraction] of Blood by calculation"),
        "71833-8": ("hematocrit", "VFr_pure", "Hematocrit [Pure volume fraction] of Blood by Automated count"),
        "2085-9": ("hdl", "MCnc", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"),
        "14646-4": ("hdl", "SCnc", "Cholesterol in HDL [Moles/volume] in Serum or Plasma"),
        "2089-1": ("ldl", "MCnc", "Cholesterol in LDL [Mass/volume] in Serum or Plasma"),
        "13457-7": ("ldl", "MCnc", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation"),
        "18262-6": ("ldl", "MCnc", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay"),
        "22748-8": ("ldl", "SCnc", "Cholesterol in LDL [Moles/volume] in Serum or Plasma"),
        "24966-4": ("bmd_lumbar_spine", "ArMass", "DXA Lumbar spine [Mass/Area] Bone density"),
    }.items()
}
LOINC_ANALYTES: dict[str, str] = {code: entry.analyte for code, entry in LOINC_CODES.items()}

# UCUM codes (and the plain spellings labs put in `unit`) -> the contract's unit names.
UNITS: dict[str, str] = {
    "pg/mL": "pg/mL",
    "pmol/L": "pmol/L",
    "ng/dL": "ng/dL",
    "nmol/L": "nmol/L",
    "mg/L": "mg/L",
    "mg/dL": "mg/dL",
    "mmol/L": "mmol/L",
    "[IU]/L": "IU/L",
    "IU/L": "IU/L",
    "m[IU]/mL": "mIU/mL",
    "mIU/mL": "mIU/mL",
    "%": "%",
    "L/L": "L/L",
    "1": "L/L",  # UCUM's unity: a decimal fraction reported without a unit
    "g/cm2": "g/cm2",
    "g/cm^2": "g/cm2",
}
# The contract's units that measure each LOINC property.
PROPERTY_UNITS: dict[str, frozenset[str]] = {
    "MCnc": frozenset({"pg/mL", "ng/dL", "mg/L", "mg/dL"}),
    "SCnc": frozenset({"pmol/L", "nmol/L", "mmol/L"}),
    "ACnc": frozenset({"IU/L", "mIU/mL"}),
    "VFr": frozenset({"%"}),
    "VFr_pure": frozenset({"L/L"}),
    "ArMass": frozenset({"g/cm2"}),
}
COMPARATORS = frozenset({"<", "<=", ">", ">="})
# appliesTo codings that name a sex (SNOMED CT and HL7 administrative gender), and the text labs use.
SEX_CODES: dict[str, str] = {
    "248153007": "male", "248152002": "female", "male": "male", "female": "female",
}


class FhirError(EventError):
    """A FHIR resource that cannot become a lab.result; the message names the element and the problem."""


def _loinc_code(observation: dict[str, Any]) -> tuple[str, LoincCode]:
    codings = [c for c in observation.get("code", {}).get("coding", []) if c.get("system") == LOINC_SYSTEM]
    if not codings:
        raise FhirError("code.coding: no LOINC coding (system http://loinc.org)")
    for coding in codings:
        if coding.get("code") in LOINC_CODES:
            return coding["code"], LOINC_CODES[coding["code"]]
    raise FhirError(f"code.coding: unsupported LOINC code(s) {', '.join(repr(c.get('code')) for c in codings)}")


def _unit(quantity: dict[str, Any], where: str, loinc: str, entry: LoincCode) -> str:
    """The contract's unit of a Quantity, checked against the code's property."""
    unit_code = quantity.get("code") or quantity.get("unit")
    if unit_code not in UNITS:
        raise FhirError(f"{where}: unknown unit {unit_code!r} for LOINC {loinc}")
    unit = UNITS[unit_code]
    if unit not in PROPERTY_UNITS[entry.property]:
        raise FhirError(
            f"{where}: unit {unit_code!r} does not measure LOINC {loinc} ({entry.name}); "
            f"expected one of {', '.join(sorted(PROPERTY_UNITS[entry.property]))}"
        )
    return unit


def _sexes(applies_to: list[dict[str, Any]]) -> set[str]:
    """The sexes a range's appliesTo names (empty: it names none)."""
    named = set()
    for concept in applies_to:
        texts = [concept.get("text", "")] + [c.get(key, "") for c in concept.get("coding", []) for key in ("code", "display")]
        named |= {SEX_CODES[t.strip().lower()] for t in texts if t and t.strip().lower() in SEX_CODES}
    return named


def _applicable_range(observation: dict[str, Any], sex: str) -> tuple[int, dict[str, Any]] | None:
    """The first normal reference range naming `sex`, else the first naming no sex; None if only others apply."""
    general = None
    for index, candidate in enumerate(observation.get("referenceRange") or []):
        kind = [c.get("code") for c in (candidate.get("type") or {}).get("coding", [])]
        if kind and "normal" not in kind:
            continue
        sexes = _sexes(candidate.get("appliesTo") or [])
        if sex in sexes:
            return index, candidate
        if not sexes and general is None:
            general = (index, candidate)
    return general


def _range_bounds(
    observation: dict[str, Any], sex: str, loinc: str, entry: LoincCode, value_unit: str
) -> tuple[float | None, float | None]:
    """The applicable range's bounds in the value's unit, each converted from its own unit."""
    chosen = _applicable_range(observation, sex)
    if chosen is None:
        return None, None
    index, reference = chosen
    bounds = []
    for side in ("low", "high"):
        bound = reference.get(side)
        if not bound or bound.get("value") is None:
            bounds.append(None)
            continue
        where = f"referenceRange[{index}].{side}"
        unit_code = bound.get("code") or bound.get("unit")
        if unit_code is not None and unit_code not in UNITS:
            raise FhirError(f"{where}: unknown unit {unit_code!r} for LOINC {loinc}")
        unit = UNITS[unit_code] if unit_code is not None else value_unit
        try:
            factor = conversion_factor(entry.analyte, unit) / conversion_factor(entry.analyte, value_unit)
        except UnitError as exc:
            raise FhirError(f"{where}: {exc}") from None
        bounds.append(bound["value"] * factor)
    return bounds[0], bounds[1]


def _method(observation: dict[str, Any]) -> str | None:
    method = observation.get("method") or {}
    text = " ".join([method.get("text", "")] + [c.get("display", "") for c in method.get("coding", [])]).lower()
    if "mass spectrometry" in text or "lc/ms" in text or "lc-ms" in text:
        return "lc_msms"
    if "immunoassay" in text:
        return "immunoassay"
    return None


def _athlete(observation: dict[str, Any], athlete_id: str | None) -> str:
    """Whose result this is: the subject's `Patient/<id>` reference, which must name `athlete_id` when given.

    A subject in any other form (an identifier, a plain string, a `patient` element) cannot be checked against
    the athlete, so it is refused rather than filed under the wrong one; no subject means `athlete_id`'s.
    """
    if "patient" in observation:
        raise FhirError("patient: not an Observation element; name the patient in subject.reference")
    subject = observation.get("subject")
    if subject is None and athlete_id:
        return athlete_id
    if not isinstance(subject, dict) or set(subject) - {"reference", "display", "type"}:
        raise FhirError("subject: give the patient as {\"reference\": \"Patient/<id>\"}; other forms cannot be checked")
    reference = subject.get("reference")
    if not isinstance(reference, str) or not reference.startswith("Patient/"):
        raise FhirError("subject.reference: expected Patient/<id>" + ("" if athlete_id else " (or pass athlete_id)"))
    named = reference.removeprefix("Patient/")
    if athlete_id and named != athlete_id:
        raise FhirError("subject.reference: names another patient than the athlete in the path")
    return named


def _performer(observation: dict[str, Any]) -> str | None:
    """The performing lab's id (an Organization reference), for its default assay method."""
    for performer in observation.get("performer") or []:
        reference = performer.get("reference", "")
        if reference.startswith("Organization/"):
            return reference.removeprefix("Organization/")[:128] or None
    return None


def observation_to_event(observation: dict[str, Any], athlete_id: str | None = None, sex: str = "male") -> LabResult:
    """One Observation as a validated lab.result event; `sex` picks the reference range that applies."""
    if observation.get("resourceType") != "Observation":
        raise FhirError(f"resourceType: expected Observation, got {observation.get('resourceType')!r}")
    loinc, entry = _loinc_code(observation)
    quantity = observation.get("valueQuantity")
    if not quantity or "value" not in quantity:
        raise FhirError("valueQuantity.value: missing")
    unit = _unit(quantity, "valueQuantity.code", loinc, entry)
    time = observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get("start")
    if not time:
        raise FhirError("effectiveDateTime: missing (the draw time)")
    comparator = quantity.get("comparator")
    if comparator is not None and comparator not in COMPARATORS:
        raise FhirError(f"valueQuantity.comparator: unknown {comparator!r}")
    reference_low, reference_high = _range_bounds(observation, sex, loinc, entry, unit)
    event = {
        "type": "lab.result",
        "athlete_id": _athlete(observation, athlete_id),
        "time": time,
        "analyte": entry.analyte,
        "value": quantity["value"],
        "unit": unit,
        "comparator": comparator,
        "method": _method(observation),
        "reference_low": reference_low,
        "reference_high": reference_high,
        "loinc": loinc,
        "lab_id": _performer(observation),
    }
    try:
        return parse_event({key: value for key, value in event.items() if value is not None})
    except EventError as exc:
        raise FhirError(str(exc)) from None


def bundle_to_events(bundle: dict[str, Any], athlete_id: str | None = None, sex: str = "male") -> list[LabResult]:
    """Every Observation in a Bundle; the first bad entry raises FhirError naming its index."""
    if bundle.get("resourceType") != "Bundle":
        raise FhirError(f"resourceType: expected Bundle, got {bundle.get('resourceType')!r}")
    events = []
    for index, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "Observation":
            continue
        try:
            events.append(observation_to_event(resource, athlete_id, sex))
        except FhirError as exc:
            raise FhirError(f"entry[{index}].{exc}") from None
    return events
