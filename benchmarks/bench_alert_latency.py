"""Alert latency: from a lab result acknowledged by Kafka to its alert on the alerts topic, p50 and p99.

Each athlete first gets a context (profile, TRT, anastrozole 0.5 mg 2x/week, total T in range) that is
drained through the worker. Then, one athlete at a time at a steady pace (not a burst: this measures latency,
not throughput), a low LC/MS-MS estradiol result is produced; its alert (rule dose_review.low_e2_on_ai) is
matched by the lab's event id in the alert's evidence. The obvious alternative for comparison is the raw
broker round trip in the same run: produce a message and consume it back with a plain aiokafka consumer.

Starts its own throwaway stack (ports 39701/38701):
    .venv/bin/python benchmarks/bench_alert_latency.py [--athletes 200] [--interval-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import datetime, timedelta, timezone

from aiokafka import AIOKafkaConsumer

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import topics
from aromatrack.schemas.events import parse_event
from aromatrack.streams.admin import LagProbe
from aromatrack.streams.producer import EventProducer
from harness import running_worker, stop_on_sigterm

DRAW = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)


def context_events(athlete: str) -> list:
    start = DRAW - timedelta(days=120)
    envelope = {"athlete_id": athlete}
    return [parse_event({**envelope, **e}) for e in (
        {"type": "athlete.profile", "time": start.isoformat(), "sex": "male", "birth_year": 1988,
         "hr_rest_bpm": 52, "hr_max_bpm": 185},
        {"type": "protocol.phase", "time": start.isoformat(), "phase": "trt"},
        {"type": "dose.change", "time": start.isoformat(), "drug": "anastrozole", "dose_mg": 0.5, "times_per_week": 2},
        {"type": "lab.result", "time": (DRAW - timedelta(minutes=1)).isoformat(), "analyte": "testosterone_total",
         "value": 720, "unit": "ng/dL"},
    )]


def low_e2(athlete: str):
    return parse_event({"type": "lab.result", "athlete_id": athlete, "time": DRAW.isoformat(),
                        "analyte": "estradiol", "value": 11.5, "unit": "pg/mL", "method": "lc_msms"})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def measure(settings: Settings, athletes: int, interval_s: float) -> tuple[list[float], list[float]]:
    names = [f"lat-{n:04d}" for n in range(athletes)]
    async with EventProducer(settings.kafka_bootstrap) as producer:
        await producer.send_all([event for name in names for event in context_events(name)])
        async with LagProbe(settings.kafka_bootstrap) as probe:
            while await probe.worker_lag(settings.app_id) > 0:
                await asyncio.sleep(0.2)

        alerts = AIOKafkaConsumer(topics.ALERTS_TOPIC, bootstrap_servers=settings.kafka_bootstrap,
                                  auto_offset_reset="latest", group_id=None)
        await alerts.start()
        await alerts.seek_to_end()
        sent_at: dict[str, float] = {}
        arrived_at: dict[str, float] = {}

        async def listen() -> None:
            while len(arrived_at) < athletes:
                for records in (await alerts.getmany(timeout_ms=100)).values():
                    now = time.perf_counter()
                    for record in records:
                        alert = json.loads(record.value)
                        for evidence in alert["evidence"]:
                            for event_id in evidence.get("event_ids", []):
                                if event_id in sent_at and event_id not in arrived_at:
                                    arrived_at[event_id] = now

        listener = asyncio.create_task(listen())
        for name in names:
            lab = low_e2(name)
            await producer.send(lab)  # returns once the broker acknowledged it
            sent_at[lab.event_id] = time.perf_counter()
            await asyncio.sleep(interval_s)
        try:
            await asyncio.wait_for(listener, timeout=60)
        except asyncio.TimeoutError:
            pass
        await alerts.stop()

        round_trips = []
        probe = AIOKafkaConsumer(topics.DEAD_LETTER_TOPIC, bootstrap_servers=settings.kafka_bootstrap,
                                 auto_offset_reset="latest", group_id=None)
        await probe.start()
        await probe.seek_to_end()
        for n in range(athletes):
            began = time.perf_counter()
            await producer.send_raw(topics.DEAD_LETTER_TOPIC, b"latency probe %d" % n)
            while not await probe.getmany(timeout_ms=100):
                pass
            round_trips.append(time.perf_counter() - began)
        await probe.stop()
    missing = len(sent_at) - len(arrived_at)
    if missing:
        print(f"warning: {missing} of {len(sent_at)} labs raised no matching alert within 60 s")
    return [arrived_at[k] - sent_at[k] for k in arrived_at], round_trips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=50)
    args = parser.parse_args()
    stop_on_sigterm()
    with local_stack.throwaway_stack(39701, 38701) as settings, running_worker(settings):
        latencies, round_trips = asyncio.run(measure(settings, args.athletes, args.interval_ms / 1000))
    ms = [v * 1000 for v in latencies]
    rt = [v * 1000 for v in round_trips]
    print(f"alert latency over {len(ms)} labs: p50 {statistics.median(ms):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms, "
          f"max {max(ms):.0f} ms")
    print(f"raw broker produce->consume round trip: p50 {statistics.median(rt):.1f} ms, p99 {percentile(rt, 0.99):.1f} ms")
    print(f"ratio (alert p50 / broker round trip p50): {statistics.median(ms) / statistics.median(rt):.0f}x")


if __name__ == "__main__":
    main()
