"""Attacks from the outside probe of the API (issue 15), each reproduced against the app over a recording sink."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import logging.config
import random
import sqlite3
import stat
import time

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.schemas.events import MAX_EVENT_BYTES, MAX_JSON_INT, EventError, dump_event, load_json, parse_event
from aromatrack.services.auth import DEFAULT_TOKEN_DAYS, Principal, Role, authenticate, hash_token
from aromatrack.services.api import Limits, api_log_config
from alembic.script import ScriptDirectory

from aromatrack.services.store import MIGRATIONS, Store
from aromatrack.streams.fit import fit_payload
from tests.unit.test_fit_bounds import fit_of_records
from tests.unit.test_fit_decode import CORPUS, ZWIFT
from tests.unit.test_api_access import SCALE, World, alert_for, world  # noqa: F401 (fixture)


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
    old.executescript(  # the first release's schema, unversioned
        "CREATE TABLE users (user_id TEXT PRIMARY KEY, role TEXT NOT NULL, email TEXT, webhook_url TEXT,"
        " webhook_secret TEXT);"
        "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users);"
        "CREATE TABLE care_team (athlete_id TEXT NOT NULL, member_id TEXT NOT NULL REFERENCES users,"
        " PRIMARY KEY (athlete_id, member_id));"
        "CREATE TABLE idempotency (scope TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, response TEXT);"
        "CREATE TABLE produced (event_id TEXT PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0, claimed_at REAL NOT NULL);"
        "CREATE TABLE alerts (alert_id TEXT PRIMARY KEY, athlete_id TEXT NOT NULL, body TEXT NOT NULL,"
        " received_at REAL NOT NULL, acknowledged_at REAL, acknowledged_by TEXT);"
        "INSERT INTO idempotency VALUES ('ath-1 k', 'f', '{}');"
        "INSERT INTO users VALUES ('ath-1', 'athlete', NULL, NULL, NULL);"
        f"INSERT INTO tokens VALUES ('{hash_token('at_old')}', 'ath-1');"
        "INSERT INTO produced VALUES ('withings-1', 1, 0);")
    old.close()
    store = Store(path)
    assert authenticate(store, "at_old") == Principal("ath-1", Role.ATHLETE)  # until the default lifetime ends
    assert authenticate(store, "at_old", now=time.time() + (DEFAULT_TOKEN_DAYS + 1) * 86400) is None
    assert store.claim_events("ath-1", ["withings-1"]) == (["withings-1"], [], [])
    assert store.schema_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    store.close()
    assert Store(path).prune()["idempotency"] == 1  # records from before they had an age go at the first prune


LAB_TEXT = '{"time": "2026-05-01T08:00:00Z", "analyte": "estradiol", "unit": "pg/mL", %s}'
SCALE_TEXT = '{"time": "2026-05-01T08:00:00Z", "weight_kg": 82.5, "body_fat_pct": 17.2, %s}'


def _problem(response) -> str:
    return " ".join(f"{p['field']}: {p['problem']}" for p in response.json()["detail"])


@pytest.mark.parametrize("depth", [40, 300, 1000, 5000])
@pytest.mark.parametrize(("route", "user", "wrap"), [
    ("scale-readings", "ath-1", lambda deep: SCALE_TEXT % f'"extra": {deep}'),
    ("labs/fhir", "clin-1", lambda deep: '{"resourceType": "Observation", "code": %s}' % deep),
    ("scale-readings/withings", "ath-1", lambda deep: '{"body": %s}' % deep),
])
def test_deeply_nested_json_is_a_4xx_naming_the_depth(world: World, route, user, wrap, depth: int) -> None:
    body = wrap("[" * depth + "]" * depth)
    response = world.client.post(f"/v1/athletes/ath-1/{route}", content=body, headers=world.as_(user))
    assert response.status_code == 400 and "nested deeper than" in _problem(response)
    assert world.sink.events == []


@pytest.mark.parametrize(("route", "user", "body", "named"), [
    ("scale-readings", "ath-1", SCALE_TEXT % f'"extra": {"9" * 4301}', "integer"),
    ("scale-readings", "ath-1", SCALE_TEXT % f'"extra": {"9" * 25}', "integer"),
    ("labs", "clin-1", LAB_TEXT % '"value": Infinity', "Infinity"),
    ("labs", "clin-1", LAB_TEXT % '"value": NaN', "NaN"),
    ("labs", "clin-1", LAB_TEXT % '"value": 1e999', "value: not a finite number"),
    ("labs", "clin-1", LAB_TEXT % '"value": 20, "reference_high": -1e999', "reference_high: not a finite number"),
    ("scale-readings/withings", "ath-1", json.dumps({"body": {"measuregrps": [
        {"grpid": 1, "date": 1777622400, "measures": [{"value": 10**400, "type": 1, "unit": 0}]}]}}), "integer"),
    ("labs", "clin-1", LAB_TEXT % '"value": 20, "note": "\\ud800"', "note: a lone surrogate"),
    ("labs", "clin-1", LAB_TEXT % '"value": 20, "\\udfff": 1', "a lone surrogate"),
])
def test_numbers_and_strings_json_cannot_carry_are_a_4xx_naming_the_problem(world: World, route, user, body,
                                                                             named) -> None:
    response = world.client.post(f"/v1/athletes/ath-1/{route}", content=body, headers=world.as_(user))
    assert response.status_code == 400 and named in _problem(response), response.text
    assert world.sink.events == []


@pytest.mark.parametrize(("route", "body"), [
    ("scale-readings", SCALE_TEXT % f'"extra": "{"a" * 990_000}"'),
    ("scale-readings/withings", json.dumps({"body": {"measuregrps": [
        {"grpid": 1, "date": 1777622400, "deviceid": "d" * 900_000,
         "measures": [{"value": 82, "type": 1, "unit": 0}, {"value": 172, "type": 6, "unit": -1}]}]}})),
])
def test_an_event_over_the_size_cap_is_refused_at_the_door(world: World, route: str, body: str) -> None:
    response = world.client.post(f"/v1/athletes/ath-1/{route}", content=body, headers=world.as_("ath-1"))
    assert response.status_code == 422 and f"{MAX_EVENT_BYTES}-byte limit" in _problem(response)
    assert world.sink.events == []


def test_the_worker_accepts_what_the_api_accepted(world: World) -> None:
    big = SCALE_TEXT % f'"extra": "{"a" * (MAX_EVENT_BYTES - 400)}", "nested": {"[" * 30}{"]" * 30}'
    lab = LAB_TEXT % '"value": 1e300, "reference_high": 1e308'
    assert world.client.post("/v1/athletes/ath-1/scale-readings", content=big, headers=world.as_("ath-1")
                             ).status_code == 202
    assert world.client.post("/v1/athletes/ath-1/labs", content=lab, headers=world.as_("clin-1")).status_code == 202
    for event in world.sink.events:
        assert parse_event(dump_event(event)) == event


@pytest.mark.parametrize("text", [
    b'{"type": "lab.result", "athlete_id": "a", "time": "2026-05-01T08:00:00Z", "analyte": "estradiol",'
    b' "unit": "pg/mL", "value": 1e999}',
    b'{"type": "symptom.log", "athlete_id": "a", "time": "2026-05-01T08:00:00Z", "x": ' + b"[" * 2000 + b"]" * 2000
    + b"}",
    b'{"type": "symptom.log", "athlete_id": "a", "time": "2026-05-01T08:00:00Z", "x": "\\ud800"}',
])
def test_the_worker_refuses_the_same_input_with_an_event_error(text: bytes) -> None:
    with pytest.raises(EventError):
        parse_event(text)
    with pytest.raises(EventError):
        parse_event({"type": "symptom.log", "athlete_id": "a", "time": "2026-05-01T08:00:00Z",
                     "x": float("inf") if b"1e999" in text else "\ud800"})


def test_only_a_broker_failure_answers_503(world: World) -> None:
    class BrokenSink:
        async def send_all(self, events):
            raise ValueError("a bug, not the broker")

    world.client.app.state.services.sink = BrokenSink()
    client = TestClient(world.client.app, raise_server_exceptions=False)
    response = client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=world.as_("ath-1"))
    assert response.status_code == 500


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-MAX_JSON_INT, MAX_JSON_INT) | st.floats(allow_nan=False,
                                                                                   allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@settings(deadline=None)
@given(JSON_VALUES)
def test_json_within_the_limits_reads_back_unchanged(value) -> None:
    assert load_json(json.dumps(value)) == value


@settings(deadline=None)
@given(JSON_VALUES, st.sampled_from(["Infinity", "-Infinity", "NaN", "1e400", str(MAX_JSON_INT + 1), '"\\udc00"']))
def test_one_unrepresentable_element_anywhere_is_refused(value, bad: str) -> None:
    with pytest.raises(EventError):
        load_json(json.dumps([value, {"k": [0]}]).replace("[0]", f"[{bad}]"))


def test_a_fit_upload_travels_gzipped_and_a_gzipped_upload_of_the_same_file_is_a_duplicate(world: World) -> None:
    data = (CORPUS / ZWIFT).read_bytes()
    plain = world.client.post("/v1/athletes/ath-1/workouts/fit", content=data, headers=world.as_("ath-1"))
    packed = world.client.post("/v1/athletes/ath-1/workouts/fit", content=gzip.compress(data),
                               headers=world.as_("ath-1"))
    assert plain.status_code == packed.status_code == 202
    assert packed.json()["duplicates"] == plain.json()["accepted"]
    [event] = world.sink.events
    assert base64.b64decode(event.fit_b64)[:2] == b"\x1f\x8b" and fit_payload(event) == data
    assert len(event.fit_b64) < len(data)


def test_a_fit_upload_bigger_than_the_old_plain_cap_fits_in_one_message_gzipped(world: World) -> None:
    data = fit_of_records(100_000, width=8)  # 900 kB of FIT, over the 700 kB the plain path allowed
    response = world.client.post("/v1/athletes/ath-1/workouts/fit", content=data, headers=world.as_("ath-1"))
    assert response.status_code == 202 and fit_payload(world.sink.events[0]) == data


def test_a_fit_gzip_bomb_is_refused_at_the_door_naming_the_bound(world: World) -> None:
    bomb = gzip.compress(fit_of_records(1_000_000))
    response = world.client.post("/v1/athletes/ath-1/workouts/fit", content=bomb, headers=world.as_("ath-1"))
    assert response.status_code == 422 and "messages" in _problem(response)
    incompressible = random.Random(1).randbytes(2_000_000)
    response = world.client.post("/v1/athletes/ath-1/workouts/fit", content=incompressible,
                                 headers=world.as_("ath-1"))
    assert response.status_code == 413
    assert world.sink.events == []


def test_acknowledging_an_unknown_alert_answers_as_another_patients_does(world: World) -> None:
    world.store.record_alert(alert_for("ath-2", "alert-2"))
    clinician = world.as_("clin-1")
    unknown = world.client.post("/v1/alerts/no-such-alert/acknowledge", headers=clinician)
    other = world.client.post("/v1/alerts/alert-2/acknowledge", headers=clinician)
    assert unknown.status_code == other.status_code == 403 and unknown.json() == other.json()


def test_a_trailing_slash_never_redirects_to_the_host_header(world: World) -> None:
    response = world.client.get("/v1/athletes/ath-1/alerts/", headers={**world.as_("ath-1"), "Host": "evil.example"},
                                follow_redirects=False)
    assert "evil.example" not in response.headers.get("location", "") and response.status_code == 404


@pytest.mark.parametrize(("subject", "field"), [
    ({"subject": {"reference": "Patient/ath-2"}}, "subject.reference"),
    ({"subject": {"identifier": {"system": "urn:mrn", "value": "ath-2"}}}, "subject"),
    ({"subject": "Patient/ath-2"}, "subject"),
    ({"subject": {"reference": "Patient/ath-1", "identifier": {"value": "ath-2"}}}, "subject"),
    ({"patient": {"reference": "Patient/ath-2"}}, "patient"),
    ({"subject": {"reference": "Group/ath-1"}}, "subject.reference"),
])
def test_a_fhir_subject_in_any_form_is_checked_against_the_athlete(world: World, subject: dict, field: str) -> None:
    resource = {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-05-01T07:30:00Z",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2243-4"}]},
                "valueQuantity": {"value": 21.0, "code": "pg/mL"}, **subject}
    for body, where in ((resource, field), ({"resourceType": "Bundle", "entry": [{"resource": resource}]},
                                            f"entry[0].{field}")):
        response = world.client.post("/v1/athletes/ath-1/labs/fhir", json=body, headers=world.as_("clin-1"))
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == where, response.json()
    assert world.sink.events == []


def test_store_files_are_private_to_the_service_user(tmp_path) -> None:
    state = tmp_path / "state"
    store = Store(state / "api.sqlite3")
    store.add_user("ath-1", Role.ATHLETE)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = list(state.iterdir())
    assert {p.name for p in files} >= {"api.sqlite3", "api.sqlite3-wal"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files), [(p.name, oct(p.stat().st_mode)) for p in files]


@pytest.fixture
def api_log() -> io.StringIO:
    """What the `aromatrack api` command's logging writes, undone after the test (it configures the process)."""
    logger = logging.getLogger("aromatrack")
    saved = (logger.level, list(logger.handlers), logger.propagate)
    logging.config.dictConfig(api_log_config())
    written = io.StringIO()
    [handler] = logger.handlers
    handler.setStream(written)
    yield written
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]


def test_denials_acknowledgements_and_every_request_reach_the_log_with_ids_only(world: World,
                                                                                api_log: io.StringIO) -> None:
    world.store.record_alert(alert_for("ath-1"))
    world.client.get("/v1/athletes/ath-2/alerts", headers=world.as_("ath-1"))
    world.client.post("/v1/alerts/alert-1/acknowledge", headers=world.as_("clin-1"))
    world.client.post("/v1/athletes/ath-1/labs", json={"time": "2026-05-01T08:00:00Z", "analyte": "estradiol",
                                                       "value": 123.456, "unit": "pg/mL"}, headers=world.as_("clin-1"))
    world.client.get("/v1/athletes/ath-1/alerts?open=true", headers={"Authorization": "Bearer at_forged"})
    log = api_log.getvalue()
    assert "denied athlete alerts access for ath-1" in log and "alert alert-1 acknowledged by clin-1" in log
    token_id = authenticate(world.store, world.tokens["clin-1"]).token_id
    assert f"POST /v1/athletes/{{athlete_id}}/labs athlete=ath-1 202 user=clin-1 role=clinician token={token_id}" \
        in log
    assert "GET /v1/athletes/{athlete_id}/alerts athlete=ath-1 401 user=-" in log
    for secret in ("123.456", "estradiol", "E2 fell", "open=true", world.tokens["clin-1"]):
        assert secret not in log


def test_a_slow_body_is_cut_off(world: World) -> None:
    world.client.app.state.limits = Limits(body_timeout_s=0.2)

    def slow():
        yield b'{"time": "2026-05-01T08:00:00Z", '
        time.sleep(0.5)
        yield b'"weight_kg": 82.5, "body_fat_pct": 17.2}'

    response = world.client.post("/v1/athletes/ath-1/scale-readings", content=slow(), headers=world.as_("ath-1"))
    assert response.status_code == 408 and world.sink.events == []


def test_each_token_is_rate_limited_on_its_own(world: World) -> None:
    world.client.app.state.limits = Limits(requests_per_s=0.01, burst=3)
    answers = [world.client.get("/v1/athletes/ath-1/alerts", headers=world.as_("ath-1")).status_code
               for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    limited = world.client.get("/v1/athletes/ath-1/alerts", headers=world.as_("ath-1"))
    assert int(limited.headers["Retry-After"]) >= 1
    assert world.client.get("/v1/athletes/ath-1/alerts", headers=world.as_("clin-1")).status_code == 200


def test_idempotency_records_produced_ids_and_dead_tokens_are_pruned(world: World) -> None:
    headers = {**world.as_("ath-1"), "Idempotency-Key": "k-1"}
    assert world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=headers).status_code == 202
    world.store.revoke_tokens("ath-2")
    assert world.store.prune() == {"idempotency": 0, "produced": 0, "tokens": 0}
    later = time.time() + 400 * 86400
    assert world.store.prune(now=later) == {"idempotency": 1, "produced": 1, "tokens": 5}
    again = world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=world.as_("ath-1"))
    assert again.status_code == 401  # every token expired by then; the store holds nothing of them


def test_a_path_that_is_not_an_athlete_id_stays_out_of_the_access_log(world: World, api_log: io.StringIO) -> None:
    world.client.get("/v1/athletes/x%0aforged%20line/alerts", headers=world.as_("ath-1"))
    log = api_log.getvalue()
    assert "forged" not in log and "athlete=? 422" in log
