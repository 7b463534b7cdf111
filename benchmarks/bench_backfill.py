"""Backfill of many athlete-years through the whole worker: time, and memory as history grows.

A fixed cohort (50 athletes by default) with 20 years of history each (1000 athlete-years), sent year after
year into Kafka, each year at once as one bulk import (no pacing: the clinical agent's watermark puts each year
in order, and releases it when the import is closed and consumed), with the
worker's resident memory sampled after every year. The clinical agent keeps every athlete's history in its table,
which is on disk (streams/table_store.py), and in memory about the last year of each (a release settles longer
timelines); the workouts' daily loads are folded into a carried CTL/ATL. So memory should stay flat as history
grows. Workouts are `workout.summary` events here (FIT decoding has its own benchmarks).

Starts its own throwaway stack (ports 39601/38601), so it needs nothing running:
    .venv/bin/python benchmarks/bench_backfill.py [--athletes 50] [--years 20]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.services import cohort
from aromatrack.streams.admin import LagProbe, wait_until_consumed
from aromatrack.streams.producer import EventProducer
from harness import memory_mb, running_worker, stop_on_sigterm


def valid_events(raws: list[dict]) -> list:
    events = []
    for raw in raws:
        try:
            events.append(parse_event(raw))
        except EventError:
            continue  # the cohort's deliberate impossible readings; a backfill sends only valid events
    return events


async def backfill(settings: Settings, worker: subprocess.Popen, athletes: int, years: int) -> None:
    raws = cohort.generate(athletes=athletes, days=365 * years, seed=1)
    first_year = int(raws[0]["time"][:4])
    total, began = 0, time.perf_counter()
    print(f"{'year':>4} {'athlete-years':>13} {'events':>9} {'events/s':>9} {'worker RSS MB':>13}", flush=True)
    for year in range(years):
        prefix = str(first_year + year)
        events = valid_events([raw for raw in raws if raw["time"].startswith(prefix)])
        year_began = time.perf_counter()
        async with EventProducer(settings.kafka_bootstrap) as producer, LagProbe(settings.kafka_bootstrap) as probe:
            async with producer.bulk_import():  # the year at once, unpaced, as `aromatrack send` sends a file
                await producer.send_all(events)
            await wait_until_consumed(probe, settings.app_id)
        total += len(events)
        rate = len(events) / (time.perf_counter() - year_began)
        print(f"{year + 1:>4} {(year + 1) * athletes:>13} {total:>9} {rate:>9.0f} {memory_mb(worker.pid):>13.0f}",
              flush=True)
    elapsed = time.perf_counter() - began
    print(f"backfilled {total} events ({athletes * years} athlete-years) in {elapsed:.0f}s: {total / elapsed:.0f} "
          f"events/s; worker peak RSS {memory_mb(worker.pid, 'VmHWM'):.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=50)
    parser.add_argument("--years", type=int, default=20, help="years of history per athlete")
    args = parser.parse_args()
    stop_on_sigterm()
    with local_stack.throwaway_stack(39601, 38601) as settings, \
            running_worker(settings) as worker:
        asyncio.run(backfill(settings, worker, args.athletes, args.years))


if __name__ == "__main__":
    main()
