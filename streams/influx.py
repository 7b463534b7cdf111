"""InfluxDB storage adapter over the v1 HTTP API (line protocol `/write`, InfluxQL `/query`).

The v1 API is served by InfluxDB 1.x, by 2.x's compatibility endpoints and by 3.x, and Grafana's
InfluxQL datasource reads all of them, so it is the one storage protocol the service speaks.
A point's identity is measurement + tags + timestamp: rewriting it overwrites, so replays never
double-count.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
from dataclasses import dataclass, field
from functools import lru_cache
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Iterable, Mapping

import httpx

from aromatrack.schemas.series import NOT_IN_A_TAG, Audience, Point, by_database, database_name

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# Line protocol's escapes: tag keys and values and field keys; measurements; string field values. Names and tag
# values repeat from point to point (a bulk send writes ~50,000 lines of a few dozen), so their escaped forms are
# kept: a line took ~7 us to encode, and a send's lines were ~7% of a worker's CPU.
_NAME_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ "})
_STRING_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n"})
_UNWRITABLE_IN_A_NAME = re.compile(f"[{NOT_IN_A_TAG}]")
ESCAPED_NAMES_KEPT = 4096
# A line's measurement and tags are escaped and joined once per series (an athlete's weigh-ins, one lab analyte):
# thousands of athletes' series, a few MB.
SERIES_KEYS_KEPT = 16384


@lru_cache(maxsize=ESCAPED_NAMES_KEPT)
def _escape_name(text: str) -> str:
    """A tag key or value or a field key, escaped (PointsRefused for text line protocol cannot carry)."""
    if _UNWRITABLE_IN_A_NAME.search(text) is not None:
        raise PointsRefused("a tag or a field name holds a control character or a backslash, which line protocol "
                            "cannot carry")
    return text.translate(_NAME_ESCAPES)


@lru_cache(maxsize=ESCAPED_NAMES_KEPT)
def _escape_measurement(text: str) -> str:
    if _UNWRITABLE_IN_A_NAME.search(text) is not None:
        raise PointsRefused("a measurement name holds a control character or a backslash")
    return text.translate(_MEASUREMENT_ESCAPES)


def _field_value(value: float | int | str | bool) -> str:
    if type(value) is float:  # most fields
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        # Integers are written as floats so a field never changes type between writers.
        return repr(float(value))
    # A line break has no escape in a string field either: it is stored as a backslash and an "n".
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def time_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, computed exactly (float seconds would lose the microseconds)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


@lru_cache(maxsize=SERIES_KEYS_KEPT)
def _series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """A line's measurement and tags, escaped, the tags sorted and the empty ones left out."""
    head = _escape_measurement(measurement)
    for key, value in sorted(tags):
        if value != "":
            head += f",{_escape_name(key)}={_escape_name(value)}"
    return head


@lru_cache(maxsize=ESCAPED_NAMES_KEPT)
def _field_keys(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Each field's name and its escaped `name=`, sorted by name."""
    return tuple((name, f"{_escape_name(name)}=") for name in sorted(names))


def to_line(point: Point) -> str:
    """Encode one point as InfluxDB line protocol (nanosecond precision, tags sorted, empty tags left out).
    PointsRefused when a tag or a name holds text line protocol cannot carry."""
    fields = point.fields
    values = ",".join([
        key + (repr(value) if type(value := fields[name]) is float else _field_value(value))
        for name, key in _field_keys(tuple(fields))
    ])
    return f"{_series_key(point.measurement, tuple(point.tags.items()))} {values} {time_ns(point.time)}"


class InfluxError(RuntimeError):
    """InfluxDB refused a request; the message carries the server's reason."""


class PointsRefused(InfluxError):
    """Points that cannot be stored as given, so writing them again cannot succeed: InfluxDB answered 400 (a line
    it cannot parse, a field of another type than the one stored, a time outside the retention policy), or a
    point holds text line protocol cannot carry. The message never quotes the points (they may be health data).
    `dropped`: how many points InfluxDB left out of a partial write, having stored every other one (None when it
    did not say so)."""

    def __init__(self, message: str, dropped: int | None = None) -> None:
        super().__init__(message)
        self.dropped = dropped


def _refusal_reason(text: str) -> str:
    """InfluxDB's reason for a 400, without the lines it quotes (between single quotes: values, names)."""
    try:
        reason = str(json.loads(text)["error"])
    except (ValueError, TypeError, KeyError):
        reason = text
    return reason.split("'", 1)[0].rstrip(" :") or "no reason given"


def _dropped_by_partial_write(text: str) -> int | None:
    """How many points a 400 says InfluxDB left out of a partial write (it stored the others), or None."""
    found = re.search(r"dropped=(\d+)", text)
    return int(found.group(1)) if "partial write" in text and found else None


@dataclass(frozen=True)
class InfluxUser:
    """An InfluxDB login; the password never appears in a repr or a log line."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class InfluxConfig:
    """One database as one user (None: a server without authentication)."""

    url: str
    database: str
    user: InfluxUser | None = None


# Called before each attempt of a request (a write's retries included); raises to stop the request.
BeforeAttempt = Callable[[], Awaitable[None]]


def tls_for(url: str) -> ssl.SSLContext | bool:
    """What a client of `url` verifies the server with: the default certificate authorities for https, loaded
    once and shared by a store's clients (loading them took ~34 ms a client, 70-100 ms of a worker's start);
    nothing for plain http, where no handshake ever happens."""
    return httpx.create_ssl_context() if url.startswith("https:") else False


def bounded_flight_transport(unacknowledged_limit_s: float, verify: ssl.SSLContext | bool = True) -> httpx.AsyncHTTPTransport:
    """Connections whose sent bytes reach the server within `unacknowledged_limit_s` or never: data the server has
    not acknowledged by then (link down, host gone) is dropped with the connection by the kernel (Linux's
    TCP_USER_TIMEOUT), so a request that timed out here, or was abandoned when the process stopped, cannot be
    delivered later when the link comes back."""
    return httpx.AsyncHTTPTransport(
        verify=verify,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, max(1, int(unacknowledged_limit_s * 1000)))])


class InfluxClient:
    """Async v1 client. Writes retry with backoff on connection errors and 5xx, never on 4xx.

    With `unacknowledged_limit_s`, every request's bytes reach the server within that time of being sent or
    never (`bounded_flight_transport`), and a connection is given as long to open."""

    def __init__(self, config: InfluxConfig, *, max_attempts: int | None = None, timeout_s: float = 10.0,
                 unacknowledged_limit_s: float | None = None, verify: ssl.SSLContext | bool | None = None):
        self.config = config
        self.max_attempts = max_attempts
        auth = (config.user.username, config.user.password) if config.user else None
        verify = tls_for(config.url) if verify is None else verify
        if unacknowledged_limit_s is None:
            self._http = httpx.AsyncClient(base_url=config.url, timeout=timeout_s, auth=auth, verify=verify)
        else:
            self._http = httpx.AsyncClient(
                base_url=config.url, auth=auth, transport=bounded_flight_transport(unacknowledged_limit_s, verify),
                timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, unacknowledged_limit_s)))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "InfluxClient":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ping(self) -> bool:
        try:
            response = await self._http.get("/ping")
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    async def write(self, points: Iterable[Point], before_attempt: BeforeAttempt | None = None) -> int:
        """Write points in one request; returns how many. Retries until written (or max_attempts), awaiting
        `before_attempt` before each attempt."""
        lines = [to_line(p) for p in points]
        if not lines:
            return 0
        body = "\n".join(lines).encode()
        params = {"db": self.config.database, "precision": "ns"}
        attempt = 0
        delay = 0.1
        while True:
            attempt += 1
            if before_attempt is not None:
                await before_attempt()
            try:
                response = await self._http.post("/write", params=params, content=body)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 204:
                    return len(lines)
                if response.status_code == 400:
                    raise PointsRefused(f"write refused (400): {_refusal_reason(response.text)}",
                                        _dropped_by_partial_write(response.text))
                if 400 <= response.status_code < 500:
                    raise InfluxError(f"write refused ({response.status_code}): {response.text.strip()}")
                reason = f"HTTP {response.status_code}"
            if self.max_attempts is not None and attempt >= self.max_attempts:
                raise InfluxError(f"write failed after {attempt} attempts: {reason}")
            log.warning("influx write failed (%s); retrying in %.1fs", reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def query(self, influxql: str, *, method: str = "GET", epoch: str | None = None) -> list[dict[str, Any]]:
        """Run InfluxQL (one statement, or several separated by `;`); returns the `series` of the first statement
        (empty list when none). An error in any statement raises."""
        params = {"db": self.config.database, "q": influxql}
        if epoch:
            params["epoch"] = epoch
        response = await self._http.request(method, "/query", params=params)
        payload = response.json()
        if response.status_code != 200 or "error" in payload:
            raise InfluxError(f"query failed ({response.status_code}): {payload.get('error', payload)}")
        results = payload.get("results", [{}])
        for result in results:
            if "error" in result:
                raise InfluxError(f"query failed: {result['error']}")
        return results[0].get("series", []) if results else []


async def write_storable(write: Callable[[list[Point]], Awaitable[int]], points: list[Point]) -> int:
    """Write the points InfluxDB will store and leave out those it refuses (PointsRefused: a time outside the
    database's retention policy, a field stored with another type). When the server says it stored the others (a
    partial write, as InfluxDB 1.x answers), that is all; otherwise the request is split in halves until each
    refused point stands alone (about two requests per refused point), and halves already stored are written
    again, which overwrites them with themselves. Returns how many points were left out."""
    if not points:
        return 0
    try:
        await write(points)
        return 0
    except PointsRefused as refused:
        if refused.dropped is not None:
            return refused.dropped
        if len(points) == 1:
            return 1
    middle = len(points) // 2
    return await write_storable(write, points[:middle]) + await write_storable(write, points[middle:])


class SeriesStore:
    """The service's InfluxDB: one database per audience, each reached with that audience's user.

    `write` sends every point to the database schemas.series routes it to; a process holds clients only
    for the audiences its users may reach (the worker writes both, a coaching reader reads one).
    """

    def __init__(self, url: str, base_database: str, users: Mapping[Audience, InfluxUser | None], *,
                 max_attempts: int | None = None, unacknowledged_limit_s: float | None = None):
        self.base_database = base_database
        verify = tls_for(url)
        self._clients = {
            audience: InfluxClient(InfluxConfig(url, database_name(base_database, audience), user),
                                   max_attempts=max_attempts, unacknowledged_limit_s=unacknowledged_limit_s,
                                   verify=verify)
            for audience, user in users.items()
        }

    def client(self, audience: Audience) -> InfluxClient:
        try:
            return self._clients[audience]
        except KeyError:
            raise InfluxError(f"no credentials for the {audience.value} database in this process") from None

    async def write(self, points: Iterable[Point], before_attempt: BeforeAttempt | None = None) -> int:
        written = 0
        for audience, routed in by_database(points).items():
            written += await self.client(audience).write(routed, before_attempt)
        return written

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    async def __aenter__(self) -> "SeriesStore":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flatten InfluxQL series into dicts of column -> value (tags included)."""
    out = []
    for item in series:
        tags = item.get("tags", {})
        for values in item.get("values", []):
            row = dict(zip(item["columns"], values))
            row.update(tags)
            out.append(row)
    return out
