"""Webhook signatures: what `sign` makes, `verify` accepts; any change to body, secret or time is refused."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aromatrack.services.notifier import Retry, sign, verify

T = 1_777_000_000


@given(body=st.binary(max_size=512), secret=st.text(min_size=1, max_size=40))
def test_a_signed_body_verifies_and_a_tampered_one_does_not(body: bytes, secret: str) -> None:
    header = sign(secret, body, T)
    assert verify(secret, body, header, now=T + 10)
    assert not verify(secret, body + b"x", header, now=T)
    assert not verify(secret + "x", body, header, now=T)


def test_the_timestamp_is_signed_and_old_signatures_expire() -> None:
    header = sign("s", b"{}", T)
    assert not verify("s", b"{}", header.replace(f"t={T}", f"t={T + 1}"), now=T)
    assert not verify("s", b"{}", header, now=T + 301)
    for garbage in ("", "t=1", "v1=ab", "t=x,v1=ab"):
        assert not verify("s", b"{}", garbage, now=T)


def test_retry_delays_double_and_cap() -> None:
    assert Retry(attempts=6, first_delay_s=0.5, max_delay_s=3).delays() == [0.5, 1, 2, 3, 3]
