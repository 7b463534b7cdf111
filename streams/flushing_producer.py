"""faust's producer with a flush that sends every table write waiting in its buffer (a repair of faust 0.15.3).

A table's `__setitem__` cannot send, so faust queues the changelog record in its producer's buffer, which a task
of its own hands to the Kafka producer, one write per turn of the event loop. faust's flush waits for that task
write by write and gives up as soon as 0.1 s pass without one being sent, as happens while the event loop runs a
long synchronous step (a release's fold). The commit that called it then commits the offsets of events whose
table writes are still in the buffer: measured, one commit of every one-worker bulk send of the demo cohort went
ahead with 372 writes unsent. A worker that died then lost those writes for good (their events are committed, so
never delivered again): periods of the clinical history, load histories. `flush` here waits until the buffer is
empty, so a commit (at least once) or a transaction's end (exactly once: `fencing.flush_writes`) carries every
write made before it.

faust's limit of 100 waiting writes stays: past it, faust holds its consumer until up to 100 are sent (with a
warning in the log each time). A larger limit was tried: the writes piled up behind the one-per-turn task (1,317
waiting with room for 1,000), commits waited seconds for them, and the alerts of a bulk send came no sooner.
"""

from __future__ import annotations

import asyncio

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer

FLUSH_POLL_S = 0.005


async def flush_completely(buffer: ProducerBuffer) -> None:
    """Until the buffer's task has handed every write to the Kafka producer (faust's flush may stop before). It is
    watched every FLUSH_POLL_S rather than awaited write by write as faust does (a timed wait for each). A buffer
    no task sends from (stopped) is refused, as faust refuses it, rather than waited for forever."""
    while buffer.size:
        if buffer.state != "running":
            raise RuntimeError(f"cannot flush {buffer.size} table writes: the producer's buffer is not running")
        await asyncio.sleep(FLUSH_POLL_S)


class FlushingProducer(faust_aiokafka.Producer):
    async def flush(self) -> None:
        await flush_completely(self.buffer)
        await super().flush()  # the Kafka producer's own batches, until the broker has them
