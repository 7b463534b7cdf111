"""Table recovery time on the real broker: how long a worker takes to rebuild its tables from their changelogs.

A cohort's history is backfilled through one worker (sent at once, as a bulk import) on a fresh
throwaway stack (ports 39531/38531), which fills the tables' changelogs. Then a worker is started again and timed
until it is ready, which faust reports once the tables of its partitions are recovered (the athlete tables' disk
store, streams/table_store.py, and faust's memory store both start empty and are rebuilt from the changelogs at
every start). The comparison in the same run: a worker of an app with empty
tables, the start-up cost every start pays; the recovery time is the difference. Each start is timed twice,
alternating.

faust's RocksDB store (rocksdict), which would keep the tables on disk and read only the changelog written since
the last stop, cannot run these agents: its writes assert that they happen inside one event's processing, and
the agents write from batches and timers (the run in BENCHMARKS.md).

    .venv/bin/python benchmarks/bench_table_recovery.py [--athletes 20] [--days 365]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import datetime, timezone

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.services import cohort
from aromatrack.streams.admin import topic_partitions
from aromatrack.streams.admin import LagProbe, wait_until_consumed
from aromatrack.streams.producer import EventProducer
from harness import running_worker, stop_on_sigterm


def backfill_events(athletes: int, days: int) -> list:
    events = []
    for raw in cohort.generate(athletes=athletes, days=days, seed=3, start=datetime(2024, 1, 1, tzinfo=timezone.utc)):
        try:
            events.append(parse_event(raw))
        except EventError:
            continue
    return events


async def changelog_records(settings: Settings) -> int:
    """Offsets held by the app's changelogs (end minus log start: what a full recovery reads, at most)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith(f"{settings.app_id}-") and n.endswith("-changelog")]
        partitions = await topic_partitions(admin, names)
        ends, starts = await consumer.end_offsets(partitions), await consumer.beginning_offsets(partitions)
        return sum(ends[tp] - starts[tp] for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


def time_to_ready(settings: Settings, **env: str) -> float:
    """Seconds from starting a worker until it is ready (its tables recovered); the worker is stopped after."""
    began = time.perf_counter()
    with running_worker(settings, **env):
        return time.perf_counter() - began


async def send_and_wait(settings, events: list) -> None:
    """The backfill at once (no pacing), until the worker has consumed it."""
    async with EventProducer(settings.kafka_bootstrap) as producer, LagProbe(settings.kafka_bootstrap) as probe:
        await producer.send_all(events)
        await wait_until_consumed(probe, settings.app_id)


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    events = backfill_events(args.athletes, args.days)
    with local_stack.throwaway_stack(39531, 38531) as settings:
        began = time.perf_counter()
        with running_worker(settings, AROMATRACK_WORKER_DIR=str(settings.state_dir / "backfill")):
            asyncio.run(send_and_wait(settings, events))
            time.sleep(8)
        backfill_s = time.perf_counter() - began
        records = asyncio.run(changelog_records(settings))
        megabytes = sum(f.stat().st_size for f in (settings.state_dir / "kafka" / "data").glob(
            f"{settings.app_id}-*-changelog-*/*.log")) / 1e6
        print(f"backfill: {args.athletes} athletes x {args.days} days ({args.athletes * args.days / 365:.0f} "
              f"athlete-years), {len(events):,} events in {backfill_s:.0f} s; changelogs hold {records:,} records, "
              f"{megabytes:.1f} MB; "
              f"load avg {os.getloadavg()[0]:.1f}", flush=True)
        modes = {
            "baseline (empty tables)": dict(AROMATRACK_APP_ID="recovery-baseline"),
            "after the backfill": {},
        }
        timings: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(2):
            for mode, env in modes.items():
                timings[mode].append(time_to_ready(settings, **env))
                print(f"  round {round_ + 1}: {mode}: ready in {timings[mode][-1]:.1f} s", flush=True)
        baseline = min(timings["baseline (empty tables)"])
        for mode, seconds in timings.items():
            print(f"{mode}: ready in {min(seconds):.1f} s (best of 2), recovery {min(seconds) - baseline:.1f} s")


if __name__ == "__main__":
    main()
