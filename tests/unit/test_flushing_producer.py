"""The worker's producer flush: every table write in faust's buffer is sent before a commit goes ahead."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.transport.producer import ProducerBuffer

from aromatrack.streams.flushing_producer import flush_completely


class HeldChannel:
    """Where faust's buffer sends a write: the first send is held until `release` (a broker slow to take it, a
    busy event loop), the others go at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sent: list[int] = []

    async def publish_message(self, fut, wait: bool = False) -> None:
        if not self.sent:
            await self.release.wait()
        self.sent.append(fut.number)


async def buffer_with(writes: int, channel: HeldChannel) -> ProducerBuffer:
    buffer = ProducerBuffer()
    buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
    await buffer.start()
    for number in range(writes):
        buffer.put(SimpleNamespace(number=number, message=SimpleNamespace(channel=channel)))
    return buffer


async def test_fausts_own_flush_gives_up_with_writes_unsent_and_the_complete_one_sends_them_all():
    channel = HeldChannel()
    buffer = await buffer_with(5, channel)
    try:
        await buffer.flush()  # faust's: 0.1 s without a write sent, and it returns
        assert buffer.size == 4 and channel.sent == []  # a commit after it would carry none of them

        asyncio.get_running_loop().call_later(0.35, channel.release.set)
        await flush_completely(buffer)
        assert buffer.size == 0
        await asyncio.sleep(0)  # the buffer's task notes the last write sent
        assert channel.sent == [0, 1, 2, 3, 4]
    finally:
        channel.release.set()
        await buffer.stop()


async def test_a_complete_flush_refuses_a_stopped_buffer_rather_than_wait_forever():
    channel = HeldChannel()
    buffer = await buffer_with(0, channel)
    await buffer.stop()
    for number in range(3):  # writes made after its task stopped
        buffer.put(SimpleNamespace(number=number, message=SimpleNamespace(channel=channel)))
    with pytest.raises(RuntimeError, match="3 table writes"):
        await asyncio.wait_for(flush_completely(buffer), timeout=1)


async def test_a_complete_flush_of_an_empty_buffer_returns_at_once():
    channel = HeldChannel()
    buffer = await buffer_with(0, channel)
    try:
        await asyncio.wait_for(flush_completely(buffer), timeout=0.05)
    finally:
        await buffer.stop()
