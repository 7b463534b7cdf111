"""The import summary (pure): one alert-shaped message per athlete, stable for the same alerts."""

from datetime import datetime, timedelta, timezone

from aromatrack.schemas.events import Alert, AlertEvidence
from aromatrack.services.notifier import SUMMARY_RULE, historical_summary

T0 = datetime(2025, 3, 1, 7, tzinfo=timezone.utc)


def alert(alert_id, days, rule="dose_review.high_e2", severity="warning"):
    return Alert(alert_id=alert_id, athlete_id="ath-1", time=T0 + timedelta(days=days), kind="dose_review", rule=rule,
                 severity=severity, summary=f"summary {alert_id}.", sources=[f"source {alert_id}"],
                 evidence=[AlertEvidence(name="estradiol", value=70, unit="pg/mL", event_ids=["e"])])


def test_the_summary_counts_names_the_latest_and_lists_what_it_covers():
    alerts = [alert("a", 0, severity="info"), alert("b", 90, rule="recheck.after_trt_start"), alert("c", 30)]
    summary = historical_summary("ath-1", alerts)
    assert summary.rule == SUMMARY_RULE and summary.historical and summary.severity == "warning"
    assert summary.summary.startswith("3 historical alerts imported for athlete ath-1, the latest (2025-05-30, "
                                      "recheck.after_trt_start): summary b.")
    evidence = {e.name: e for e in summary.evidence}
    assert evidence["alerts_summarised"].event_ids == ["a", "b", "c"]
    assert (evidence["dose_review.high_e2"].value, evidence["recheck.after_trt_start"].value) == (2, 1)
    assert summary.time == alerts[1].time and summary.sources == ["source a", "source b", "source c"]


def test_the_same_alerts_give_the_same_summary_id_whatever_their_order():
    alerts = [alert("a", 0), alert("b", 1)]
    assert historical_summary("ath-1", alerts).alert_id == historical_summary("ath-1", alerts[::-1]).alert_id
    assert historical_summary("ath-1", alerts).alert_id != historical_summary("ath-1", alerts[:1]).alert_id
