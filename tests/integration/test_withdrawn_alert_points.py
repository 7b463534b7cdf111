"""A withdrawn alert's point leaves InfluxDB (the real local server), and only that alert's point."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timezone

from aromatrack.deploy import influx_access
from aromatrack.schemas import series
from aromatrack.schemas.events import Alert, AlertWithdrawal
from aromatrack.streams.alert_outbox import SentAlert, digest, stale_alert_points
from aromatrack.streams.clinical import alert_point, alert_point_delete
from aromatrack.streams.influx import rows

from .conftest import unique_athlete


def make_alert(athlete: str, rule: str, when: datetime) -> Alert:
    return Alert(
        alert_id=uuid.uuid4().hex, athlete_id=athlete, time=when, kind="lab_recheck", rule=rule, severity="info",
        summary="a recheck is due", evidence=[], sources=["DOMAIN.md"],
    )


async def test_a_withdrawal_removes_the_alerts_point_and_keeps_the_others(stack, influx_for) -> None:
    """As the worker does it: written and deleted as the writer, read back as the clinical reader."""
    database = f"withdrawn_{uuid.uuid4().hex[:8]}"
    influx_access.provision(stack, database)
    writer = influx_access.writer_store(replace(stack, influx_database=database)).client(series.ALERTS.audience)
    reader = influx_for(database, series.ALERTS.audience)
    athlete = unique_athlete()
    when = datetime(2025, 9, 15, 8, 23, 0, 250000, tzinfo=timezone.utc)
    withdrawn = make_alert(athlete, "recheck.interval_stable", when)
    kept_same_time = make_alert(athlete, "recheck.after_dose_change", when)
    kept_other_athlete = make_alert(unique_athlete(), "recheck.interval_stable", when)
    await writer.write([alert_point(alert) for alert in (withdrawn, kept_same_time, kept_other_athlete)])

    withdrawal = AlertWithdrawal(alert_id=withdrawn.alert_id, athlete_id=athlete, time=when, kind=withdrawn.kind,
                                 rule=withdrawn.rule, reason="the whole history no longer supports it")
    (stale,) = stale_alert_points({withdrawn.alert_id: SentAlert(digest(withdrawn), when, withdrawn.kind, withdrawn.rule)},
                                  [withdrawal])
    await writer.query(alert_point_delete(stale), method="POST")

    left = {row["alert_id"] for row in rows(await reader.query('SELECT "alert_id" FROM "alerts"'))}
    assert left == {kept_same_time.alert_id, kept_other_athlete.alert_id}


async def test_an_updated_alert_keeps_one_point_when_its_time_and_severity_change(stack, influx_for) -> None:
    database = f"updated_{uuid.uuid4().hex[:8]}"
    influx_access.provision(stack, database)
    writer = influx_access.writer_store(replace(stack, influx_database=database)).client(series.ALERTS.audience)
    reader = influx_for(database, series.ALERTS.audience)
    first = make_alert(unique_athlete(), "dose_review.high_e2", datetime(2025, 9, 15, 8, tzinfo=timezone.utc))
    await writer.write([alert_point(first)])
    update = first.model_copy(update={"time": datetime(2025, 9, 22, 8, tzinfo=timezone.utc), "severity": "warning",
                                      "version": 2})
    previous = {first.alert_id: SentAlert(digest(first), first.time, first.kind, first.rule)}
    for stale in stale_alert_points(previous, [update]):
        await writer.query(alert_point_delete(stale), method="POST")
    await writer.write([alert_point(update)])
    found = rows(await reader.query('SELECT "alert_id", "severity" FROM "alerts"'))
    assert [(row["alert_id"], row["severity"], row["time"]) for row in found] == [
        (first.alert_id, "warning", "2025-09-22T08:00:00Z")]
