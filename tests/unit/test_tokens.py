"""Token lifecycle (issue 15, Medium 7): expiry, revocation, rotation, role changes, removal and unassignment,
through the one verification function the API uses, and through the CLI."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from aromatrack.services.auth import Principal, Role, authenticate
from aromatrack.services.cli import app
from aromatrack.services.store import Store, StoreError
from tests.store_databases import store_url  # noqa: F401 (fixture)
from tests.unit.test_api_access import SCALE, World, world  # noqa: F401 (fixture)

DAY = 86400.0


@pytest.fixture
def store(store_url: str) -> Store:  # noqa: F811
    return Store(store_url)


def test_a_token_expires(store: Store) -> None:
    token = store.add_user("ath-1", Role.ATHLETE, token_days=30)
    assert authenticate(store, token, now=time.time() + 29 * DAY) == Principal("ath-1", Role.ATHLETE)
    assert authenticate(store, token, now=time.time() + 31 * DAY) is None


def test_revoking_one_token_leaves_the_others(store: Store) -> None:
    first = store.add_user("ath-1", Role.ATHLETE)
    second = store.issue_token("ath-1")
    [first_info, _] = store.tokens_of("ath-1")
    assert store.revoke_tokens("ath-1", first_info.token_id) == 1
    assert authenticate(store, first) is None and authenticate(store, second) is not None
    assert store.revoke_tokens("ath-1") == 1 and authenticate(store, second) is None


def test_rotation_gives_a_new_token_and_ends_the_old_ones(store: Store) -> None:
    old = store.add_user("ath-1", Role.ATHLETE)
    new = store.rotate_token("ath-1")
    assert authenticate(store, old) is None and authenticate(store, new) == Principal("ath-1", Role.ATHLETE)


def test_a_role_change_invalidates_the_tokens_issued_for_the_old_role(store: Store) -> None:
    as_clinician = store.add_user("u-1", Role.CLINICIAN)
    as_coach = store.add_user("u-1", Role.COACH)
    assert authenticate(store, as_clinician) is None
    assert authenticate(store, as_coach) == Principal("u-1", Role.COACH)


def test_removing_a_user_ends_their_tokens_and_care_team_places(store: Store) -> None:
    store.add_user("ath-1", Role.ATHLETE)
    coach = store.add_user("coach-1", Role.COACH)
    store.assign("ath-1", "coach-1")
    store.remove_user("coach-1")
    assert authenticate(store, coach) is None and not store.on_care_team("ath-1", "coach-1")
    with pytest.raises(StoreError, match="unknown user"):
        store.remove_user("coach-1")


def test_an_unassigned_coach_loses_access_at_once(world: World) -> None:
    coach = world.as_("coach-1")
    world.client.app.state.services.influx = None
    assert world.client.get("/v1/athletes/ath-1/training", headers=coach).status_code == 503  # allowed, no influx
    assert world.store.unassign("ath-1", "coach-1")
    assert world.client.get("/v1/athletes/ath-1/training", headers=coach).status_code == 403
    assert not world.store.unassign("ath-1", "coach-1")


def test_the_api_refuses_revoked_expired_and_old_role_tokens(world: World) -> None:
    headers = world.as_("ath-1")
    assert world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=headers).status_code == 202
    world.store.revoke_tokens("ath-1")
    assert world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=headers).status_code == 401
    world.store.add_user("clin-1", Role.COACH)  # the role changes: the clinician's token must stop working
    assert world.client.get("/v1/athletes/ath-1/alerts", headers=world.as_("clin-1")).status_code == 401


def test_the_cli_lists_revokes_rotates_removes_and_unassigns(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, ["users", *args])
        assert result.exit_code == 0, result.output
        return result.output.strip()

    token = run("add", "ath-1", "--role", "athlete", "--days", "7")
    run("add", "coach-1", "--role", "coach")
    run("assign", "ath-1", "coach-1")
    store = Store(tmp_path / "api.sqlite3")
    assert authenticate(store, token, now=time.time() + 8 * DAY) is None
    listing = run("tokens", "ath-1")
    assert token not in listing and store.tokens_of("ath-1")[0].token_id in listing
    rotated = run("rotate", "ath-1")
    assert authenticate(store, token) is None and authenticate(store, rotated) is not None
    run("revoke", "ath-1")
    assert authenticate(store, rotated) is None
    run("unassign", "ath-1", "coach-1")
    assert not store.on_care_team("ath-1", "coach-1")
    run("remove", "coach-1")
    assert runner.invoke(app, ["users", "token", "coach-1"]).exit_code == 1
