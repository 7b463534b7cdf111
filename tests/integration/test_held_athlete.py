"""A held athlete on a real worker: a stored history the worker cannot read holds that athlete's alerts, /readyz
counts it (never names it) and the worker stays ready: it does its share for every other athlete (that their
releases go on is shown without servers, tests/unit/test_clinical_stream_parts.py).

The history is one stored before the contract refused its kind (a weigh-in dated in the year 3000, refused since
65e7b0e), written into the clinical table's changelog while the worker is stopped, as an older worker would have
left it; the worker restores it at start and owes it a release (its outbox says so).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from aiokafka import AIOKafkaProducer

from aromatrack.deploy import local_stack
from aromatrack.schemas.events import ScaleReading, dump_event
from aromatrack.streams import clinical_codec as codec
from aromatrack.streams.alert_outbox import Outbox
from aromatrack.streams.app import AthleteKeyedTable, part_key

from .conftest import Worker, eventually
from .test_health import status, wait_ready

URL = "http://127.0.0.1:6311"
CHANGELOG = "aromatrack-clinical_history-changelog"  # the default app id's clinical table


def stored_before_the_contract_refused_it(athlete_id: str) -> dict[bytes, bytes]:
    """The parts an older worker stored for an athlete whose only event is a weigh-in in the year 3000."""
    reading = json.loads(dump_event(ScaleReading(
        athlete_id=athlete_id, time=datetime(2026, 1, 5, 7, tzinfo=timezone.utc), weight_kg=80.0, body_fat_pct=20.0)))
    reading["time"] = "3000-01-05T07:00:00Z"
    period = int(datetime(3000, 1, 5, 7, tzinfo=timezone.utc).timestamp() // codec.PERIOD_S)
    return {
        codec.PERIODS_PART: codec.encode_periods([period]),
        codec.period_part(period): codec.encode_events([json.dumps(reading).encode()]),
        codec.OUTBOX_PART: codec.encode_outbox(Outbox(athlete_id, unreleased=True)),
    }


async def store_in_the_changelog(bootstrap: str, athlete_id: str, parts: dict[bytes, bytes]) -> None:
    athlete_key = athlete_id.encode()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for part, value in parts.items():
            key = part_key(athlete_key, part)
            # The athlete's partition, as the table computes it (from the key alone: no table state is read).
            await producer.send_and_wait(CHANGELOG, value, key=key,
                                         partition=AthleteKeyedTable.partition_for_key(None, key))
    finally:
        await producer.stop()


async def test_a_history_the_worker_cannot_read_is_counted_held_on_readyz_and_the_worker_stays_ready(tmp_path):
    held_athlete = f"held-{uuid.uuid4().hex[:8]}@example.org"
    with local_stack.throwaway_stack(39731, 38731) as settings:
        worker = Worker(settings, "held", tmp_path / "worker.log", AROMATRACK_WEB_PORT="6311")
        try:
            worker.start(timeout_s=90)
            assert (await wait_ready(URL))["held_athletes"] == 0
            worker.stop()
            await store_in_the_changelog(settings.kafka_bootstrap, held_athlete,
                                         stored_before_the_contract_refused_it(held_athlete))
            worker.start(timeout_s=90)

            async def counted_held() -> bool:
                return status(URL + "/readyz")[1].get("held_athletes") == 1

            await eventually(counted_held, timeout_s=60, every_s=0.5)
            assert (await wait_ready(URL))["held_athletes"] == 1  # ready: it does its share for every other athlete
            log = worker.log_path.read_text()
            assert "cannot be read (EventError" in log and "its alerts are held" in log
            assert held_athlete not in log
        finally:
            if worker.process is not None and worker.process.poll() is None:
                worker.stop()
