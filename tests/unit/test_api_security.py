"""Attacks from the outside probe of the API (issue 15), each reproduced against the app over a recording sink."""

from __future__ import annotations

import sqlite3

from aromatrack.schemas.events import parse_event
from aromatrack.services.auth import Principal, Role, hash_token
from aromatrack.services.store import SCHEMA_VERSION, Store
from tests.unit.test_api_access import SCALE, World, world  # noqa: F401 (fixture)


def withings_group(grpid: int) -> dict:
    return {"status": 0, "body": {"measuregrps": [
        {"grpid": grpid, "date": 1777622400, "category": 1,
         "measures": [{"value": 82500, "type": 1, "unit": -3}, {"value": 172, "type": 6, "unit": -1}]}]}}


def test_an_athlete_cannot_suppress_another_athletes_event_by_claiming_its_id(world: World) -> None:
    squatter = world.client.post("/v1/athletes/ath-2/scale-readings", json={**SCALE, "event_id": "withings-777001"},
                                 headers=world.as_("ath-2"))
    assert squatter.status_code == 202
    real = world.client.post("/v1/athletes/ath-1/scale-readings/withings", json=withings_group(777001),
                             headers=world.as_("ath-1"))
    assert real.status_code == 202 and real.json()["accepted"] == ["withings-777001"]
    assert [(e.athlete_id, e.event_id) for e in world.sink.events] == [
        ("ath-2", "withings-777001"), ("ath-1", "withings-777001")]


def test_duplicate_answers_reveal_nothing_about_another_athletes_labs(world: World) -> None:
    """B cannot learn which of two guessed values A's lab has by posting their content-hash ids as his own."""
    lab = {"time": "2026-05-01T08:00:00Z", "analyte": "estradiol", "unit": "pg/mL"}
    assert world.client.post("/v1/athletes/ath-1/labs", json={**lab, "value": 42.5},
                             headers=world.as_("clin-1")).status_code == 202
    answers = []
    for guess in (42.5, 42.0):
        guessed_id = parse_event({**lab, "type": "lab.result", "athlete_id": "ath-1", "value": guess}).event_id
        probe = world.client.post("/v1/athletes/ath-2/symptoms", json={"time": lab["time"], "event_id": guessed_id},
                                  headers=world.as_("ath-2"))
        answers.append((probe.status_code, probe.json()["duplicates"], len(probe.json()["accepted"])))
    assert answers == [(202, [], 1), (202, [], 1)]


def test_an_athletes_own_repeat_is_still_a_duplicate(world: World) -> None:
    body = {**SCALE, "event_id": "withings-5"}
    first = world.client.post("/v1/athletes/ath-1/scale-readings", json=body, headers=world.as_("ath-1"))
    again = world.client.post("/v1/athletes/ath-1/scale-readings", json=body, headers=world.as_("ath-1"))
    assert first.json()["accepted"] == again.json()["duplicates"] == ["withings-5"]
    assert len(world.sink.events) == 1


def test_a_store_of_the_first_version_is_upgraded_and_keeps_its_users(tmp_path) -> None:
    path = tmp_path / "api.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE users (user_id TEXT PRIMARY KEY, role TEXT NOT NULL, email TEXT, webhook_url TEXT,"
        " webhook_secret TEXT);"
        "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users);"
        "CREATE TABLE produced (event_id TEXT PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0, claimed_at REAL NOT NULL);"
        "INSERT INTO users VALUES ('ath-1', 'athlete', NULL, NULL, NULL);"
        f"INSERT INTO tokens VALUES ('{hash_token('at_old')}', 'ath-1');"
        "INSERT INTO produced VALUES ('withings-1', 1, 0);")
    old.close()
    store = Store(path)
    assert store.authenticate("at_old") == Principal("ath-1", Role.ATHLETE)
    assert store.claim_events("ath-1", ["withings-1"]) == (["withings-1"], [], [])
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
