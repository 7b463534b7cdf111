"""FIT file -> summary -> points in InfluxDB, against raw decoding with the chosen decoder, in the same run.

Per file: raw decode (garmin-fit-sdk `Decoder.read`, as `streams.fit` calls it) and the whole pipeline step the
workout agents run (decode with damage checks, load core, 10 s sample points, workout/daily/weekly points,
one write to the real InfluxDB). Reports per file and per MB, and the pipeline/raw ratio (target < 2x).
Needs `make corpus` and an InfluxDB (AROMATRACK_INFLUX_URL; `aromatrack stack up`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from pathlib import Path

from garmin_fit_sdk import Decoder, Stream

from aromatrack.deploy import influx_access
from aromatrack.deploy.settings import load_settings
from aromatrack.streams.fit import FitDecodeError, decode_fit, summary_event
from aromatrack.streams.workouts import load_points, record_workout, sample_points

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "fit"
DATABASE = "bench_fit_pipeline"


async def main() -> None:
    paths = sorted(p for p in CORPUS.rglob("*") if p.suffix.lower() == ".fit")
    if not paths:
        raise SystemExit(f"no FIT corpus under {CORPUS}; run `make corpus`")
    settings = replace(load_settings(), influx_database=DATABASE)
    influx_access.provision(settings)
    raw_s = pipeline_s = 0.0
    megabytes = files = points_written = 0
    async with influx_access.writer_store(settings) as influx:
        state = {"daily": {}, "sessions": []}
        for path in paths:
            data = path.read_bytes()
            started = time.perf_counter()
            Decoder(Stream.from_byte_array(bytearray(data))).read(expand_sub_fields=False, merge_heart_rates=False)
            raw = time.perf_counter() - started
            started = time.perf_counter()
            try:
                decoded = decode_fit(data)
            except FitDecodeError:
                continue  # the one developer-field sample without timestamps: no workout to write
            body = summary_event(decoded, "bench")
            body["event_id"] = body["workout_id"] = path.stem[:32]
            days, mix = record_workout(state, body)
            points = sample_points("bench", body["workout_id"], decoded.workout) + load_points("bench", body, days, mix)
            await influx.write(points)
            pipeline_s += time.perf_counter() - started
            raw_s += raw
            files += 1
            megabytes += len(data) / 2**20
            points_written += len(points)
    print(f"{files} files, {megabytes:.1f} MB, {points_written} points")
    print(f"raw decode : {raw_s:7.2f} s  {raw_s / files * 1000:7.0f} ms/file  {raw_s / megabytes:6.2f} s/MB")
    print(f"pipeline   : {pipeline_s:7.2f} s  {pipeline_s / files * 1000:7.0f} ms/file  {pipeline_s / megabytes:6.2f} s/MB")
    print(f"ratio pipeline/raw: {pipeline_s / raw_s:.2f}x (target < 2x)")


if __name__ == "__main__":
    asyncio.run(main())
