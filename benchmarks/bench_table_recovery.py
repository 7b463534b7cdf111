"""Table recovery time on the real broker: faust's memory store against its RocksDB store (rocksdict).

A cohort's history is backfilled through one worker (paced replay, the way long histories go in) on a fresh
throwaway stack (ports 39531/38531), which fills the tables' changelogs. Then a worker is started again and timed
until it is ready, which faust reports once the tables of its partitions are recovered:
- memory store: every start rebuilds the tables from the changelogs;
- RocksDB store, empty directory: a worker on a new host (or one taking over) reads the changelogs into RocksDB;
- RocksDB store, its own directory again: a restarted worker reads only what was written since it stopped;
- baseline: a worker of an app with empty tables, the start-up cost every mode also pays.
Each start is timed twice, alternating; the recovery time is the time to ready minus the baseline.

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
from aromatrack.streams.replay import replay_paced
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


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    events = backfill_events(args.athletes, args.days)
    with local_stack.throwaway_stack(39531, 38531) as settings:
        rocks_dir = str(settings.state_dir / "rocks-own")
        began = time.perf_counter()
        # The backfill fills the RocksDB worker's own directory too: the changelogs are the same whichever store.
        with running_worker(settings, AROMATRACK_TABLE_STORE="rocksdb", AROMATRACK_WORKER_DIR=rocks_dir,
                            AROMATRACK_CLINICAL_GRACE_S="5"):
            asyncio.run(replay_paced(settings, events))
            time.sleep(8)
        backfill_s = time.perf_counter() - began
        records = asyncio.run(changelog_records(settings))
        print(f"backfill: {args.athletes} athletes x {args.days} days ({args.athletes * args.days / 365:.0f} "
              f"athlete-years), {len(events):,} events in {backfill_s:.0f} s; changelogs hold {records:,} records; "
              f"load avg {os.getloadavg()[0]:.1f}", flush=True)
        modes = {
            "baseline (empty tables)": dict(AROMATRACK_APP_ID="recovery-baseline",
                                            AROMATRACK_WORKER_DIR=str(settings.state_dir / "baseline")),
            "memory store": dict(AROMATRACK_TABLE_STORE="memory", AROMATRACK_WORKER_DIR=str(settings.state_dir / "mem")),
            "rocksdb, empty directory": dict(AROMATRACK_TABLE_STORE="rocksdb"),
            "rocksdb, its own directory": dict(AROMATRACK_TABLE_STORE="rocksdb", AROMATRACK_WORKER_DIR=rocks_dir),
        }
        timings: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(2):
            for mode, env in modes.items():
                if mode == "rocksdb, empty directory":
                    env = {**env, "AROMATRACK_WORKER_DIR": str(settings.state_dir / f"rocks-new-{round_}")}
                timings[mode].append(time_to_ready(settings, **env))
                print(f"  round {round_ + 1}: {mode}: ready in {timings[mode][-1]:.1f} s", flush=True)
        baseline = min(timings["baseline (empty tables)"])
        for mode, seconds in timings.items():
            print(f"{mode}: ready in {min(seconds):.1f} s (best of 2), recovery {min(seconds) - baseline:.1f} s")


if __name__ == "__main__":
    main()
