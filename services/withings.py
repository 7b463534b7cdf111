"""Map the Withings Health API "Measure - Getmeas" body onto `scale.reading` events (pure; no I/O).

Withings sends a notification, the integration fetches `getmeas`, and forwards its JSON here unchanged:
`{"status": 0, "body": {"measuregrps": [{"grpid", "date" (unix s), "category" (1 real, 2 goal), "deviceid",
"measures": [{"value", "type", "unit"}]}]}}`, each number being value x 10^unit. Measure types used:
1 weight kg, 5 fat-free mass kg, 6 fat ratio %, 8 fat mass kg, 76 muscle mass kg, 77 hydration kg, 88 bone mass kg.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

WEIGHT, FAT_FREE_MASS, FAT_RATIO, FAT_MASS, MUSCLE_MASS, HYDRATION, BONE_MASS = 1, 5, 6, 8, 76, 77, 88
REAL_MEASUREMENT = 1


class WithingsError(ValueError):
    """The document is not a getmeas body; the message names the field."""


@dataclass(frozen=True)
class Skipped:
    grpid: Any
    reason: str


def _measures(group: dict[str, Any], where: str) -> dict[int, float]:
    measures = group.get("measures")
    if not isinstance(measures, list):
        raise WithingsError(f"{where}.measures: must be a list")
    values: dict[int, float] = {}
    for index, measure in enumerate(measures):
        if not isinstance(measure, dict):
            raise WithingsError(f"{where}.measures[{index}]: must be an object")
        kind, value, unit = measure.get("type"), measure.get("value"), measure.get("unit")
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in (kind, value, unit)):
            raise WithingsError(f"{where}.measures[{index}]: type, value and unit must be integers")
        if not -12 <= unit <= 12:
            raise WithingsError(f"{where}.measures[{index}].unit: exponent out of range")
        values[kind] = value * 10.0**unit
    return values


def scale_readings(document: Any, athlete_id: str) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """Raw `scale.reading` dicts (still to be validated by `parse_event`) and the groups skipped, with why.

    Groups without a weight, or without a fat ratio or fat mass, are skipped: the contract needs both.
    """
    if not isinstance(document, dict):
        raise WithingsError("body: must be a JSON object")
    groups = (document.get("body") or {}).get("measuregrps") if isinstance(document.get("body"), dict) else None
    if not isinstance(groups, list):
        raise WithingsError("body.measuregrps: must be a list")
    readings, skipped = [], []
    for index, group in enumerate(groups):
        where = f"body.measuregrps[{index}]"
        if not isinstance(group, dict):
            raise WithingsError(f"{where}: must be an object")
        date = group.get("date")
        if not isinstance(date, int) or isinstance(date, bool) or not 0 <= date < 2**33:
            raise WithingsError(f"{where}.date: must be a unix time in seconds")
        values = _measures(group, where)
        grpid = group.get("grpid")
        if group.get("category", REAL_MEASUREMENT) != REAL_MEASUREMENT:
            skipped.append(Skipped(grpid, "a goal, not a measurement (category 2)"))
            continue
        weight = values.get(WEIGHT)
        fat_pct = values.get(FAT_RATIO)
        if fat_pct is None and weight and FAT_MASS in values:
            fat_pct = values[FAT_MASS] / weight * 100
        if weight is None or fat_pct is None:
            skipped.append(Skipped(grpid, "no weight (type 1) or no fat ratio/fat mass (type 6/8)"))
            continue
        reading: dict[str, Any] = {
            "type": "scale.reading",
            "athlete_id": athlete_id,
            "time": datetime.fromtimestamp(date, timezone.utc).isoformat(),
            "weight_kg": round(weight, 3),
            "body_fat_pct": round(fat_pct, 2),
            "device": f"withings:{group.get('deviceid') or 'unknown'}",
        }
        if grpid is not None:
            reading["event_id"] = f"withings-{grpid}"
        optional = {"lean_mass_kg": FAT_FREE_MASS, "muscle_mass_kg": MUSCLE_MASS, "bone_mass_kg": BONE_MASS}
        reading.update({name: round(values[kind], 3) for name, kind in optional.items() if kind in values})
        if HYDRATION in values and weight:
            reading["hydration_pct"] = round(values[HYDRATION] / weight * 100, 2)
        readings.append(reading)
    return readings, skipped
