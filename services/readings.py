"""Read one athlete's series back from InfluxDB, for the API's read routes and the alert chart."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aromatrack.schemas.series import Series
from aromatrack.streams.influx import InfluxError, SeriesStore, rows

# Athlete ids that may appear in a URL and, quoted, in InfluxQL; anything else is refused before a query.
ATHLETE_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"
_ATHLETE_ID = re.compile(ATHLETE_ID_PATTERN)


async def series_rows(
    influx: SeriesStore,
    series: Series,
    athlete_id: str,
    since: datetime,
    until: datetime | None = None,
    where: str = "",
) -> list[dict[str, Any]]:
    """Every point of `series` for the athlete in [since, until], oldest first, times as RFC 3339 strings.

    Read from the series' own audience database (so a coaching series comes without its clinical fields).
    """
    if not _ATHLETE_ID.match(athlete_id):
        raise ValueError("athlete_id: not a valid id")
    bounds = f"time >= '{since.isoformat()}'" + (f" AND time <= '{until.isoformat()}'" if until else "")
    extra = f" AND {where}" if where else ""
    query = f"SELECT * FROM \"{series.measurement}\" WHERE athlete_id = '{athlete_id}' AND {bounds}{extra} ORDER BY time"
    try:
        return rows(await influx.client(series.audience).query(query))
    except InfluxError as exc:
        if "database not found" in str(exc):
            return []  # nothing was ever written: no data rather than an outage
        raise
