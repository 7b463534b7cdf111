"""A FIT upload whose sample points InfluxDB refuses: the samples are left out and counted in the log, the upload is
not dead-lettered, and its workout is counted as any other.

A refusal (here a field stored with another type in the upload's week, another writer's mistake; a retention policy
shorter than the upload's age is refused the same way) dead-lettered every upload of the FIT agent's batch as an
internal error, though their summaries had gone on. On a throwaway stack: the refusal must not leak into the
shared test database's week, where other tests upload the same file.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
import time

from aiokafka import AIOKafkaConsumer

from aromatrack.deploy import influx_access, local_stack
from aromatrack.schemas import series, topics
from aromatrack.schemas.series import Audience
from aromatrack.streams.fit import decode_fit
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

from .conftest import Worker, eventually
from .test_workouts_pipeline import FILES, corpus_bytes, upload


async def test_sample_points_influxdb_refuses_are_left_out_and_the_upload_counts(tmp_path):
    athlete = f"fit-{uuid.uuid4().hex[:8]}"
    data = corpus_bytes(FILES[0])
    start = decode_fit(data).workouts[0].start
    with local_stack.throwaway_stack(39741, 38741) as settings:
        worker = Worker(settings, "samples", tmp_path / "worker.log")
        stored = replace(settings, influx_database=worker.database)
        try:
            worker.start(timeout_s=90)
            async with influx_access.writer_store(stored) as writer:
                await writer.write([series.WORKOUT_SAMPLES.point(
                    start.replace(second=0, microsecond=0), {"athlete_id": "other", "workout_id": "other"},
                    {"hr_bpm": "high"})])
            async with EventProducer(settings.kafka_bootstrap) as producer:
                await producer.send(upload(athlete, data))
            async with influx_access.reader_store(stored, [Audience.COACHING]) as reader:
                influx = reader.client(Audience.COACHING)

                async def counted() -> bool:
                    return len(rows(await influx.query(f"SELECT load FROM workout WHERE athlete_id = '{athlete}'"))) == 1

                await eventually(counted, timeout_s=60,
                                 describe=lambda: f"(the worker's log ends: {worker.log_path.read_text()[-1500:]})")
            consumer = AIOKafkaConsumer(topics.DEAD_LETTER_TOPIC, bootstrap_servers=settings.kafka_bootstrap,
                                        auto_offset_reset="earliest", group_id=None)
            await consumer.start()
            dead_letters = []
            try:
                until = time.monotonic() + 5  # the FIT batch's dead letters came right after its forwards
                while time.monotonic() < until:
                    for records in (await consumer.getmany(timeout_ms=500)).values():
                        dead_letters += [r for r in records if r.key == athlete.encode()]
            finally:
                await consumer.stop()
            assert dead_letters == []
            assert "workout sample points refused by InfluxDB were not written" in worker.log_path.read_text()
            assert worker.process is not None and worker.process.poll() is None
        finally:
            if worker.process is not None and worker.process.poll() is None:
                worker.stop()
