"""The role policy, walked exhaustively, and token handling."""

from __future__ import annotations

import itertools

import pytest

from aromatrack.services.auth import Access, Principal, Role, allowed, authenticate, hash_token, tokens_match
from aromatrack.services.store import Store, StoreError

COACH_MAY = {Access.TRAINING, Access.BODY}
CLINICIAN_MAY = {Access.WRITE_CLINICAL, Access.TRAINING, Access.BODY, Access.LABS, Access.DOSES, Access.ALERTS,
                 Access.ACKNOWLEDGE}


@pytest.mark.parametrize("access", list(Access))
def test_an_athlete_reaches_only_their_own_data_and_never_acknowledges(access: Access) -> None:
    athlete = Principal("ath-1", Role.ATHLETE)
    assert allowed(athlete, access, "ath-1", is_care_team=False) is (access is not Access.ACKNOWLEDGE)
    assert not allowed(athlete, access, "ath-2", is_care_team=True)


@pytest.mark.parametrize(("role", "may"), [(Role.COACH, COACH_MAY), (Role.CLINICIAN, CLINICIAN_MAY)])
def test_care_team_members_get_their_role_grants_for_their_athletes_only(role: Role, may: set[Access]) -> None:
    member = Principal("m-1", role)
    for access, on_team in itertools.product(Access, (True, False)):
        assert allowed(member, access, "ath-1", is_care_team=on_team) is (on_team and access in may), (access, on_team)


def test_a_coach_never_sees_labs_doses_or_alerts() -> None:
    coach = Principal("c-1", Role.COACH)
    for access in (Access.LABS, Access.DOSES, Access.ALERTS, Access.ACKNOWLEDGE, Access.WRITE_CLINICAL):
        assert not allowed(coach, access, "ath-1", is_care_team=True)


def test_tokens_are_stored_only_as_hashes(tmp_path) -> None:
    store = Store(tmp_path / "api.sqlite3")
    token = store.add_user("ath-1", Role.ATHLETE)
    assert all(token.encode() not in path.read_bytes() for path in tmp_path.iterdir())
    assert tokens_match(token, hash_token(token)) and not tokens_match(token + "x", hash_token(token))
    assert authenticate(store, token) == Principal("ath-1", Role.ATHLETE)
    assert authenticate(store, "at_forged") is None


def test_only_coaches_and_clinicians_join_care_teams(tmp_path) -> None:
    store = Store(tmp_path / "api.sqlite3")
    store.add_user("ath-2", Role.ATHLETE)
    with pytest.raises(StoreError, match="not a coach or clinician"):
        store.assign("ath-1", "ath-2")
