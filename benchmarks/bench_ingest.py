"""End-to-end ingest throughput of one worker: scale, lab and symptom events from Kafka into InfluxDB.

Each run starts its own fresh local stack (real broker and InfluxDB, loopback, a temporary state dir and
ports 39501/38501), produces N events from the demo cohort generator up front, then starts a real worker
and times how long it takes to ingest them all (the ingest consumer group's lag 0: stored in InfluxDB and
forwarded to the timeline) and checks they are in InfluxDB; it also reports when the clinical agent has
consumed the forwarded timeline too (the faust app's lag 0), and the worker's peak memory (VmHWM). Runs the
obvious alternative in the same run: the same worker writing each event to InfluxDB in its own request
(AROMATRACK_INGEST_BATCH=1), and reports the ratio.

    .venv/bin/python benchmarks/bench_ingest.py [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import dataclass, replace

from aromatrack.deploy import influx_access, local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import topics
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.schemas.series import Audience
from aromatrack.services import cohort
from aromatrack.streams.admin import LagProbe
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer
from harness import memory_mb, running_worker, stop_on_sigterm

SMALL_TYPES = {"scale.reading", "lab.result", "symptom.log"}


def small_events(count: int, run: str) -> list:
    """Valid scale/lab/symptom events from the cohort, re-keyed to athletes unique to this run."""
    events, seed = [], 0
    while len(events) < count:
        for raw in cohort.generate(athletes=200, days=182, seed=seed):
            if raw["type"] in SMALL_TYPES:
                try:
                    events.append(parse_event({**raw, "athlete_id": f"{run}-s{seed}-{raw['athlete_id']}"}))
                except EventError:
                    continue
        seed += 1
    return events[:count]


@dataclass(frozen=True)
class SmallEventBurst:
    """`small_events` produced up front for a run, to be consumed into their own InfluxDB database."""

    run: str
    events: list
    input_topics: tuple[str, ...] = tuple(topics.topic_for(t) for t in SMALL_TYPES)

    @property
    def database(self) -> str:
        return f"bench_{self.run}"

    @classmethod
    async def produce(cls, settings: Settings, count: int) -> "SmallEventBurst":
        run = uuid.uuid4().hex[:6]
        burst = cls(run, small_events(count, run))
        async with EventProducer(settings.kafka_bootstrap) as producer:
            await producer.send_all(burst.events)
        return burst

    async def check_stored(self, settings: Settings) -> None:
        """Every reading of the burst is in InfluxDB."""
        async with influx_access.reader_store(replace(settings, influx_database=self.database)) as influx:
            stored = rows(await influx.client(Audience.COACHING).query(
                f"SELECT count(weight_kg) FROM body_composition WHERE athlete_id =~ /^{self.run}-/"))
        expected = sum(1 for e in self.events if e.type == "scale.reading")
        assert stored and stored[0]["count"] == expected, (stored, expected)


async def time_until_consumed(settings: Settings, input_topics: tuple[str, ...]) -> tuple[float, float]:
    """Seconds from now until the ingest group has committed `input_topics`, and until the faust group has
    consumed the forwarded timeline too."""
    async with LagProbe(settings.kafka_bootstrap) as probe:
        began = time.perf_counter()
        while await probe.lag(topics.ingest_group(settings.app_id), input_topics) > 0:
            await asyncio.sleep(0.1)
        ingested = time.perf_counter() - began
        while await probe.lag(settings.app_id, (topics.TIMELINE_TOPIC,)) > 0:
            await asyncio.sleep(0.1)
        return ingested, time.perf_counter() - began


async def run_once(settings: Settings, batch: int, count: int) -> tuple[float, float, float]:
    """Returns events/s ingested, events/s until the timeline was consumed too, and the worker's peak MB."""
    burst = await SmallEventBurst.produce(settings, count)
    with running_worker(settings, AROMATRACK_INFLUX_DB=burst.database, AROMATRACK_INGEST_BATCH=str(batch)) as worker:
        ingested, with_timeline = await time_until_consumed(settings, burst.input_topics)
        await burst.check_stored(settings)
        return count / ingested, count / with_timeline, memory_mb(worker.pid, "VmHWM")


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000, help="events per run (default 50000)")
    args = parser.parse_args()
    with local_stack.throwaway_stack(39501, 38501) as settings:
        batched, batched_all, batched_mb = asyncio.run(run_once(settings, 1000, args.events))
    print(f"batched writes (default): {batched:,.0f} events/s ingested, {batched_all:,.0f} events/s with the "
          f"timeline consumed, worker peak RSS {batched_mb:.0f} MB")
    with local_stack.throwaway_stack(39501, 38501) as settings:
        single, single_all, single_mb = asyncio.run(run_once(settings, 1, min(args.events, 5_000)))
    print(f"one write per event:      {single:,.0f} events/s ingested, {single_all:,.0f} events/s with the "
          f"timeline consumed, worker peak RSS {single_mb:.0f} MB")
    print(f"ratio batched / per-event: {batched / single:.1f}x")


if __name__ == "__main__":
    main()
