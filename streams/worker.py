"""The stream worker: its faust app built from settings at start-up, with every agent registered on it."""

from __future__ import annotations

from functools import partial

import faust

from aromatrack.deploy.settings import Settings
from aromatrack.streams import clinical, health, ingest, workouts
from aromatrack.streams.app import Streams, faust_app


def create_app(settings: Settings) -> faust.App:
    """The worker's faust app: the shared topics, then each module's tables, agents, timers and routes."""
    streams = Streams(settings, faust_app(settings))
    consumer = ingest.register(streams)
    workout_agents = workouts.register(streams)
    clinical.register(streams, on_summaries=partial(workouts.count_summaries, workout_agents))
    health.register(streams.app, consumer)

    @streams.app.task
    async def open_influx_writer() -> None:
        streams.influx()  # its clients' TLS set-up (~0.1 s of CPU) at start, not in the first batch's way

    return streams.app
