"""Backfill of Garmin Connect exports: the command's own side on one athlete's 5 years, and end to end for many
athletes at once through the broker and the workers.

The command's side (default): listing an export of one athlete (zips inside the zip) and, per file, reading,
hashing, gzip + base64 and validating the `workout.fit` event, against the plain read of the same bytes, in one
run: files/s and MB/s of CPU time. The export is built the way Garmin builds it (tests/unit/garmin_export.py):
`--files` corpus recordings (the demo's indoor rides and treadmill runs) re-stamped onto one athlete's 5 years,
split into UploadedFiles parts of 500 files.

End to end (`--athletes N ...`): N such exports (`--files` shared among them, every athlete's own 5 years) on a fresh throwaway
stack (Apache Kafka, InfluxDB; loopback ports 39531/38531) with `--workers` real worker processes; the clock
runs from `aromatrack backfill --manifest` starting until the workers have consumed the FIT and summary topics
and InfluxDB holds one `workout` point per file: files/s and MB/s end to end, the command's own time and CPU,
the workers' CPU and peak memory (VmHWM). The pure core in the same run: the same files decoded and summarised
in this process (what `aromatrack evaluate` does per upload), CPU time.
Usage: python benchmarks/bench_fit_backfill.py [--files 2000]
       python benchmarks/bench_fit_backfill.py --athletes 20 1 --files 2000 --workers 2   (needs `make corpus`)
       (end to end: 2,000 files as 20 athletes' 100, then as one athlete's 2,000, each on a fresh stack)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aromatrack.deploy import influx_access, local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import topics
from aromatrack.schemas.events import WorkoutFit
from aromatrack.schemas.series import WORKOUT
from aromatrack.services.cohort import FIT_RECORDINGS
from aromatrack.services.fit_sources import FitSources
from aromatrack.streams.admin import LagProbe
from aromatrack.streams.fit import decode_fit, encode_fit, upload_summaries
from aromatrack.streams.fit_restamp import restamper
from aromatrack.streams.influx import rows
from bench_workers import cpu_seconds
from harness import memory_mb, running_worker, stop_on_sigterm

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus" / "fit"
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from garmin_export import garmin_export  # noqa: E402 - a test helper, found through the path above


def five_years(count: int, seed: int = 5) -> dict[str, bytes]:
    """`count` recordings re-stamped onto distinct random minutes of 2021-2025 (seeded), named as Garmin names
    uploads. Distinct: two workouts of one athlete starting at the same second with the same sport and modality
    are one point in InfluxDB's `workout` series (its tags), and the end-to-end run counts those points."""
    rng = random.Random(seed)
    recordings = [restamper((CORPUS / name).read_bytes()) for names in FIT_RECORDINGS.values() for name in names]
    begin = datetime(2021, 1, 1, 6, tzinfo=timezone.utc)
    return {
        f"{10_000_000 + number}_ACTIVITY.fit": rng.choice(recordings)(begin + timedelta(minutes=minute))
        for number, minute in enumerate(rng.sample(range(5 * 365 * 24 * 60), count))
    }


def command_side(count: int) -> None:
    files = five_years(count)
    with tempfile.TemporaryDirectory() as scratch:
        archive = garmin_export(Path(scratch) / "export.zip", files, per_part=500)
        megabytes = sum(map(len, files.values())) / 2**20
        print(f"export: {len(files)} FIT files, {megabytes:.1f} MB of FIT, archive {archive.stat().st_size / 2**20:.1f} MB")
        del files
        started = time.process_time()
        with FitSources(archive) as sources:
            listed = time.process_time() - started
            started = time.process_time()
            plain = sum(len(source.read()) for source in sources)
            read_s = time.process_time() - started
            started = time.process_time()
            for source in sources:
                data = source.read()
                digest = hashlib.sha256(data).hexdigest()
                WorkoutFit(athlete_id="bench", time=datetime.now(timezone.utc), fit_b64=encode_fit(data),
                           filename=source.name.rsplit("!", 1)[-1], event_id=digest[:32]).model_dump_json()
            prepared_s = time.process_time() - started
            count = len(sources.files)
    assert plain == round(megabytes * 2**20)
    print(f"listing the archive (inner zips extracted): {listed:6.2f} s CPU")
    print(f"read only           : {read_s:6.2f} s CPU  {count / read_s:7.0f} files/s  {megabytes / read_s:6.1f} MB/s")
    print(f"read + hash + gzip + base64 + event: {prepared_s:6.2f} s CPU  {count / prepared_s:7.0f} files/s  "
          f"{megabytes / prepared_s:6.1f} MB/s  ({prepared_s / read_s:.1f}x the plain read)")


async def wait_until_stored(settings: Settings, database: str, run: str, expected: int) -> None:
    """Until the workers have consumed the FIT and summary topics and every workout point is in InfluxDB."""
    fit_topics = (topics.topic_for("workout.fit"), topics.topic_for("workout.summary"))
    readers = influx_access.reader_store(replace(settings, influx_database=database), [WORKOUT.audience])
    async with LagProbe(settings.kafka_bootstrap) as probe, readers as influx:
        while True:
            if await probe.lag(settings.app_id, fit_topics) == 0:
                stored = rows(await influx.client(WORKOUT.audience).query(
                    f"SELECT count(load) FROM workout WHERE athlete_id =~ /^{run}-/"))
                if stored and stored[0]["count"] >= expected:
                    return
            await asyncio.sleep(0.5)


def end_to_end(athletes: int, count: int, workers: int) -> float:
    """One end-to-end run; its files/s."""
    run = uuid.uuid4().hex[:6]
    histories = {f"{run}-{number:03d}": five_years(count, seed=number) for number in range(athletes)}
    files = [data for history in histories.values() for data in history.values()]
    megabytes = sum(map(len, files)) / 2**20
    print(f"{athletes} athletes x {count} files: {len(files)} FIT files, {megabytes:.1f} MB; {workers} worker(s); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    started = time.process_time()
    for data in files:
        decoded = decode_fit(data)
        upload_summaries(decoded, "bench", data)
    core_s = time.process_time() - started
    print(f"pure core (decode + summary in-process, as evaluate): {core_s:.1f} s CPU, "
          f"{len(files) / core_s:.0f} files/s, {megabytes / core_s:.1f} MB/s", flush=True)
    del files
    with local_stack.throwaway_stack(39531, 38531) as settings, tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "athletes.csv"
        manifest.write_text("".join(
            f"{athlete},{garmin_export(Path(scratch) / f'{athlete}.zip', history, per_part=500).name}\n"
            for athlete, history in histories.items()))
        del histories
        database = f"bench_{run}"
        with contextlib.ExitStack() as stack:
            processes = [stack.enter_context(running_worker(
                settings, AROMATRACK_INFLUX_DB=database, AROMATRACK_WORKER_DIR=str(settings.state_dir / f"worker-{i}")))
                for i in range(workers)]
            cpu_before = sum(cpu_seconds(process.pid) for process in processes)
            began = time.monotonic()
            command = subprocess.Popen(
                [sys.executable, "-m", "aromatrack.services.cli", "backfill", "--manifest", str(manifest)],
                env={**os.environ, **settings.as_env()}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            output = command.stdout.read().decode()
            _, status, usage = os.wait4(command.pid, 0)
            sent_s = time.monotonic() - began
            if status != 0:
                raise SystemExit(f"backfill failed: {output}")
            asyncio.run(wait_until_stored(settings, database, run, athletes * count))
            took = time.monotonic() - began
            worker_cpu = sum(cpu_seconds(process.pid) for process in processes) - cpu_before
            peaks = [memory_mb(process.pid, "VmHWM") for process in processes]
    print(f"backfill command: {sent_s:.1f} s wall, {usage.ru_utime + usage.ru_stime:.1f} s CPU "
          f"({next(line for line in output.splitlines() if 'MB of FIT' in line)})")
    print(f"end to end: {took:.1f} s, {athletes * count / took:.1f} files/s, {megabytes / took:.2f} MB/s; workers' CPU "
          f"{worker_cpu:.1f} s ({worker_cpu / core_s:.1f}x the pure core's {core_s:.1f} s), peak RSS per worker "
          f"{', '.join(f'{peak:.0f}' for peak in peaks)} MB; load average {os.getloadavg()[0]:.1f}", flush=True)
    return athletes * count / took


def main() -> None:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="FIT files in all (the command's side: of one athlete)")
    parser.add_argument("--athletes", type=int, nargs="*", default=[],
                        help="end to end, once per count given, the files shared among that many athletes")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rates = {athletes: end_to_end(athletes, args.files // athletes, args.workers) for athletes in args.athletes}
    if len(rates) > 1:
        first = next(iter(rates))
        print(", ".join(f"{athletes} athletes: {rate / rates[first]:.2f}x" for athletes, rate in rates.items())
              + f" the files/s of {first}")
    if not args.athletes:
        command_side(args.files)


if __name__ == "__main__":
    main()
