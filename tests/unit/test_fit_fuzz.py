"""Fuzz target for the FIT adapter: damaged uploads give a decoded workout or a FitDecodeError, nothing else.

Hypothesis mutates a small real file from the corpus (byte flips, truncation, inserted garbage) and also
feeds arbitrary bytes; any other exception would stop a worker, so it fails the test.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aromatrack.streams.fit import DecodedFit, FitDecodeError, decode_fit

from .test_fit_decode import corpus_files

SEED_FILE = min((path for path in corpus_files() if path.stat().st_size > 2000), key=lambda p: p.stat().st_size)
SEED = SEED_FILE.read_bytes()


def decodes_or_explains(data: bytes) -> None:
    try:
        result = decode_fit(data)
    except FitDecodeError as exc:
        assert str(exc)
    else:
        assert isinstance(result, DecodedFit)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(0, len(SEED) - 1), st.integers(0, 255)), max_size=8),
    cut=st.integers(0, len(SEED)),
    garbage=st.binary(max_size=64),
    at=st.integers(0, len(SEED)),
)
def test_mutated_real_file(flips, cut, garbage, at):
    data = bytearray(SEED)
    for index, value in flips:
        data[index] = value
    data = data[:at] + garbage + data[at:]
    decodes_or_explains(bytes(data[: cut + len(garbage)]))


def test_a_file_cut_inside_a_14_byte_header_is_explained():
    """Found by the fuzz target: a 14-byte header on a 13-byte file raised struct.error."""
    header = bytes([14, 0x20]) + (100).to_bytes(2, "little") + (50).to_bytes(4, "little") + b".FIT" + b"\x00"
    try:
        decode_fit(header)
    except FitDecodeError as exc:
        assert "truncated inside its 14-byte header" in str(exc)
    else:
        raise AssertionError("a 13-byte file decoded")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes(data):
    decodes_or_explains(data)
