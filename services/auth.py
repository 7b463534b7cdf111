"""Who may do what: API tokens (stored only as hashes) and the role policy, as plain functions.

`authenticate` is the one place a presented token becomes a principal (the API's bearer tokens and anything
built on them use it; the web inbox's sessions through `authenticate_hash`): a token is refused when unknown,
revoked, expired, or issued for a role its user no longer has. The policy is a table, not scattered `if`s, so
a test can walk every role x access pair and prove each denial.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

TOKEN_PREFIX = "at_"
DEFAULT_TOKEN_DAYS = 90  # a lost device's token stops working by itself; rotate before then


class Role(StrEnum):
    ATHLETE = "athlete"
    COACH = "coach"
    CLINICIAN = "clinician"


class Access(StrEnum):
    WRITE = "write"  # post the athlete's own events: training, scale, phases, symptoms
    WRITE_CLINICAL = "write_clinical"  # post lab results and dose changes
    TRAINING = "training"  # workouts and daily training load
    BODY = "body"  # scale readings and body-fat trend
    LABS = "labs"
    DOSES = "doses"
    ALERTS = "alerts"
    ACKNOWLEDGE = "acknowledge"


# What each role may do for an athlete it is related to (the athlete themself, or their coach/clinician).
GRANTS: dict[Role, frozenset[Access]] = {
    Role.ATHLETE: frozenset(Access) - {Access.ACKNOWLEDGE},
    Role.COACH: frozenset({Access.TRAINING, Access.BODY}),
    Role.CLINICIAN: frozenset({Access.WRITE_CLINICAL, Access.TRAINING, Access.BODY, Access.LABS, Access.DOSES, Access.ALERTS, Access.ACKNOWLEDGE}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated user. An athlete's user id is their athlete id; `token_id` names the token used
    (public, for logs and rate limits)."""

    user_id: str
    role: Role
    token_id: str = field(default="", compare=False)


@dataclass(frozen=True)
class TokenRecord:
    """What the store holds for a token: its user and their role now, the role it was issued for, its times."""

    token_id: str
    user_id: str
    role: Role
    issued_role: Role | None  # None: not a role this version knows
    expires_at: float
    revoked_at: float | None


class TokenStore(Protocol):
    def token_record(self, token_hash: str) -> TokenRecord | None: ...


def authenticate(store: TokenStore, token: str, now: float | None = None) -> Principal | None:
    """The principal `token` stands for, or None when it is unknown, revoked, expired or its role is stale."""
    return authenticate_hash(store, hash_token(token), now)


def authenticate_hash(store: TokenStore, token_hash: str, now: float | None = None) -> Principal | None:
    """`authenticate` for a token known by its hash: a web inbox session keeps only that, and asks on every
    request, so it ends when its token is revoked or expires."""
    record = store.token_record(token_hash)
    now = time.time() if now is None else now
    if record is None or record.revoked_at is not None or record.expires_at <= now or record.role is not \
            record.issued_role:
        return None
    return Principal(record.user_id, record.role, record.token_id)


def new_token() -> str:
    """A fresh random API token (256 bits), shown once to its owner and never stored in clear."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 is enough for 256-bit random tokens: there is no dictionary to brute-force."""
    return hashlib.sha256(token.encode()).hexdigest()


def public_token_id(token_hash: str) -> str:
    """A token's public name: the start of its hash (says nothing usable about the token)."""
    return token_hash[:12]


def tokens_match(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


def allowed(principal: Principal, access: Access, athlete_id: str, *, is_care_team: bool) -> bool:
    """May `principal` have `access` to `athlete_id`'s data?

    `is_care_team` says whether a coach or clinician is assigned to this athlete; athletes only ever reach
    their own data, whatever it says.
    """
    if access not in GRANTS[principal.role]:
        return False
    if principal.role is Role.ATHLETE:
        return principal.user_id == athlete_id
    return is_care_team
