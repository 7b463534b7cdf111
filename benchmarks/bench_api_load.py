"""Load test of the HTTP ingest API on loopback: accepted events/s and latency from request to event on Kafka.

Starts a real `aromatrack api` server (uvicorn, one process) against the running local stack (AROMATRACK_*
env; `aromatrack stack up` first) with a temporary user store, then fires scale readings from concurrent
HTTP clients. The API answers 202 only after Kafka acknowledged the event (acks=all), so each request's
latency bounds the time from request to the event being on Kafka; the run then reads the topic back and checks
that every accepted event is there exactly once. Two shapes: one event per request, and batches. The store is
the embedded SQLite file, or with `--store postgresql` a fresh schema on the local stack's PostgreSQL.

    .venv/bin/python benchmarks/bench_api_load.py [--requests 3000] [--concurrency 32] [--batch 50] [--store sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from aromatrack.deploy import influx_access
from aromatrack.deploy.influx_access import READER
from aromatrack.deploy.settings import load_settings
from aromatrack.schemas import topics
from aromatrack.streams.admin import records_to_end
from aromatrack.services.auth import Role
from aromatrack.services.store import Store

PORT = 39333

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.store_databases import postgres_schema  # noqa: E402  (the tests' schema on the local PostgreSQL)


_minutes = itertools.count()


def reading() -> dict:
    """A reading at a minute no other reading of this run uses, so no two events share a content id."""
    minute = next(_minutes)
    start = datetime(2020, 1, 1, tzinfo=timezone.utc)
    return {"time": (start + timedelta(minutes=minute)).isoformat(), "weight_kg": 80 + minute % 10 / 10,
            "body_fat_pct": 15 + minute % 7 / 10}


async def fire(
    base: str, tokens: dict[str, str], requests: int, concurrency: int, batch: int
) -> tuple[list[float], float, int]:
    """Send `requests` POSTs from `concurrency` workers; returns per-request latencies (s), wall time and
    how many events the API reported as newly accepted."""
    latencies: list[float] = []
    accepted = [0]
    athletes = list(tokens)
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            athlete = athletes[n % len(athletes)]
            body = [reading() for _ in range(batch)] if batch > 1 else reading()
            began = time.perf_counter()
            response = await client.post(f"/v1/athletes/{athlete}/scale-readings", json=body,
                                         headers={"Authorization": f"Bearer {tokens[athlete]}"})
            latencies.append(time.perf_counter() - began)
            if response.status_code != 202:
                raise RuntimeError(f"request {n}: HTTP {response.status_code} {response.text[:200]}")
            accepted[0] += len(response.json()["accepted"])

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return latencies, time.perf_counter() - began, accepted[0]


async def count_on_kafka(bootstrap: str, athletes: set[str], start: dict[TopicPartition, int]) -> tuple[int, int]:
    """(messages for these athletes, distinct event ids) written after `start`."""
    import json

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        ids = [event["event_id"] for event in (json.loads(message.value) for message in
                                               await records_to_end(consumer, list(start)))
               if event["athlete_id"] in athletes]
        return len(ids), len(set(ids))
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(topics.PARTITIONS)]
        return await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1]


async def main(args: argparse.Namespace) -> None:
    with postgres_schema() if args.store == "postgresql" else nullcontext(None) as store_dsn:
        await load(args, store_dsn)


async def load(args: argparse.Namespace, store_dsn: str | None) -> None:
    settings = load_settings()
    state = Path(tempfile.mkdtemp(prefix="aromatrack-apiload-"))
    store = Store(store_dsn or state / "api.sqlite3")
    print(f"store: {store.dialect}")
    run = uuid.uuid4().hex[:6]
    tokens = {f"load-{run}-{i}": "" for i in range(50)}
    for athlete in tokens:
        tokens[athlete] = store.add_user(athlete, Role.ATHLETE)
    server = subprocess.Popen(
        [sys.executable, "-m", "aromatrack.services.cli", "api", "--port", str(PORT)],
        env={**os.environ, "AROMATRACK_STATE_DIR": str(state), **{  # its own user store; the stack's InfluxDB readers
            role.password_variable: influx_access.user(settings, role).password for role in READER.values()},
            **({"AROMATRACK_STORE_DSN": store_dsn} if store_dsn else {})},
        stderr=(state / "api.log").open("wb"),  # its access log: a line per request
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(100):
            try:
                httpx.get(base + "/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        await fire(base, tokens, 200, args.concurrency, 1)  # warm-up (connections, topic metadata)
        topic = topics.topic_for("scale.reading")
        start = await end_offsets(settings.kafka_bootstrap, topic)
        total_accepted = 0
        for batch, requests in ((1, args.requests), (args.batch, max(args.requests // args.batch * 4, 50))):
            latencies, wall, accepted = await fire(base, tokens, requests, args.concurrency, batch)
            total_accepted += accepted
            print(f"batch={batch:>3}: {requests} requests x {batch} events in {wall:.1f}s -> "
                  f"{requests * batch / wall:,.0f} accepted events/s, {requests / wall:,.0f} requests/s; "
                  f"latency request->on Kafka p50 {statistics.median(latencies) * 1000:.1f} ms, "
                  f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        messages, distinct = await count_on_kafka(settings.kafka_bootstrap, set(tokens), start)
        print(f"accepted {total_accepted} events; on Kafka after the runs: {messages} messages, "
              f"{distinct} distinct event ids")
    finally:
        server.terminate()
        server.wait(10)
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    asyncio.run(main(parser.parse_args()))
