"""Health routes of the API and the notifier, for Kubernetes probes and operators (the worker's are in
streams/health.py).

`/livez` says the process answers; `/readyz` says it can do its job now. Both are the only routes without a
token: a kubelet probe carries none, and they answer a flag and counts, never anything about an athlete.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from aiohttp import web
from fastapi import FastAPI
from fastapi.responses import JSONResponse


def add_health_routes(app: FastAPI) -> None:
    """`/livez` (the event loop answers) and `/readyz` (the broker producer and InfluxDB client are open: the
    app's startup finished) on the API."""

    @app.get("/livez", include_in_schema=False)
    async def livez() -> JSONResponse:
        return JSONResponse({"alive": True})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ready = app.state.services.sink is not None and app.state.services.influx is not None
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@dataclass
class ConsumerHealth:
    """What the notifier's consume loop reports: when it last went round, and how many partitions it holds.

    Live while a round finished within `stall_after_s` (a round waits at most 0.5 s for messages, plus the
    deliveries of one fetch, each bounded by its retries); ready once it holds partitions of the alerts topic."""

    stall_after_s: float = 300.0
    partitions: int = 0
    last_round: float = field(default_factory=time.monotonic)

    def went_round(self, partitions: int) -> None:
        self.partitions = partitions
        self.last_round = time.monotonic()

    @property
    def alive(self) -> bool:
        return time.monotonic() - self.last_round < self.stall_after_s

    @property
    def ready(self) -> bool:
        return self.alive and self.partitions > 0


async def serve_consumer_health(health: ConsumerHealth, host: str, port: int) -> web.AppRunner:
    """Serve `/livez` and `/readyz` for `health` on host:port (aiohttp, in the running loop, no signal handlers
    of its own); returns the runner to `cleanup()` at shutdown."""

    async def livez(request: web.Request) -> web.Response:
        return web.json_response({"alive": health.alive}, status=200 if health.alive else 503)

    async def readyz(request: web.Request) -> web.Response:
        return web.json_response({"ready": health.ready, "partitions": health.partitions},
                                 status=200 if health.ready else 503)

    app = web.Application()
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
