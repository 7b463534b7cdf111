"""InfluxDB's own permissions keep clinical data from coaches (the real server, authentication on).

One point of every series goes through the writer; then each user tries what it may and may not do.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import httpx
import pytest

from aromatrack.deploy import influx_access
from aromatrack.deploy.influx_access import Role
from aromatrack.schemas import series as S
from aromatrack.schemas.series import Audience, database_name
from aromatrack.streams.influx import InfluxClient, InfluxConfig, InfluxError, rows

WHEN = datetime(2026, 3, 2, 7, tzinfo=timezone.utc)
ATHLETE = "access-1"


def one_point(series: S.Series) -> S.Point:
    tags = {name: "x" for name in series.tags} | {"athlete_id": ATHLETE}
    return series.point(WHEN, tags, {name: 1.0 for name in series.fields})


@pytest.fixture(scope="module")
def settings(stack):
    written = replace(stack, influx_database=f"access_{uuid.uuid4().hex[:8]}")
    influx_access.provision(written)
    return written


@pytest.fixture(scope="module")
def stored(settings):
    async def write() -> None:
        async with influx_access.writer_store(settings) as writer:
            await writer.write([one_point(series) for series in S.ALL_SERIES])

    asyncio.run(write())
    return settings


def client(settings, audience: Audience, role: Role | None) -> InfluxClient:
    user = influx_access.user(settings, role) if role else None
    return InfluxClient(InfluxConfig(settings.influx_url, database_name(settings.influx_database, audience), user))


CLINICAL = [s for s in S.ALL_SERIES if s.audience is Audience.CLINICAL or s.clinical_fields]
COACHING = [s for s in S.ALL_SERIES if s.audience is Audience.COACHING]


@pytest.mark.parametrize("series", CLINICAL, ids=lambda s: s.measurement)
async def test_the_coaching_reader_is_refused_every_clinical_measurement(stored, series):
    async with client(stored, Audience.CLINICAL, Role.CLINICAL_READER) as clinician:
        assert rows(await clinician.query(f'SELECT * FROM "{series.measurement}"'))  # the data is there
    async with client(stored, Audience.CLINICAL, Role.COACHING_READER) as coach:
        with pytest.raises(InfluxError, match="not authorized"):
            await coach.query(f'SELECT * FROM "{series.measurement}"')
        with pytest.raises(InfluxError, match="not authorized"):
            await coach.query(f'SELECT * FROM "{database_name(stored.influx_database, Audience.CLINICAL)}"'
                              f'."autogen"."{series.measurement}"')


@pytest.mark.parametrize("series", COACHING, ids=lambda s: s.measurement)
async def test_the_coaching_reader_reads_coaching_series_without_their_clinical_fields(stored, series):
    async with client(stored, Audience.COACHING, Role.COACHING_READER) as coach:
        (row,) = rows(await coach.query(f'SELECT * FROM "{series.measurement}"'))
    assert {name for name in series.fields if row.get(name) is not None} == set(series.fields_for(Audience.COACHING))
    assert not set(row) & set(series.clinical_fields)


async def test_the_coaching_database_holds_no_clinical_measurement(stored):
    async with client(stored, Audience.COACHING, Role.COACHING_READER) as coach:
        (listing,) = await coach.query("SHOW MEASUREMENTS")
        fields = rows(await coach.query('SHOW FIELD KEYS FROM "body_fat_trend"'))
    assert {name for (name,) in listing["values"]} == {s.measurement for s in COACHING}
    assert "change_since_e2_pct" not in {row["fieldKey"] for row in fields}


async def test_readers_cannot_write_and_nobody_reads_without_a_login(stored):
    point = one_point(S.BODY_COMPOSITION)
    for role in (Role.COACHING_READER, Role.CLINICAL_READER):
        async with client(stored, Audience.COACHING, role) as reader:
            with pytest.raises(InfluxError, match="403"):
                await reader.write([point])
    async with client(stored, Audience.COACHING, None) as anonymous:
        with pytest.raises(InfluxError, match="401"):
            await anonymous.query('SELECT * FROM "body_composition"')
    async with client(stored, Audience.COACHING, Role.WRITER) as writer:
        with pytest.raises(InfluxError, match="not authorized"):
            await writer.query('SELECT * FROM "body_composition"')


def test_provisioning_again_changes_nothing_and_never_prints_a_password(stored):
    line = influx_access.provision(stored)
    assert "_coaching" in line and "_clinical" in line
    for role in Role:
        assert influx_access.user(stored, role).password not in line
        assert influx_access.user(stored, role).password not in repr(influx_access.user(stored, role))
    response = httpx.get(f"{stored.influx_url}/query", params={"q": "SHOW USERS"},
                         auth=(Role.CLINICAL_READER.username, influx_access.user(stored, Role.CLINICAL_READER).password))
    assert "requires admin privilege" in response.text or response.status_code == 403
