"""Backfill of many athlete-years through the whole worker: time, and memory as history grows.

Generates the demo cohort in chunks of athletes (one year each by default), replays each chunk into Kafka
paced by event time (`streams.replay`, four weeks at a time), and samples the worker's resident memory after
every chunk. The
memory column must stay flat as history grows: per-athlete state is bounded, and nothing keeps history.

Starts its own throwaway stack (ports 39601/38601), so it needs nothing running:
    .venv/bin/python benchmarks/bench_backfill.py [--athlete-years 1000] [--chunk 50]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from datetime import timedelta

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.services import cohort
from aromatrack.streams.replay import replay_paced
from harness import memory_mb, running_worker, stop_on_sigterm

def chunk_events(chunk: int, athletes: int, days: int) -> list:
    events = []
    for raw in cohort.generate(athletes=athletes, days=days, seed=chunk):
        try:
            events.append(parse_event({**raw, "athlete_id": f"c{chunk:03d}-{raw['athlete_id']}"}))
        except EventError:
            continue  # the cohort's deliberate impossible readings; a backfill sends only valid events
    return events


async def backfill(settings: Settings, worker: subprocess.Popen, chunks: int, athletes: int, days: int) -> None:
    total, began = 0, time.perf_counter()
    print(f"{'chunk':>5} {'athlete-years':>13} {'events':>9} {'events/s':>9} {'worker RSS MB':>13}")
    for chunk in range(chunks):
        events = chunk_events(chunk, athletes, days)
        chunk_began = time.perf_counter()
        await replay_paced(settings, events, window=timedelta(days=28))
        total += len(events)
        rate = len(events) / (time.perf_counter() - chunk_began)
        years = (chunk + 1) * athletes * days / 365
        print(f"{chunk + 1:>5} {years:>13.0f} {total:>9} {rate:>9.0f} {memory_mb(worker.pid):>13.0f}", flush=True)
    elapsed = time.perf_counter() - began
    print(f"backfilled {total} events ({chunks * athletes * days / 365:.0f} athlete-years) in {elapsed:.0f}s: "
          f"{total / elapsed:.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athlete-years", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=50, help="athletes per chunk (one year of history each)")
    args = parser.parse_args()
    stop_on_sigterm()
    chunks = max(1, args.athlete_years // args.chunk)
    with local_stack.throwaway_stack(39601, 38601) as settings, running_worker(settings) as worker:
        asyncio.run(backfill(settings, worker, chunks, args.chunk, 365))


if __name__ == "__main__":
    main()
