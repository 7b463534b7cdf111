"""FIT file -> summary -> points in InfluxDB, against raw decoding, with both decoders, in the same run.

Per file: raw decode with the columnar reader (what `streams.fit` uses for intact files), with
pyfitparsernative (its fallback) and with garmin-fit-sdk (what it used before, now the salvage path), and the
whole step the workout agents run (decode with damage checks, load
core, 10 s sample points, workout/daily/weekly points, one write to the real InfluxDB) once with `decode_fit`
and once with `decode_fit_salvaging` (garmin-fit-sdk with its integrity pass: the decoding of before).
Reports CPU seconds of this process (the machine is shared; InfluxDB's own CPU is not in it) and wall seconds,
per MB, the pipeline/raw ratio (target < 2x) and the speed-up over the garmin-fit-sdk pipeline (target >= 5x).
Needs `make corpus` and an InfluxDB (AROMATRACK_INFLUX_URL; `aromatrack stack up`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from garmin_fit_sdk import Decoder, Stream
from pyfitparsernative import parse_fit_bytes

from aromatrack.deploy import influx_access
from aromatrack.deploy.settings import load_settings
from aromatrack.domain.training_load import LoadHistory
from aromatrack.streams.fit import FitDecodeError, decode_fit, decode_fit_salvaging, summary_events
from aromatrack.streams.fit_columns import read_columns
from aromatrack.streams.influx import SeriesStore
from aromatrack.streams.workouts import load_points, record_workout, sample_points

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "fit"
DATABASE = "bench_fit_pipeline"


class Clock:
    """CPU and wall seconds spent per named step."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.wall: dict[str, float] = defaultdict(float)

    def start(self) -> tuple[float, float]:
        return time.process_time(), time.perf_counter()

    def stop(self, name: str, started: tuple[float, float]) -> None:
        self.cpu[name] += time.process_time() - started[0]
        self.wall[name] += time.perf_counter() - started[1]


async def pipeline(influx: SeriesStore, decode, data: bytes, name: str, histories: dict, which: str) -> int:
    """One file through the agents' step; the points written."""
    decoded = decode(data)
    points = []
    for number, (workout, body) in enumerate(zip(decoded.workouts, summary_events(decoded, "bench"))):
        body["event_id"] = body["workout_id"] = f"{name}-{number}"
        update = record_workout(histories[which], body)
        histories[which] = update.history
        points += sample_points("bench", body["workout_id"], workout.samples) + load_points("bench", [body], update)
    await influx.write(points)
    return len(points)


async def main() -> None:
    paths = sorted(p for p in CORPUS.rglob("*") if p.suffix.lower() == ".fit")
    if not paths:
        raise SystemExit(f"no FIT corpus under {CORPUS}; run `make corpus`")
    settings = replace(load_settings(), influx_database=DATABASE)
    influx_access.provision(settings)
    clock = Clock()
    megabytes = files = points_written = 0
    async with influx_access.writer_store(settings) as influx:
        histories = {"native": LoadHistory(), "sdk": LoadHistory()}
        for path in paths:
            data = path.read_bytes()
            try:
                decode_fit(data)
            except FitDecodeError:
                continue  # the one developer-field sample without timestamps: no workout to write
            started = clock.start()
            read_columns(data)
            clock.stop("raw columnar", started)
            started = clock.start()
            parse_fit_bytes(data)
            clock.stop("raw pyfitparsernative", started)
            started = clock.start()
            Decoder(Stream.from_byte_array(bytearray(data))).read(expand_sub_fields=False, merge_heart_rates=False)
            clock.stop("raw garmin-fit-sdk", started)
            started = clock.start()
            points_written += await pipeline(influx, decode_fit, data, path.stem[:32], histories, "native")
            clock.stop("pipeline decode_fit", started)
            started = clock.start()
            await pipeline(influx, decode_fit_salvaging, data, path.stem[:32], histories, "sdk")
            clock.stop("pipeline garmin-fit-sdk", started)
            files += 1
            megabytes += len(data) / 2**20
    print(f"{files} files, {megabytes:.1f} MB, {points_written} points per pipeline run")
    for name in clock.cpu:
        print(f"{name:28s} CPU {clock.cpu[name]:7.2f} s  {clock.cpu[name] / megabytes:6.3f} s/MB   "
              f"wall {clock.wall[name]:7.2f} s  {clock.wall[name] / megabytes:6.3f} s/MB")
    for measure, figures in (("CPU", clock.cpu), ("wall", clock.wall)):
        print(f"{measure}: pipeline/raw decode {figures['pipeline decode_fit'] / figures['raw columnar']:.2f}x"
              f" (target < 2x); garmin-fit-sdk pipeline / this pipeline "
              f"{figures['pipeline garmin-fit-sdk'] / figures['pipeline decode_fit']:.1f}x (target >= 5x)")


if __name__ == "__main__":
    asyncio.run(main())
