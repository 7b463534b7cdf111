"""The evidence chart of each alert (in its webhook, its e-mail and the web inbox): estradiol draws, body-fat
trend, weekly load and dose changes on one time axis, so a clinician sees the story before reading numbers.
A small PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from aromatrack.schemas import series as S  # noqa: E402
from aromatrack.schemas.events import Alert  # noqa: E402
from aromatrack.services.readings import series_rows  # noqa: E402
from aromatrack.streams.influx import InfluxError, SeriesStore  # noqa: E402

log = logging.getLogger("aromatrack.chart")

Series2 = list[tuple[datetime, float]]
SMALL_DOSE_MG = 20.0


@dataclass(frozen=True)
class Evidence:
    e2_pg_ml: Series2 = field(default_factory=list)
    body_fat_pct: Series2 = field(default_factory=list)
    weekly_load: Series2 = field(default_factory=list)
    weekly_mg_by_drug: dict[str, Series2] = field(default_factory=dict)


def weekly_sums(daily: Series2) -> Series2:
    """Sum daily values into ISO weeks, each dated at its Monday 00:00 UTC."""
    weeks: dict[datetime, float] = defaultdict(float)
    for moment, value in daily:
        day = moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        weeks[day - timedelta(days=day.weekday())] += value
    return sorted(weeks.items())


def _points(rows: list[dict], column: str) -> Series2:
    return [(_time(row["time"]), float(row[column])) for row in rows if row.get(column) is not None]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def gather(influx: SeriesStore, athlete_id: str, until: datetime, days: int = 180) -> Evidence:
    """The athlete's evidence series over the `days` before `until` (the alert's time)."""
    since = until - timedelta(days=days)
    e2 = await series_rows(influx, S.LAB, athlete_id, since, until, where="analyte = 'estradiol'")
    trend = await series_rows(influx, S.BODY_FAT_TREND, athlete_id, since, until)
    body_fat = _points(trend, "smoothed_pct") or _points(
        await series_rows(influx, S.BODY_COMPOSITION, athlete_id, since, until), "body_fat_pct"
    )
    load = _points(await series_rows(influx, S.TRAINING_LOAD_DAILY, athlete_id, since, until), "load")
    doses: dict[str, Series2] = defaultdict(list)
    for row in await series_rows(influx, S.DOSE, athlete_id, since, until):
        if row.get("weekly_mg") is not None:
            doses[row["drug"]].append((_time(row["time"]), float(row["weekly_mg"])))
    return Evidence(_points(e2, "value"), body_fat, weekly_sums(load), dict(doses))


def render(evidence: Evidence, title: str, alert_time: datetime) -> bytes:
    """A 4-panel PNG sharing one time axis; the alert time is a dashed line on every panel."""
    # Fixed margins: matplotlib's constrained layout measured every tick label again and took ~40% of a render
    # (0.5 s a chart on a slow core; the demo's notifier renders 27 in a row).
    fig, axes = plt.subplots(4, 1, figsize=(7, 6.4), dpi=90, sharex=True)
    fig.subplots_adjust(left=0.12, right=0.89, top=0.93, bottom=0.06, hspace=0.15)
    e2_ax, fat_ax, load_ax, dose_ax = axes
    fig.suptitle(title, fontsize=10)
    if evidence.e2_pg_ml:
        e2_ax.plot(*zip(*evidence.e2_pg_ml), "o-", color="tab:red", markersize=5)
    e2_ax.set_ylabel("E2 pg/mL")
    if evidence.body_fat_pct:
        fat_ax.plot(*zip(*evidence.body_fat_pct), "-", color="tab:blue")
    fat_ax.set_ylabel("body fat %")
    if evidence.weekly_load:
        times, loads = zip(*evidence.weekly_load)
        load_ax.bar(times, loads, width=5, align="edge", color="tab:green")
    load_ax.set_ylabel("weekly load")
    # Testosterone (~100 mg/week) and anastrozole (~1 mg/week) differ 100-fold: small doses get a right axis.
    small_ax = dose_ax.twinx() if any(
        max(mg for _, mg in changes) < SMALL_DOSE_MG for changes in evidence.weekly_mg_by_drug.values()
    ) else None
    for index, (drug, changes) in enumerate(sorted(evidence.weekly_mg_by_drug.items())):
        # A dose holds until the next change: steps carried forward to the alert time, a dot at each change.
        times, mgs = zip(*changes)
        ax = small_ax if small_ax is not None and max(mgs) < SMALL_DOSE_MG else dose_ax
        color = f"C{index + 3}"
        ax.step([*times, alert_time], [*mgs, mgs[-1]], where="post", color=color, label=drug)
        ax.plot(times, mgs, "o", color=color, markersize=4)
        # Different headroom per axis keeps two flat dose lines from drawing on top of each other.
        headroom = 2.2 if ax is small_ax else 1.3
        ax.set_ylim(bottom=0, top=max(max(mgs) * headroom, ax.get_ylim()[1]))
    if small_ax is not None:
        small_ax.set_ylabel("mg / week (small)", fontsize=8)
    if evidence.weekly_mg_by_drug:
        handles = [h for ax in (dose_ax, small_ax) if ax is not None for h in ax.get_legend_handles_labels()[0]]
        dose_ax.legend(handles=handles, fontsize=7, loc="lower left")
    dose_ax.set_ylabel("mg / week")
    for ax in axes:
        if not ax.has_data():
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
        ax.axvline(alert_time, color="0.3", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    dose_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(dose_ax.xaxis.get_major_locator()))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


async def alert_png(influx: SeriesStore | None, alert: Alert) -> bytes:
    """The alert's chart; with empty panels when InfluxDB is not connected or does not answer (the alert
    still goes out, and its numbers are in its evidence)."""
    evidence = Evidence()
    if influx is not None:
        try:
            evidence = await gather(influx, alert.athlete_id, alert.time)
        except (InfluxError, httpx.HTTPError, ValueError) as exc:
            log.warning("alert %s: evidence unavailable (%s); an empty chart", alert.alert_id, type(exc).__name__)
    return render(evidence, f"{alert.kind} · {alert.rule} · athlete {alert.athlete_id}", alert.time)
