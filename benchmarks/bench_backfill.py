"""Backfill of many athlete-years through the whole worker: time, and memory as history grows.

Generates the demo cohort in chunks of athletes (one year each by default), produces each chunk to Kafka,
waits until the worker has consumed it, and samples the worker's resident memory after every chunk. The
memory column must stay flat as history grows: per-athlete state is bounded, and nothing keeps history.

Starts its own throwaway stack (ports 39601/38601), so it needs nothing running:
    .venv/bin/python benchmarks/bench_backfill.py [--athlete-years 1000] [--chunk 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import topics
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.services import cohort
from aromatrack.streams.admin import consumer_lag
from aromatrack.streams.producer import EventProducer

CONSUMED = (*topics.INPUT_TOPICS.values(), topics.TIMELINE_TOPIC)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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
    async with EventProducer(settings.kafka_bootstrap) as producer:
        for chunk in range(chunks):
            events = chunk_events(chunk, athletes, days)
            chunk_began = time.perf_counter()
            await producer.send_all(events)
            while await consumer_lag(settings.kafka_bootstrap, settings.app_id, CONSUMED) > 0:
                await asyncio.sleep(0.2)
            total += len(events)
            rate = len(events) / (time.perf_counter() - chunk_began)
            years = (chunk + 1) * athletes * days / 365
            print(f"{chunk + 1:>5} {years:>13.0f} {total:>9} {rate:>9.0f} {rss_mb(worker.pid):>13.0f}", flush=True)
    elapsed = time.perf_counter() - began
    print(f"backfilled {total} events ({chunks * athletes * days / 365:.0f} athlete-years) in {elapsed:.0f}s: "
          f"{total / elapsed:.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athlete-years", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=50, help="athletes per chunk (one year of history each)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    chunks = max(1, args.athlete_years // args.chunk)
    with local_stack.throwaway_stack(39601, 38601) as settings:
        log_path = settings.state_dir / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "aromatrack.services.cli", "worker", "--loglevel", "info"],
            env={**os.environ, **settings.as_env()}, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            while b"[^Worker]: Ready" not in log_path.read_bytes():
                if worker.poll() is not None:
                    raise SystemExit(f"worker exited: {log_path.read_text()[-2000:]}")
                time.sleep(0.1)
            asyncio.run(backfill(settings, worker, chunks, args.chunk, 365))
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)


if __name__ == "__main__":
    main()
