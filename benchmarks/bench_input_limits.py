"""What the input limits (issue 15) cost, against the same work without them, in the same run.

- `parse_event` on a Kafka message (the stream worker's path) with the contract's JSON limits (`load_json`:
  bounded integers, no Infinity/NaN, depth, Unicode), against plain `json.loads` + the same validation.
- The FIT bound (`check_fit_bounds`: size and a walk over the record headers) on the corpus's largest file,
  against decoding that file, and on a 1M-record gzip bomb, against what decoding it would cost (extrapolated
  from the decoder's time per message on the real file; the bomb itself is never decoded).
Needs `make corpus`. No servers.
"""

from __future__ import annotations

import json
import statistics
import time
import timeit
from pathlib import Path

from aromatrack.schemas.events import _EVENT_ADAPTER, parse_event
from aromatrack.streams.fit import _count_messages, check_fit_bounds, decode_fit

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "fit"
MESSAGE = (b'{"type":"scale.reading","athlete_id":"ath-1","time":"2026-05-01T08:00:00Z","weight_kg":82.5,'
           b'"body_fat_pct":17.2,"event_id":"abc","device":"withings:x","schema_version":1}')


def unlimited() -> object:
    return _EVENT_ADAPTER.validate_python(json.loads(MESSAGE))


def limited() -> object:
    return parse_event(MESSAGE)


def bomb(records: int) -> bytes:
    import struct

    body = bytes([0x40, 0, 0]) + struct.pack("<HB", 20, 1) + bytes([3, 1, 0x0D]) + b"\x00\x78" * records
    return struct.pack("<BBHI4sH", 14, 0x10, 2132, len(body), b".FIT", 0) + body + b"\0\0"


def main() -> None:
    n, plain, checked = 5000, [], []
    for _ in range(7):  # alternated, so load on the shared machine hits both alike
        plain.append(timeit.timeit(unlimited, number=n) / n * 1e6)
        checked.append(timeit.timeit(limited, number=n) / n * 1e6)
    a, b = statistics.median(plain), statistics.median(checked)
    print(f"parse one Kafka message: {a:.1f} us without the limits, {b:.1f} us with them ({b / a:.2f}x, "
          f"+{b - a:.1f} us)")

    largest = max((p for p in CORPUS.rglob("*") if p.suffix.lower() == ".fit"), key=lambda p: p.stat().st_size)
    data = largest.read_bytes()
    started = time.perf_counter()
    check_fit_bounds(data)
    bound_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded = decode_fit(data)
    decode_s = time.perf_counter() - started
    print(f"{largest.name}: {len(data) / 1e6:.1f} MB, {decoded.messages} messages: bound check "
          f"{bound_s * 1000:.0f} ms, decode {decode_s:.1f} s ({decode_s / bound_s:.0f}x)")

    big = bomb(1_000_000)
    started = time.perf_counter()
    counted = _count_messages(big, stop_after=250_000)
    refuse_s = time.perf_counter() - started
    print(f"1M-record bomb: refused after counting {counted} messages in {refuse_s * 1000:.0f} ms; decoding it "
          f"would take ~{decode_s / decoded.messages * 1_000_000:.0f} s at the decoder's rate on the real file")


if __name__ == "__main__":
    main()
