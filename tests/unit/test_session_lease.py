"""Fencing InfluxDB writes (streams/fencing.py): the session lease a worker's writes check, and connections whose
bytes reach the server soon or never (streams/influx.py)."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import httpx
import pytest

from aromatrack.schemas import series
from aromatrack.streams import fencing
from aromatrack.streams.fencing import OwnershipLost, SessionLease
from aromatrack.streams.influx import InfluxClient, InfluxConfig, InfluxError, bounded_flight_transport


def test_a_lease_with_no_accepted_heartbeat_covers_nothing_and_has_not_run_out():
    lease = SessionLease(session_timeout_s=6.0)
    assert lease.expires_s() is None
    assert not lease.covers(0.0)
    assert not lease.has_run_out(10**9)


def test_the_lease_lasts_a_session_timeout_from_the_send_of_the_last_accepted_heartbeat():
    lease = SessionLease(session_timeout_s=6.0)
    lease.on_heartbeat_accepted(100.0)
    assert lease.covers(105.9) and not lease.covers(106.0)
    assert not lease.has_run_out(105.9) and lease.has_run_out(106.0)
    lease.on_heartbeat_accepted(99.0)  # an older heartbeat's answer arriving late does not shorten it
    assert lease.expires_s() == 106.0
    lease.on_heartbeat_accepted(101.5)
    assert lease.expires_s() == 107.5


class _App(SimpleNamespace):
    """What `await_lease` reads of a faust app: the guarantee, the lease, the heartbeat interval, and `crash`."""

    crashed: list

    async def crash(self, error: BaseException) -> None:
        self.crashed.append(error)


def _app(lease: SessionLease, in_transaction: bool = True) -> _App:
    return _App(in_transaction=in_transaction, session_lease=lease, crashed=[],
                conf=SimpleNamespace(broker_heartbeat_interval=0.1, broker_session_timeout=lease.session_timeout_s))


def test_a_write_waits_for_a_heartbeat_that_renews_the_lease_then_starts():
    lease = SessionLease(session_timeout_s=1.0)
    lease.on_heartbeat_accepted(time.monotonic() - 0.8)  # 0.2 s left: not more than a request's flight (0.2 s)
    app = _app(lease)

    async def heartbeat_soon() -> None:
        await asyncio.sleep(0.1)
        lease.on_heartbeat_accepted(time.monotonic())

    async def both() -> float:
        renewal = asyncio.ensure_future(heartbeat_soon())
        began = time.monotonic()
        await fencing.await_lease(app)
        await renewal
        return time.monotonic() - began

    assert 0.08 <= asyncio.run(both()) < 0.5
    assert app.crashed == []


def test_a_write_never_starts_once_the_lease_has_run_out_and_the_worker_stops():
    lease = SessionLease(session_timeout_s=1.0)
    lease.on_heartbeat_accepted(time.monotonic() - 0.95)
    app = _app(lease)
    with pytest.raises(OwnershipLost):
        asyncio.run(fencing.await_lease(app))
    assert len(app.crashed) == 1 and isinstance(app.crashed[0], OwnershipLost)


def test_at_least_once_writes_do_not_wait_for_the_lease():
    app = _app(SessionLease(session_timeout_s=1.0), in_transaction=False)
    asyncio.run(asyncio.wait_for(fencing.await_lease(app), timeout=0.5))


@pytest.fixture
def server_that_never_reads():
    """A TCP server that accepts and never reads, with a small receive buffer: a client's bytes stop being
    acknowledged once the buffer is full, as when a link goes down mid-request."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def test_bytes_left_unacknowledged_past_the_limit_drop_the_connection(server_that_never_reads):
    async def post() -> tuple[type, float]:
        async with httpx.AsyncClient(transport=bounded_flight_transport(0.3), timeout=20.0) as client:
            began = time.monotonic()
            with pytest.raises(httpx.TransportError) as raised:
                await client.post(f"{server_that_never_reads}/write", content=b"x" * (64 << 20))
            return type(raised.value), time.monotonic() - began

    error, took = asyncio.run(post())
    # The kernel dropped it (a read or write error), well before the 20 s timeout would have.
    assert not issubclass(error, httpx.TimeoutException) and took < 5.0


def test_a_write_awaits_its_gate_before_every_attempt(server_that_never_reads):
    point = series.ALERTS.point(datetime.now(timezone.utc), {"athlete_id": "ath-1"}, {"alert_id": "a-1", "summary": "x" * (4 << 20)})
    gates: list[float] = []

    async def gate() -> None:
        gates.append(time.monotonic())

    async def write() -> None:
        client = InfluxClient(InfluxConfig(server_that_never_reads, "db"), max_attempts=2, timeout_s=20.0,
                              unacknowledged_limit_s=0.3)
        async with client:
            await client.write([point] * 8, before_attempt=gate)

    with pytest.raises(InfluxError, match="after 2 attempts"):
        asyncio.run(write())
    assert len(gates) == 2
