"""The stream worker: its faust app built from settings at start-up, with every agent registered on it."""

from __future__ import annotations

import gc
from functools import partial

import faust

from aromatrack.deploy.settings import Settings
from aromatrack.streams import clinical, health, ingest, workouts
from aromatrack.streams.app import Streams, faust_app

# The collector's thresholds once the worker runs (Python's default: 700, 10, 10). A bulk import allocates millions
# of short-lived objects that reference counting frees; at the default a young collection ran every 700 of them and
# a full one (every object alive walked) three times a send. Measured on a one-worker bulk send of the demo cohort:
# 0.18 s of collections at the default against 0.04-0.05 s at these (BENCHMARKS.md). The young generation holds at
# most this many objects before a collection, a few MB.
GC_THRESHOLDS = (50_000, 20, 100)


def create_app(settings: Settings) -> faust.App:
    """The worker's faust app: the shared topics, then each module's tables, agents, timers and routes."""
    streams = Streams(settings, faust_app(settings))
    consumer = ingest.register(streams)
    workout_agents = workouts.register(streams)
    clinical_ctx = clinical.register(streams, on_summaries=partial(workouts.count_summaries, workout_agents))
    health.register(streams.app, consumer, held_athletes=lambda: len(clinical_ctx.held))

    @streams.app.task
    async def open_influx_writer() -> None:
        streams.influx()  # its clients built at start, not in the first batch's way

    @streams.app.task
    async def set_start_up_objects_aside() -> None:
        # What start-up built (modules, the app, its agents) lives as long as the worker: full garbage collections
        # stop walking it (~0.1 s of a bulk import's 0.35-0.45 s in collections: BENCHMARKS.md).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    return streams.app
