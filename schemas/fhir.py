"""FHIR R4 lab Observations (and Bundles of them) as `lab.result` events.

Only LOINC codes in `LOINC_ANALYTES` are accepted, each checked against published LOINC names; an unknown code
or unit is an error naming it, never a guess. Units are read from `valueQuantity.code` (UCUM) or `.unit`.
"""

from __future__ import annotations

from typing import Any

from aromatrack.schemas.events import EventError, LabResult, parse_event

LOINC_SYSTEM = "http://loinc.org"

LOINC_ANALYTES: dict[str, str] = {
    "2243-4": "estradiol",  # Estradiol (E2) [Mass/volume] in Serum or Plasma
    "14715-7": "estradiol",  # Estradiol (E2) [Moles/volume] in Serum or Plasma
    "2986-8": "testosterone_total",  # Testosterone [Mass/volume] in Serum or Plasma
    "14913-8": "testosterone_total",  # Testosterone [Moles/volume] in Serum or Plasma
    "2991-8": "testosterone_free",  # Testosterone Free [Mass/volume] in Serum or Plasma
    "13967-5": "shbg",  # Sex hormone binding globulin [Moles/volume] in Serum or Plasma
    "30522-7": "hs_crp",  # C reactive protein [Mass/volume] in Serum or Plasma by High sensitivity method
    "10501-5": "lh",  # Lutropin [Units/volume] in Serum or Plasma
    "15067-2": "fsh",  # Follitropin [Units/volume] in Serum or Plasma
    "4544-3": "hematocrit",  # Hematocrit [Volume Fraction] of Blood by Automated count
    "2085-9": "hdl",  # Cholesterol in HDL [Mass/volume] in Serum or Plasma
    "13457-7": "ldl",  # Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation
    "18262-6": "ldl",  # Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay
}

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
}
COMPARATORS = {"<": "<", "<=": "<", ">": ">", ">=": ">"}


class FhirError(EventError):
    """A FHIR resource that cannot become a lab.result; the message names the element and the problem."""


def _loinc_analyte(observation: dict[str, Any]) -> tuple[str, str]:
    codings = [c for c in observation.get("code", {}).get("coding", []) if c.get("system") == LOINC_SYSTEM]
    if not codings:
        raise FhirError("code.coding: no LOINC coding (system http://loinc.org)")
    for coding in codings:
        if coding.get("code") in LOINC_ANALYTES:
            return coding["code"], LOINC_ANALYTES[coding["code"]]
    raise FhirError(f"code.coding: unsupported LOINC code(s) {', '.join(repr(c.get('code')) for c in codings)}")


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


def observation_to_event(observation: dict[str, Any], athlete_id: str | None = None) -> LabResult:
    """One Observation as a validated lab.result event."""
    if observation.get("resourceType") != "Observation":
        raise FhirError(f"resourceType: expected Observation, got {observation.get('resourceType')!r}")
    loinc, analyte = _loinc_analyte(observation)
    quantity = observation.get("valueQuantity")
    if not quantity or "value" not in quantity:
        raise FhirError("valueQuantity.value: missing")
    unit_code = quantity.get("code") or quantity.get("unit")
    if unit_code not in UNITS:
        raise FhirError(f"valueQuantity.code: unknown unit {unit_code!r} for LOINC {loinc}")
    time = observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get("start")
    if not time:
        raise FhirError("effectiveDateTime: missing (the draw time)")
    comparator = quantity.get("comparator")
    if comparator is not None and comparator not in COMPARATORS:
        raise FhirError(f"valueQuantity.comparator: unknown {comparator!r}")
    reference = (observation.get("referenceRange") or [{}])[0]
    event = {
        "type": "lab.result",
        "athlete_id": _athlete(observation, athlete_id),
        "time": time,
        "analyte": analyte,
        "value": quantity["value"],
        "unit": UNITS[unit_code],
        "comparator": COMPARATORS.get(comparator) if comparator else None,
        "method": _method(observation),
        "reference_low": (reference.get("low") or {}).get("value"),
        "reference_high": (reference.get("high") or {}).get("value"),
        "loinc": loinc,
    }
    try:
        return parse_event({key: value for key, value in event.items() if value is not None})
    except EventError as exc:
        raise FhirError(str(exc)) from None


def bundle_to_events(bundle: dict[str, Any], athlete_id: str | None = None) -> list[LabResult]:
    """Every Observation in a Bundle; the first bad entry raises FhirError naming its index."""
    if bundle.get("resourceType") != "Bundle":
        raise FhirError(f"resourceType: expected Bundle, got {bundle.get('resourceType')!r}")
    events = []
    for index, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") != "Observation":
            continue
        try:
            events.append(observation_to_event(resource, athlete_id))
        except FhirError as exc:
            raise FhirError(f"entry[{index}].{exc}") from None
    return events
