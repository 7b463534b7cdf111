"""The worker's health routes on faust's web server (`aromatrack worker --web-port`), for probes and operators.

- `GET /livez`: 200 while the worker's event loop answers and no service has crashed; 503 after a crash. A hung
  loop does not answer at all, which a probe's timeout catches too.
- `GET /readyz`: 200 when the worker does its share: it holds partitions in the app's consumer group, no
  rebalance is under way, its tables are recovered from their changelogs, the batch ingest consumer (its own
  group) holds partitions too, the app's group has accepted one of its heartbeats within the session timeout (its
  session lease, streams/fencing.py: the partitions it lists are still its own), and it is not stopping.
  Otherwise 503. A worker cut off from the broker and reconnected still lists the partitions it held and its ingest
  consumer can rejoin at once, moments before it finds itself fenced; a worker that crashed can rejoin its group
  for a moment on its way out. Neither is ready. A worker beyond the partition count holds nothing and
  stays unready, which is why the Helm chart caps the replicas at the partition count.
  The answer also counts the athletes whose alerts this worker holds (`held_athletes`: a stored history it cannot
  read or fold, or events it cannot place; streams/clinical.py), which does not make it unready: it does its share
  for every other athlete, and the log names each held one by a digest. Above zero, an operator has a history to
  look at.

Both answer counts and flags only, never a key or a value of a table (faust's table and router views, which
would, are switched off in streams/app.py). `register` adds the routes to a worker's app.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import faust
from faust.web import Request, Response, View

from aromatrack.streams.ingest import IngestConsumer


@dataclass(frozen=True)
class Readiness:
    agent_partitions: int
    ingest_partitions: int
    rebalancing: bool
    recovering: bool
    stopping: bool
    session_current: bool
    held_athletes: int  # not part of `ready`: see the module's docstring

    @property
    def ready(self) -> bool:
        return (self.agent_partitions > 0 and self.ingest_partitions > 0 and not self.rebalancing
                and not self.recovering and not self.stopping and self.session_current)


def readiness(app: faust.App, ingest: IngestConsumer, held_athletes: Callable[[], int]) -> Readiness:
    recovery = app.tables.recovery
    return Readiness(
        agent_partitions=len(app.assignor.assigned_actives()),
        ingest_partitions=len(ingest.assignment()),
        rebalancing=bool(app.rebalancing),
        recovering=bool(recovery.in_recovery or not recovery.completed.is_set()),
        stopping=app.crash_reason is not None or app.should_stop,
        session_current=app.session_lease.covers(time.monotonic()),
        held_athletes=held_athletes(),
    )


def register(app: faust.App, ingest: IngestConsumer, held_athletes: Callable[[], int]) -> None:
    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            state = readiness(app, ingest, held_athletes)
            return self.json({"ready": state.ready, **asdict(state)}, status=200 if state.ready else 503)

    @app.page("/livez")
    class LiveView(View):
        async def get(self, request: Request) -> Response:
            crashed = app.crash_reason is not None  # a crash in any of its services reaches the app (mode's beacon)
            return self.json({"alive": not crashed}, status=503 if crashed else 200)
