"""Every panel, variable and annotation query of the provisioned boards, run against the real InfluxDB.

Each query runs on its datasource's database logged in as the reader that datasource uses in Grafana: the
coach boards as the coaching reader (who InfluxDB refuses every clinical series, tests/integration/
test_influx_access.py), the clinician board's clinical panels as the clinical reader.

The data is a small cohort streamed through the real broker and worker, so the series are exactly what the
pipeline writes. A query must return rows, and every column it selects must hold a value somewhere: a
renamed measurement returns no series and a renamed field returns an all-null column, so either fails.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from aromatrack.deploy import influx_access
from aromatrack.schemas import series
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.schemas.series import Audience
from aromatrack.services import cohort
from aromatrack.streams.admin import LagProbe, wait_until_consumed
from aromatrack.streams.fit_restamp import restamp
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

from ..grafana_boards import boards, datasource_audiences, queries, substitute
from .conftest import eventually
from .test_workouts_pipeline import corpus_bytes, upload

START = datetime(2026, 1, 5, tzinfo=timezone.utc)
DAYS = 340
RIDE = "pyfitness/indoor/Zwift_Zwift_Fast_Fridays_Bologna_Time_Trial_E_.fit"


@pytest.fixture(scope="module")
def loaded(stack, worker) -> dict[str, str]:
    """Stream an 8-athlete cohort through the session worker; returns the board variables' values: the athlete
    with alerts and doses (also the signed-in athlete of the athlete board) and a workout with HR and power."""
    return asyncio.run(load_cohort(stack, worker))


async def load_cohort(stack, worker) -> dict[str, str]:
    prefix = f"gf{uuid.uuid4().hex[:6]}"
    events = []
    for raw in cohort.generate(athletes=8, days=DAYS, seed=11, start=START):
        try:
            events.append(parse_event({**raw, "athlete_id": f"{prefix}-{raw['athlete_id']}"}))
        except EventError:
            continue
    async with EventProducer(stack.kafka_bootstrap) as producer, LagProbe(stack.kafka_bootstrap) as probe:
        await producer.send_all(events)  # a year of history at once, as a bulk import sends it
        await wait_until_consumed(probe, stack.app_id)
    # Fat loss with HIIT on anastrozole, the dose stepped down at day 120: E2 draws on days 3, 84, 155, 168, 252
    # and 336; the first has no body-fat trend yet, the rest make enough pairs for the per-athlete estimate.
    athlete = f"{prefix}-ath-0002"
    # The cohort's workouts are summaries; one real FIT ride (heart rate and power) gives the athlete a trace.
    ride = restamp(corpus_bytes(RIDE), START + timedelta(days=200, hours=17))
    async with EventProducer(stack.kafka_bootstrap) as producer:
        await producer.send(upload(athlete, ride))
    async with influx_access.reader_store(replace(stack, influx_database=worker.database)) as influx:
        async def everything_written() -> bool:
            # The estimate's slope appears only after the fourth E2 draw, long after the first e2_correlation row.
            awaited = {"alerts": "*", "e2_correlation": '"slope_pg_ml_per_pct"', "modality_weekly": "*",
                       "training_load_daily": "*", "dose": "*", "workout_samples": "*"}
            for measurement, column in awaited.items():
                found = rows(await influx.client(series.SERIES_BY_MEASUREMENT[measurement].audience).query(
                    f"SELECT count({column}) FROM \"{measurement}\" WHERE athlete_id = '{athlete}'"))
                if not found:
                    return False
            return True

        await eventually(everything_written, timeout_s=180, every_s=1)
        (listing,) = await influx.client(Audience.COACHING).query(
            f"SHOW TAG VALUES FROM \"workout_samples\" WITH KEY = \"workout_id\" WHERE athlete_id = '{athlete}'")
    (workout,) = [value for _, value in listing["values"]]
    return {"athlete": athlete, "__user.login": athlete, "workout": workout}


def all_queries() -> list[tuple[str, str, str, str]]:
    return [(name, *query) for name, board in boards().items() for query in queries(board)]


@pytest.mark.parametrize(("board", "where", "datasource", "query"), all_queries(),
                         ids=lambda v: v if len(v) < 60 else None)
async def test_query_returns_the_columns_it_selects(loaded, stack, worker, influx_for, board, where, datasource, query):
    sql = substitute(query, loaded, START, START + timedelta(days=DAYS))
    async with influx_for(worker.database, datasource_audiences()[datasource]) as influx:
        result = await influx.query(sql)
    assert result, f"{board} {where}: no series for\n{sql}"
    for item in result:
        assert item["values"], f"{board} {where}: a series without rows"
        for index, column in enumerate(item["columns"]):
            if column != "time":
                assert any(row[index] is not None for row in item["values"]), (
                    f"{board} {where}: column {column!r} is always null (renamed field?)\n{sql}")
    if query.startswith("SHOW TAG VALUES"):
        variable = where.removeprefix("variable ")
        assert loaded[variable] in [value for _, value in result[0]["values"]], (board, where)
