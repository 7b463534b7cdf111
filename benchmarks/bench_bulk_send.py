"""A bulk send through the whole stream against `aromatrack evaluate` on the same history, in one run.

The demo cohort without FIT files (50 athletes x 182 days by default; workouts as `workout.summary`), sent all at
once with no pacing, as a bulk import would, to 1 and then 2 workers on a fresh broker each time. Measured: the
time from the first send until the alerts topic holds exactly what `evaluate --as-of now` gives (ids and
bodies; a withdrawal removes an alert), then until InfluxDB holds the release's points too (every stored
weigh-in's body-fat trend point, which a release writes after sending the alerts), the events/s end to end, the
ratio to evaluate's own time on the same events (parse + fold, in-process: the stricter measure, the targets'), the
ratio to the wall time of the command `aromatrack evaluate FILE --as-of now` on the same lines (interpreter start,
imports and reading the file included: what a user timing the command sees), and the workers' CPU over that time
(steadier than wall time on a shared machine). Each worker count runs under each processing guarantee in turn
(at-least-once, the default, then faust's exactly-once with transactions per partition): their ratio is what
fencing costs (streams/fencing.py). Prints the machine's load average, since the figures depend on it.

With `--runs N`, the configurations run N rounds in rotation (a machine that drifts slows each alike), evaluate is
timed again before every round, and a summary gives each configuration's median and range of the ratio: one run's
end-to-end time moved by a third from run to run on this shared machine, with the same code.

Starts its own throwaway stacks (ports 39611/38611), so it needs nothing running:
    .venv/bin/python benchmarks/bench_bulk_send.py [--athletes 50] [--days 182] [--workers 1 2]
        [--guarantees exactly_once at_least_once] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import PROCESSING_GUARANTEES
from aromatrack.schemas import boundary, topics
from aromatrack.schemas.events import EventError, dump_event, parse_event
from aromatrack.services import cohort
from aromatrack.services.demo import wait_until_released
from aromatrack.streams.producer import EventProducer
from bench_workers import cpu_seconds
from harness import running_worker, stop_on_sigterm  # benchmarks/ is the script's directory

TIMEOUT_S = 1800
EVALUATE_RUNS = 3


def evaluate_time(raws: list[dict]) -> tuple[float, dict[str, dict]]:
    """evaluate's own work on the same lines: parse every event and fold (clock to now)."""
    began = time.perf_counter()
    events = []
    for raw in raws:
        try:
            events.append(parse_event(raw))
        except EventError:
            continue
    alerts = boundary.evaluate(events, as_of_s=time.time())
    return time.perf_counter() - began, {a.alert_id: json.loads(dump_event(a)) for a in alerts}


def command_time(path: Path) -> float:
    """Wall seconds of `aromatrack evaluate FILE --as-of now` as a user runs it (interpreter start, imports and
    reading the file included): what a `time` of the command shows, beside the in-process time of its work."""
    as_of = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "aromatrack.services.cli", "evaluate", str(path), "--as-of", as_of],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - began


async def until_alerts_equal(bootstrap: str, expected: dict[str, dict], began: float) -> float | None:
    """Seconds from `began` until the alerts topic holds `expected` (None on timeout)."""
    consumer = AIOKafkaConsumer(topics.ALERTS_TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed")  # what the workers' transactions committed
    await consumer.start()
    latest: dict[str, dict] = {}
    try:
        while time.perf_counter() - began < TIMEOUT_S:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    message = json.loads(record.value)
                    latest[message["alert_id"]] = message
            held = {k: m for k, m in latest.items() if m.get("status") != "withdrawn"}
            if held == expected:
                return time.perf_counter() - began
    finally:
        await consumer.stop()
    return None


async def bulk_send(bootstrap: str, events: list) -> None:
    async with EventProducer(bootstrap) as producer, producer.bulk_import():
        await producer.send_all(events)


@dataclass(frozen=True)
class RunResult:
    """One bulk send: seconds from the first send until the alerts, then the points, were all there."""

    alerts_s: float
    points_s: float
    evaluate_s: float  # evaluate's best time in the same round
    command_s: float  # the `aromatrack evaluate` command's best wall time in the same round


def run(workers: int, guarantee: str, raws: list[dict], evaluate_s: float, command_s: float) -> RunResult | None:
    events = []
    for raw in raws:
        try:
            events.append(parse_event(raw))
        except EventError:
            continue  # the cohort's deliberate impossible readings
    with local_stack.throwaway_stack(39611, 38611) as settings, contextlib.ExitStack() as running:
        processes = []
        for index in range(workers):
            state = settings.state_dir / f"worker{index}"
            state.mkdir()
            processes.append(running.enter_context(running_worker(
                settings, AROMATRACK_STATE_DIR=str(state), AROMATRACK_WEB_PORT=str(6266 + index),
                AROMATRACK_PROCESSING_GUARANTEE=guarantee,
            )))
        _, expected = evaluate_time(raws)
        cpu_at_start = sum(cpu_seconds(process.pid) for process in processes)
        began = time.perf_counter()
        asyncio.run(bulk_send(settings.kafka_bootstrap, events))
        sent_s = time.perf_counter() - began
        took = asyncio.run(until_alerts_equal(settings.kafka_bootstrap, expected, began))
        drain_cpu_s = sum(cpu_seconds(process.pid) for process in processes) - cpu_at_start
        if took is None:
            print(f"{workers} worker(s), {guarantee}: alerts not equal to evaluate's within {TIMEOUT_S} s")
            return None
        if not asyncio.run(wait_until_released(settings, timeout_s=TIMEOUT_S, every_s=0.05)):
            print(f"{workers} worker(s), {guarantee}: the release's points not in InfluxDB within {TIMEOUT_S} s")
            return None
        points_s = time.perf_counter() - began
    print(f"{workers} worker(s), {guarantee}: {len(events)} events sent in {sent_s:.1f} s; alerts equal to evaluate's "
          f"({len(expected)}) after {took:.1f} s: {len(events) / took:.0f} events/s end to end, "
          f"{took / evaluate_s:.1f}x evaluate's {evaluate_s:.2f} s ({took / command_s:.1f}x the command's "
          f"{command_s:.2f} s); "
          f"workers' CPU from the send to then {drain_cpu_s:.1f} s; "
          f"the release's points in InfluxDB after {points_s:.1f} s ({points_s / evaluate_s:.1f}x); "
          f"load average {os.getloadavg()[0]:.1f}")
    return RunResult(took, points_s, evaluate_s, command_s)


def summary(label: str, results: list[RunResult]) -> str:
    """The median and range of a configuration's ratios to evaluate (alerts, then points)."""
    alerts = [r.alerts_s / r.evaluate_s for r in results]
    points = [r.points_s / r.evaluate_s for r in results]
    command = [r.alerts_s / r.command_s for r in results]
    return (f"{label}: {len(results)} runs; alerts {statistics.median(alerts):.1f}x evaluate (median; "
            f"{min(alerts):.1f}-{max(alerts):.1f}x), points {statistics.median(points):.1f}x "
            f"({min(points):.1f}-{max(points):.1f}x); median time to the alerts "
            f"{statistics.median(r.alerts_s for r in results):.1f} s; alerts {statistics.median(command):.1f}x the "
            f"evaluate command's wall time ({min(command):.1f}-{max(command):.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=50)
    parser.add_argument("--days", type=int, default=182)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--guarantees", nargs="+", choices=PROCESSING_GUARANTEES, default=list(PROCESSING_GUARANTEES),
                        help="faust's processing guarantee of the workers, each in turn (default: both, at least once "
                             "first: the transactions' cost against the same workers without them)")
    parser.add_argument("--runs", type=int, default=1,
                        help="rounds of every configuration, in rotation, with a summary of each at the end (default 1)")
    args = parser.parse_args()
    stop_on_sigterm()
    raws = cohort.generate(athletes=args.athletes, days=args.days, seed=7)
    results: dict[str, list[RunResult]] = {}
    with tempfile.TemporaryDirectory() as scratch:  # the history as a file, for the command
        history = Path(scratch) / "history.jsonl"
        history.write_text("".join(json.dumps(raw) + "\n" for raw in raws))
        for _ in range(args.runs):
            # The best of three: evaluate's time moved by half from one run to the next on a shared machine, and the
            # ratios are against the core at its fastest.
            evaluate_s = min(evaluate_time(raws)[0] for _ in range(EVALUATE_RUNS))
            command_s = min(command_time(history) for _ in range(EVALUATE_RUNS))
            print(f"cohort {args.athletes} athletes x {args.days} days: {len(raws)} lines; evaluate {evaluate_s:.2f} s "
                  f"(best of {EVALUATE_RUNS}; the command `aromatrack evaluate FILE --as-of now` {command_s:.2f} s "
                  "wall)")
            for workers in args.workers:
                for guarantee in args.guarantees:
                    result = run(workers, guarantee, raws, evaluate_s, command_s)
                    if result is not None:
                        results.setdefault(f"{workers} worker(s), {guarantee}", []).append(result)
    if args.runs > 1:
        for label, runs in results.items():
            print(summary(label, runs))


if __name__ == "__main__":
    main()
