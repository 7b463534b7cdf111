"""Replay a long history into the pipeline paced by event time, so its topics cannot drift apart.

Sent all at once, a history's topics are consumed at different speeds (a few labs race months ahead of
thousands of scale readings), and the clinical agent can keep only a bounded tail in event-time order.
Sending one window of event time at a time and waiting until the worker has consumed it keeps the skew
within the window. Used by the demo, the backfill benchmark and tests; live traffic needs none of it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Callable, Sequence

from aromatrack.deploy.settings import Settings
from aromatrack.schemas.events import EventBase
from aromatrack.streams.admin import LagProbe
from aromatrack.streams.producer import EventProducer


# Applies from its time on to what follows (a workout's load uses the athlete's profile in effect): sent and
# consumed before the rest of its window, so that the window's workouts see it, as live ones would.
SENT_FIRST_IN_WINDOW = frozenset({"athlete.profile"})


async def wait_until_consumed(probe: LagProbe, app_id: str, every_s: float = 0.1) -> None:
    """Until the worker has committed everything on the topics it consumes (both of its consumer groups)."""
    while await probe.worker_lag(app_id) > 0:
        await asyncio.sleep(every_s)


async def replay_paced(
    settings: Settings,
    events: Sequence[EventBase],
    window: timedelta = timedelta(days=7),
    on_sent: Callable[[int], None] = lambda count: None,
) -> None:
    """Send `events` in event-time order, one `window` at a time, waiting for the worker after each."""
    ordered = sorted(events, key=lambda event: event.time)
    async with EventProducer(settings.kafka_bootstrap) as producer, LagProbe(settings.kafka_bootstrap) as probe:
        start = 0
        while start < len(ordered):
            window_end = ordered[start].time + window
            end = next((i for i in range(start, len(ordered)) if ordered[i].time >= window_end), len(ordered))
            first = [event for event in ordered[start:end] if event.type in SENT_FIRST_IN_WINDOW]
            if first:
                await producer.send_all(first)
                await wait_until_consumed(probe, settings.app_id)
            await producer.send_all([event for event in ordered[start:end] if event.type not in SENT_FIRST_IN_WINDOW])
            await wait_until_consumed(probe, settings.app_id)
            on_sent(end - start)
            start = end
