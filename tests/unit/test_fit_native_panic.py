"""Some damaged files make the Rust decoder panic (pyo3's PanicException derives from BaseException, not
Exception); decode_fit must treat that like any other refusal: salvage or FitDecodeError, never a crash."""

from __future__ import annotations

import random
from pathlib import Path

from pyfitparsernative import parse_fit_bytes

from aromatrack.streams.fit import FitDecodeError, decode_fit

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "fit"


def panicking_file() -> bytes | None:
    """A corpus file with a few bytes changed that makes the native decoder panic (seeded, so repeatable)."""
    files = sorted(path for path in CORPUS.rglob("*.fit") if path.stat().st_size < 60_000)[:5]
    assert files, "the FIT corpus is missing: run `make corpus`"
    rng = random.Random(1)
    for _ in range(20_000):
        data = bytearray(rng.choice(files).read_bytes())
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            parse_fit_bytes(bytes(data))
        except Exception:  # noqa: BLE001 - an ordinary refusal; not what this test looks for
            continue
        except BaseException as exc:  # noqa: BLE001 - the panic this test needs
            if type(exc).__name__ == "PanicException":
                return bytes(data)
            raise
    return None


def test_a_native_decoder_panic_is_salvaged_or_a_decode_error() -> None:
    data = panicking_file()
    assert data is not None, "no mutation made the native decoder panic; the test needs a new seed"
    try:
        decode_fit(data)
    except FitDecodeError:
        pass
