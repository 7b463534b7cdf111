"""Who may do what: API tokens (stored only as hashes) and the role policy, as plain functions.

The policy is a table, not scattered `if`s, so a test can walk every role x access pair and prove each denial.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

TOKEN_PREFIX = "at_"


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
    """An authenticated user. An athlete's user id is their athlete id."""

    user_id: str
    role: Role


def new_token() -> str:
    """A fresh random API token (256 bits), shown once to its owner and never stored in clear."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 is enough for 256-bit random tokens: there is no dictionary to brute-force."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore(Protocol):
    def authenticate(self, token: str) -> Principal | None: ...


def verify_token(store: TokenStore, token: str | None) -> Principal | None:
    """The user an API token belongs to, or None: the one check behind the API's bearer header and the web
    inbox's sign-in, so both accept and refuse exactly the same tokens."""
    return store.authenticate(token) if token else None


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
