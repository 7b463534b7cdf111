"""Intake behaviour: field-naming 4xx, all-or-nothing batches, size limits, idempotent retries, no PHI in logs."""

from __future__ import annotations

import base64
import logging

from aromatrack.services.api import MAX_JSON_BYTES
from aromatrack.streams.fit import MAX_FIT_BYTES, fit_payload
from tests.unit.test_api_access import DOSE, LAB, NOW, SCALE, World, world  # noqa: F401 (fixture)


def test_a_bad_field_gets_422_naming_the_field_and_problem(world: World) -> None:
    response = world.client.post("/v1/athletes/ath-1/scale-readings", json={**SCALE, "body_fat_pct": 95},
                                 headers=world.as_("ath-1"))
    assert response.status_code == 422
    [problem] = response.json()["detail"]
    assert problem["field"] == "body_fat_pct" and "75" in problem["problem"]


def test_a_batch_with_one_bad_item_produces_nothing_and_names_the_item(world: World) -> None:
    batch = [SCALE, {**SCALE, "time": "2026-05-02T08:00:00Z", "weight_kg": "heavy"}]
    response = world.client.post("/v1/athletes/ath-1/scale-readings", json=batch, headers=world.as_("ath-1"))
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["detail"]] == ["[1].weight_kg"]
    assert world.sink.events == []


def test_a_body_for_another_athlete_or_type_is_refused(world: World) -> None:
    for body, field in (({**SCALE, "athlete_id": "ath-2"}, "athlete_id"), ({**SCALE, "type": "lab.result"}, "type")):
        response = world.client.post("/v1/athletes/ath-1/scale-readings", json=body, headers=world.as_("ath-1"))
        assert response.status_code == 422 and response.json()["detail"][0]["field"] == field


def test_not_json_is_400(world: World) -> None:
    response = world.client.post("/v1/athletes/ath-1/doses", content=b"{nope", headers=world.as_("ath-1"))
    assert response.status_code == 400 and response.json()["detail"][0]["field"] == "body"


def test_oversized_uploads_get_413_and_nothing_reaches_the_sink(world: World) -> None:
    fit = world.client.post("/v1/athletes/ath-1/workouts/fit", content=b"\0" * (MAX_FIT_BYTES + 1),
                            headers=world.as_("ath-1"))
    assert fit.status_code == 413
    big = b'{"x": "' + b"a" * MAX_JSON_BYTES + b'"}'
    assert world.client.post("/v1/athletes/ath-1/labs", content=big, headers=world.as_("ath-1")).status_code == 413
    assert world.sink.events == []


def test_a_fit_upload_becomes_one_workout_fit_event_and_a_reupload_is_a_duplicate(world: World) -> None:
    data = b".FIT" + bytes(range(200))  # the API does not decode; the stream does
    first = world.client.post(f"/v1/athletes/ath-1/workouts/fit?time={NOW}&filename=ride.fit", content=data,
                              headers=world.as_("ath-1"))
    again = world.client.post("/v1/athletes/ath-1/workouts/fit", content=data, headers=world.as_("ath-1"))
    assert first.status_code == again.status_code == 202
    assert again.json()["accepted"] == [] and again.json()["duplicates"] == first.json()["accepted"]
    [event] = world.sink.events
    assert event.type == "workout.fit" and fit_payload(event) == data and event.filename == "ride.fit"


def test_a_retried_request_never_creates_a_second_event(world: World) -> None:
    headers = {**world.as_("ath-1"), "Idempotency-Key": "retry-1"}
    first = world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=headers)
    replay = world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=headers)
    assert replay.json() == first.json() and replay.headers["Idempotent-Replayed"] == "true"
    # Without the key, the stable event id still recognises the same event.
    plain = world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=world.as_("ath-1"))
    assert plain.json()["duplicates"] == first.json()["accepted"]
    assert len(world.sink.events) == 1


def test_an_idempotency_key_reused_for_another_body_is_refused(world: World) -> None:
    headers = {**world.as_("ath-1"), "Idempotency-Key": "k"}
    world.client.post("/v1/athletes/ath-1/scale-readings", json=SCALE, headers=headers)
    other = world.client.post("/v1/athletes/ath-1/scale-readings", json={**SCALE, "weight_kg": 80}, headers=headers)
    assert other.status_code == 422 and other.json()["detail"][0]["field"] == "Idempotency-Key"


def test_when_the_broker_fails_the_client_gets_503_and_its_retry_succeeds(world: World) -> None:
    world.sink.fail = True
    failed = world.client.post("/v1/athletes/ath-1/doses", json=DOSE, headers=world.as_("ath-1"))
    assert failed.status_code == 503 and world.sink.events == []
    world.sink.fail = False
    retried = world.client.post("/v1/athletes/ath-1/doses", json=DOSE, headers=world.as_("ath-1"))
    assert retried.status_code == 202 and len(retried.json()["accepted"]) == 1


def test_lab_and_dose_posts_log_no_values(world: World, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    world.client.post("/v1/athletes/ath-1/labs", json={**LAB, "value": 123.456}, headers=world.as_("clin-1"))
    world.client.post("/v1/athletes/ath-1/doses", json={**DOSE, "dose_mg": 0.777}, headers=world.as_("ath-1"))
    world.client.post("/v1/athletes/ath-1/labs", json={**LAB, "value": -987.6}, headers=world.as_("clin-1"))
    text = caplog.text
    assert "accepted 1 new" in text  # the logs were captured at all
    for secret in ("123.456", "0.777", "987.6", "estradiol", "anastrozole"):
        assert secret not in text


def test_the_withings_route_maps_groups_and_reports_skipped_ones(world: World) -> None:
    document = {"status": 0, "body": {"measuregrps": [
        {"grpid": 11, "date": 1777622400, "category": 1, "deviceid": "abc",
         "measures": [{"value": 82500, "type": 1, "unit": -3}, {"value": 172, "type": 6, "unit": -1}]},
        {"grpid": 12, "date": 1777622500, "category": 1, "measures": [{"value": 825, "type": 1, "unit": -1}]},
    ]}}
    response = world.client.post("/v1/athletes/ath-1/scale-readings/withings", json=document,
                                 headers=world.as_("ath-1"))
    assert response.status_code == 202
    assert response.json()["accepted"] == ["withings-11"] and response.json()["skipped"][0]["grpid"] == 12
    [event] = world.sink.events
    assert (event.weight_kg, event.body_fat_pct, event.device) == (82.5, 17.2, "withings:abc")


def test_a_claim_left_by_a_crashed_request_goes_stale_and_the_retry_produces(world: World) -> None:
    claimed, _, _ = world.store.claim_events("ath-1", ["ev-1"])  # a request that died before Kafka answered
    assert claimed == ["ev-1"]
    assert world.store.claim_events("ath-1", ["ev-1"]) == ([], ["ev-1"], [])
    assert world.store.claim_events("ath-1", ["ev-1"], stale_after_s=0) == (["ev-1"], [], [])
    world.store.settle_events("ath-1", ["ev-1"], produced=True)
    assert world.store.claim_events("ath-1", ["ev-1"], stale_after_s=0) == ([], [], ["ev-1"])


def test_a_batch_refused_for_an_event_in_flight_leaves_its_other_events_free_for_the_retry(world: World) -> None:
    world.store.claim_events("ath-1", ["ev-1"])  # a concurrent request is producing ev-1
    batch = [{**SCALE, "event_id": "ev-1"}, {**SCALE, "event_id": "ev-2"}]
    refused = world.client.post("/v1/athletes/ath-1/scale-readings", json=batch, headers=world.as_("ath-1"))
    assert refused.status_code == 409 and world.sink.events == []
    world.store.settle_events("ath-1", ["ev-1"], produced=True)  # the concurrent request finished
    retry = world.client.post("/v1/athletes/ath-1/scale-readings", json=batch, headers=world.as_("ath-1"))
    assert retry.status_code == 202 and retry.json() == {"accepted": ["ev-2"], "duplicates": ["ev-1"]}


def test_an_event_id_with_a_nul_character_is_refused_on_every_store(world: World) -> None:
    response = world.client.post("/v1/athletes/ath-1/scale-readings", json={**SCALE, "event_id": "e\u00001"},
                                 headers=world.as_("ath-1"))
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "event_id"
    assert world.sink.events == []


def observation(value: float, subject: str | None = "Patient/ath-1") -> dict:
    resource = {
        "resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-05-01T07:30:00Z",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2243-4"}]},
        "valueQuantity": {"value": value, "unit": "pg/mL", "system": "http://unitsofmeasure.org", "code": "pg/mL"},
    }
    if subject:
        resource["subject"] = {"reference": subject}
    return resource


def test_fhir_observations_and_bundles_become_lab_results(world: World) -> None:
    clinician = world.as_("clin-1")
    single = world.client.post("/v1/athletes/ath-1/labs/fhir", json=observation(21.0), headers=clinician)
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": observation(19.0, None)}, {"resource": observation(17.5)}]}
    batch = world.client.post("/v1/athletes/ath-1/labs/fhir", json=bundle, headers=clinician)
    assert single.status_code == batch.status_code == 202
    assert [(e.analyte, e.value, e.loinc) for e in world.sink.events] == [
        ("estradiol", 21.0, "2243-4"), ("estradiol", 19.0, "2243-4"), ("estradiol", 17.5, "2243-4")]


def test_fhir_for_another_patient_or_of_the_wrong_shape_is_refused(world: World) -> None:
    clinician = world.as_("clin-1")
    other = {"resourceType": "Bundle", "entry": [{"resource": observation(19.0)},
                                                  {"resource": observation(19.0, "Patient/ath-2")}]}
    refused = world.client.post("/v1/athletes/ath-1/labs/fhir", json=other, headers=clinician)
    assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "entry[1].subject.reference"
    for bad in ({"resourceType": "Bundle", "entry": "x"}, {**observation(1.0), "code": "x"}, {"resourceType": "Bundle"}):
        response = world.client.post("/v1/athletes/ath-1/labs/fhir", json=bad, headers=clinician)
        assert response.status_code == 422, bad
    assert world.sink.events == []
