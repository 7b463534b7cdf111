"""A withdrawn alert's point leaves InfluxDB (the real local server), and only that alert's point."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from aromatrack.deploy import influx_access
from aromatrack.schemas import series
from aromatrack.schemas.events import Alert, AlertWithdrawal
from aromatrack.streams.alert_outbox import SentAlert, digest, stale_alert_points
from aromatrack.streams.clinical import alert_point, alert_points_delete
from aromatrack.streams.influx import InfluxError, rows

from .conftest import unique_athlete


def make_alert(athlete: str, rule: str, when: datetime) -> Alert:
    return Alert(
        alert_id=uuid.uuid4().hex, athlete_id=athlete, time=when, kind="lab_recheck", rule=rule, severity="info",
        summary="a recheck is due", evidence=[], sources=["DOMAIN.md"],
    )


def withdrawal_of(alert: Alert) -> AlertWithdrawal:
    return AlertWithdrawal(alert_id=alert.alert_id, athlete_id=alert.athlete_id, time=alert.time, kind=alert.kind,
                           rule=alert.rule, reason="the whole history no longer supports it")


async def test_withdrawals_remove_their_alerts_points_in_one_request_and_keep_the_others(stack, influx_for) -> None:
    """As the worker does it: written and deleted as the writer, read back as the clinical reader."""
    database = f"withdrawn_{uuid.uuid4().hex[:8]}"
    influx_access.provision(stack, database)
    writer = influx_access.writer_store(replace(stack, influx_database=database)).client(series.ALERTS.audience)
    reader = influx_for(database, series.ALERTS.audience)
    athlete, other_athlete = unique_athlete(), unique_athlete()
    when = datetime(2025, 9, 15, 8, 23, 0, 250000, tzinfo=timezone.utc)
    withdrawn = [make_alert(athlete, "recheck.interval_stable", when),
                 make_alert(other_athlete, "recheck.after_dose_change", when)]
    kept_same_time = make_alert(athlete, "recheck.after_dose_change", when)
    kept_other_athlete = make_alert(other_athlete, "recheck.interval_stable", when)
    await writer.write([alert_point(alert) for alert in (*withdrawn, kept_same_time, kept_other_athlete)])

    previous = {alert.alert_id: SentAlert(digest(alert), when, alert.kind, alert.rule) for alert in withdrawn}
    stale = stale_alert_points(previous, [withdrawal_of(alert) for alert in withdrawn])
    assert len(stale) == 2
    await writer.query(alert_points_delete(stale), method="POST")

    left = {row["alert_id"] for row in rows(await reader.query('SELECT "alert_id" FROM "alerts"'))}
    assert left == {kept_same_time.alert_id, kept_other_athlete.alert_id}


async def test_a_failing_statement_after_the_first_is_an_error(stack) -> None:
    """Several statements answer one result each: a delete that failed must not pass for done."""
    database = f"statements_{uuid.uuid4().hex[:8]}"
    influx_access.provision(stack, database)
    writer = influx_access.writer_store(replace(stack, influx_database=database)).client(series.ALERTS.audience)
    alert = make_alert(unique_athlete(), "recheck.interval_stable", datetime(2025, 9, 15, tzinfo=timezone.utc))
    await writer.write([alert_point(alert)])
    # The second statement fails on the server (a field in a deletion's WHERE), the first succeeds.
    with pytest.raises(InfluxError, match="fields not supported"):
        await writer.query("DELETE FROM \"alerts\" WHERE time = '2019-01-01T00:00:00Z';"
                           " DELETE FROM \"alerts\" WHERE \"summary\" = 'a recheck is due'", method="POST")


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
    await writer.query(alert_points_delete(stale_alert_points(previous, [update])), method="POST")
    await writer.write([alert_point(update)])
    found = rows(await reader.query('SELECT "alert_id", "severity" FROM "alerts"'))
    assert [(row["alert_id"], row["severity"], row["time"]) for row in found] == [
        (first.alert_id, "warning", "2025-09-22T08:00:00Z")]
