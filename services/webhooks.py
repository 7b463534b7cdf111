"""Webhook signing by the Standard Webhooks scheme (https://www.standardwebhooks.com), pure functions.

Clinics verify with any off-the-shelf Standard Webhooks library in their own language: headers `webhook-id`,
`webhook-timestamp` (unix seconds) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 over
"<id>.<timestamp>.<body>"), keyed by a `whsec_` + base64 secret. Also the rule for where alerts may be sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, field
from typing import Mapping
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
TOLERANCE_S = 300  # how old a signature may be (the standard's five minutes)
CLOCK_SKEW_S = 30  # how far ahead of the receiver's clock the sender's may run


class WebhookSecretError(ValueError):
    """A webhook secret that is not `whsec_` + base64 of at least MIN_SECRET_BYTES bytes."""


def new_webhook_secret() -> str:
    """A fresh secret in the standard's form, `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_key(secret: str | None) -> bytes:
    """The HMAC key a `whsec_` secret stands for; WebhookSecretError names what is wrong with it."""
    if not secret:
        raise WebhookSecretError("a webhook needs a secret, or anyone could forge its alerts")
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise WebhookSecretError(f"a webhook secret starts with {SECRET_PREFIX} (make one: aromatrack users "
                                 "new-webhook-secret)")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise WebhookSecretError(f"a webhook secret is {SECRET_PREFIX} followed by base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise WebhookSecretError(f"a webhook secret holds at least {MIN_SECRET_BYTES} random bytes")
    return key


def sign(secret: str | None, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of "<id>.<timestamp>.<body>"."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(webhook_key(secret), signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str | None, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {ID_HEADER: message_id, TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, message_id, timestamp, body)}


@dataclass
class ReplayGuard:
    """Signatures already accepted, kept for the tolerance window (older ones fail `verify` anyway), so a
    captured request sent again is refused. A sender's retry is signed afresh and passes; drop repeats of the
    same alert round by `webhook-id`."""

    seen: dict[tuple[str, int], float] = field(default_factory=dict)

    def first_time(self, message_id: str, timestamp: int, now: float) -> bool:
        self.seen = {key: at for key, at in self.seen.items() if at >= now - TOLERANCE_S - CLOCK_SKEW_S}
        if (message_id, timestamp) in self.seen:
            return False
        self.seen[(message_id, timestamp)] = now
        return True


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, now: float | None = None,
           replays: ReplayGuard | None = None) -> bool:
    """Do the Standard Webhooks headers sign `body` with `secret`, at most TOLERANCE_S old and not from the
    future, and (with `replays`) not seen before? For receivers: any input gives True or False, never an
    exception; comparison in constant time."""
    now = time.time() if now is None else now
    try:
        message_id, stamp, signatures = (_header(headers, name) for name in (ID_HEADER, TIMESTAMP_HEADER,
                                                                             SIGNATURE_HEADER))
        timestamp = int(stamp) if stamp.isascii() and stamp.isdigit() else None
        if not message_id or timestamp is None or not now - TOLERANCE_S <= timestamp <= now + CLOCK_SKEW_S:
            return False
        expected = sign(secret, message_id, timestamp, body).encode()
    except (TypeError, ValueError, AttributeError):  # missing or non-text headers, a malformed secret
        return False
    if not any(hmac.compare_digest(expected, candidate.encode("utf-8", "replace"))
               for candidate in signatures.split(" ")):
        return False
    return replays is None or replays.first_time(message_id, timestamp, now)


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header by its lower-case name from any mapping (HTTP libraries differ in case handling)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    if not isinstance(value, str):
        raise TypeError(f"{name}: missing")
    return value


def webhook_url_problem(url: str) -> str | None:
    """Why alerts (PHI) may not go to `url`, or None: https only, except to this host (loopback), where no
    network carries them."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "not an http(s) URL"
    if parts.scheme == "https" or is_loopback(host):
        return None
    return "plain http carries alerts in clear; use https (http only to loopback)"


def is_loopback(host: str) -> bool:
    """Is `host` this machine (localhost or a loopback address), where no network carries the traffic?"""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
