"""One worker against two (and more) on the real local broker: ingest and end-to-end events/s, CPU, idle CPU.

For each worker count, on a fresh throwaway stack (Apache Kafka and InfluxDB, loopback, ports 39521/38521): N small
events (scale, lab, symptom; the demo cohort over 200 athletes) are produced first, then the workers start
together and are timed until the ingest consumer group has committed every input event ("ingested") and until
the faust group has consumed the forwarded timeline too ("end to end"); the readings are checked in InfluxDB.
CPU seconds of the workers and of the broker over that time come from /proc. Then everything idles for
`--idle` seconds and the CPU share of one worker and of the broker is measured (Apache Kafka holds an empty fetch
for fetch.max.wait.ms, so idle consumers cost next to nothing). The 1-worker run is the comparison.

    .venv/bin/python benchmarks/bench_workers.py [--events 20000] [--workers 1 2] [--idle 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from pathlib import Path

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import Settings
from bench_ingest import SmallEventBurst, time_until_consumed
from harness import running_worker, stop_on_sigterm

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (its threads included) from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def broker_pid(settings: Settings) -> int:
    return int((settings.state_dir / "kafka.pid").read_text())


async def run_once(settings: Settings, workers: int, count: int, idle_s: float) -> dict[str, float]:
    burst = await SmallEventBurst.produce(settings, count)
    with contextlib.ExitStack() as stack:
        processes = [
            stack.enter_context(running_worker(
                settings, AROMATRACK_INFLUX_DB=burst.database,
                AROMATRACK_WORKER_DIR=str(settings.state_dir / f"worker-{burst.run}-{i}"),
            ))
            for i in range(workers)
        ]
        broker = broker_pid(settings)
        cpu_before = [cpu_seconds(p.pid) for p in processes], cpu_seconds(broker)
        ingested, end_to_end = await time_until_consumed(settings, burst.input_topics)
        worker_cpu = sum(cpu_seconds(p.pid) for p in processes) - sum(cpu_before[0])
        broker_cpu = cpu_seconds(broker) - cpu_before[1]
        await asyncio.sleep(3)  # the last commits and timers settle
        idle_before = cpu_seconds(processes[0].pid), cpu_seconds(broker)
        await asyncio.sleep(idle_s)
        idle_worker = (cpu_seconds(processes[0].pid) - idle_before[0]) / idle_s
        idle_broker = (cpu_seconds(broker) - idle_before[1]) / idle_s
    await burst.check_stored(settings)
    return {
        "ingest": count / ingested, "e2e": count / end_to_end, "seconds": end_to_end,
        "worker_ms": worker_cpu / count * 1000, "broker_ms": broker_cpu / count * 1000,
        "broker_share": broker_cpu / end_to_end, "idle_worker": idle_worker, "idle_broker": idle_broker,
    }


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000, help="events per run (default 20000)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to run (default 1 2)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle measured after each run")
    args = parser.parse_args()
    results = {}
    for workers in args.workers:
        with local_stack.throwaway_stack(39521, 38521) as settings:
            results[workers] = result = asyncio.run(run_once(settings, workers, args.events, args.idle))
        print(f"{workers} worker(s), load avg {os.getloadavg()[0]:.1f}: ingest {result['ingest']:,.0f} events/s, "
              f"end to end {result['e2e']:,.0f} events/s ({result['seconds']:.1f} s); CPU per event: workers "
              f"{result['worker_ms']:.2f} ms, broker {result['broker_ms']:.3f} ms (broker {result['broker_share']:.0%} "
              f"of a core while busy); idle: a worker {result['idle_worker']:.1%} of a core, the broker "
              f"{result['idle_broker']:.1%}", flush=True)
    base = results[args.workers[0]]
    for workers, result in results.items():
        if workers != args.workers[0]:
            print(f"{workers} vs {args.workers[0]} worker(s): ingest {result['ingest'] / base['ingest']:.2f}x, "
                  f"end to end {result['e2e'] / base['e2e']:.2f}x")


if __name__ == "__main__":
    main()
