"""Map validated events onto the InfluxDB series contract (pure: events in, points out)."""

from __future__ import annotations

from functools import singledispatch

from aromatrack.schemas import series
from aromatrack.schemas.events import EventBase, ScaleReading
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
