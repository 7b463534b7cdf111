"""Webhook signatures by Standard Webhooks: what `sign` makes, `verify` and the reference library accept; any
change to body, id, time or secret is refused; odd input never raises; replays and future times are refused."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import httpx
import pytest
import standardwebhooks
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.schemas.events import Alert
from aromatrack.services.notifier import DeliveryError, Message, Retry, post_webhook
from aromatrack.services.store import Contact, Store, StoreError
from aromatrack.services.auth import Role
from aromatrack.services.webhooks import (
    CLOCK_SKEW_S, TOLERANCE_S, ReplayGuard, new_webhook_secret, signed_headers, verify, webhook_url_problem,
)
from tests.unit.test_api_access import alert_for

T = 1_777_000_000
SECRET = new_webhook_secret()


@given(body=st.binary(max_size=512), message_id=st.text(min_size=1, max_size=40))
def test_a_signed_body_verifies_and_a_tampered_one_does_not(body: bytes, message_id: str) -> None:
    headers = signed_headers(SECRET, message_id, T, body)
    assert verify(SECRET, body, headers, now=T + 10)
    assert not verify(SECRET, body + b"x", headers, now=T)
    assert not verify(new_webhook_secret(), body, headers, now=T)
    assert not verify(SECRET, body, {**headers, "webhook-id": message_id + "x"}, now=T)
    assert not verify(SECRET, body, {**headers, "webhook-timestamp": str(T + 1)}, now=T)


def test_the_reference_library_verifies_our_signature_and_we_verify_its() -> None:
    body = json.dumps({"alert": {"alert_id": "a-1"}, "round": 2}).encode()
    now = int(datetime.now(timezone.utc).timestamp())
    headers = signed_headers(SECRET, "msg_a-1_2", now, body)
    assert standardwebhooks.Webhook(SECRET).verify(body, headers) == json.loads(body)
    theirs = standardwebhooks.Webhook(SECRET).sign("msg_x", datetime.fromtimestamp(now, timezone.utc), body.decode())
    assert verify(SECRET, body, {"webhook-id": "msg_x", "webhook-timestamp": str(now), "webhook-signature": theirs})


def test_old_and_future_signatures_and_replays_are_refused() -> None:
    headers = signed_headers(SECRET, "msg_1", T, b"{}")
    assert not verify(SECRET, b"{}", headers, now=T + TOLERANCE_S + 1)
    assert not verify(SECRET, b"{}", headers, now=T - CLOCK_SKEW_S - 1)  # signed in the receiver's future
    guard = ReplayGuard()
    assert verify(SECRET, b"{}", headers, now=T + 1, replays=guard)
    assert not verify(SECRET, b"{}", headers, now=T + 2, replays=guard)  # the same request again
    retry = signed_headers(SECRET, "msg_1", T + 60, b"{}")  # the sender's retry is signed afresh
    assert verify(SECRET, b"{}", retry, now=T + 61, replays=guard)


def test_header_names_are_case_insensitive() -> None:
    headers = {name.title(): value for name, value in signed_headers(SECRET, "m", T, b"{}").items()}
    assert verify(SECRET, b"{}", headers, now=T)


@given(headers=st.dictionaries(st.sampled_from(["webhook-id", "webhook-timestamp", "webhook-signature", "x"]),
                               st.text() | st.none() | st.integers() | st.binary()),
       secret=st.text() | st.none(), body=st.binary() | st.text() | st.none())
def test_verify_never_raises_on_odd_input(headers, secret, body) -> None:
    assert verify(secret, body, headers, now=T) in (True, False)


@pytest.mark.parametrize("signature", ["v1,é", "v1,\ud800", "v1", "", "v1,AAAA v2,x", " "])
def test_non_ascii_or_malformed_signatures_are_false_not_errors(signature: str) -> None:
    headers = {**signed_headers(SECRET, "m", T, b"{}"), "webhook-signature": signature}
    assert verify(SECRET, b"{}", headers, now=T) is False


@pytest.mark.parametrize(("url", "ok"), [
    ("https://clinic.example/hooks", True), ("http://127.0.0.1:8080/x", True), ("http://localhost/x", True),
    ("http://[::1]/x", True), ("http://clinic.example/hooks", False), ("http://10.0.0.5/x", False),
    ("ftp://clinic.example/", False), ("https://", False), ("http://127.0.0.1.evil.example/", False),
])
def test_webhooks_go_over_https_or_stay_on_this_host(url: str, ok: bool) -> None:
    assert (webhook_url_problem(url) is None) is ok


def test_a_webhook_without_a_valid_secret_or_over_plain_http_is_refused_at_registration(tmp_path) -> None:
    store = Store(tmp_path / "api.sqlite3")
    for secret in (None, "", "hunter2", "whsec_c2hvcnQ=", "whsec_not base64!"):
        with pytest.raises(StoreError, match="secret"):
            store.add_user("dr-1", Role.CLINICIAN, webhook_url="https://clinic.example/h", webhook_secret=secret)
    with pytest.raises(StoreError, match="https"):
        store.add_user("dr-1", Role.CLINICIAN, webhook_url="http://clinic.example/h", webhook_secret=SECRET)


def test_re_adding_a_user_without_the_secret_keeps_it(tmp_path) -> None:
    store = Store(tmp_path / "api.sqlite3")
    store.add_user("dr-1", Role.CLINICIAN, email="a@clinic.example", webhook_url="https://c.example/h",
                   webhook_secret=SECRET)
    store.add_user("dr-1", Role.CLINICIAN)
    store.add_user("ath-1", Role.ATHLETE)
    store.assign("ath-1", "dr-1")
    assert store.clinicians_of("ath-1") == [Contact("dr-1", "a@clinic.example", "https://c.example/h", SECRET)]


def _post(contact: Contact) -> tuple[list[httpx.Request], Exception | None]:
    sent: list[httpx.Request] = []

    async def run() -> None:
        transport = httpx.MockTransport(lambda request: sent.append(request) or httpx.Response(204))
        async with httpx.AsyncClient(transport=transport) as http:
            await post_webhook(http, contact, Message(alert_for("ath-1"), b"png", 2))

    try:
        asyncio.run(run())
    except DeliveryError as exc:
        return sent, exc
    return sent, None


def test_the_notifier_signs_the_alert_id_and_round_and_never_sends_unsigned_or_in_clear() -> None:
    sent, error = _post(Contact("dr-1", None, "https://clinic.example/h", SECRET))
    [request] = sent
    assert error is None and request.headers["webhook-id"] == "msg_alert-1_2"
    assert standardwebhooks.Webhook(SECRET).verify(request.content, dict(request.headers))["round"] == 2
    for contact in (Contact("dr-1", None, "https://clinic.example/h", None),
                    Contact("dr-1", None, "https://clinic.example/h", "old-plain-secret"),
                    Contact("dr-1", None, "http://clinic.example/h", SECRET)):
        sent, error = _post(contact)
        assert sent == [] and isinstance(error, DeliveryError) and not error.retryable


def test_retry_delays_double_and_cap() -> None:
    assert Retry(attempts=6, first_delay_s=0.5, max_delay_s=3).delays() == [0.5, 1, 2, 3, 3]
