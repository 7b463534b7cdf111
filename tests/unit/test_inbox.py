"""The web inbox's sign-in, CSRF and access rules, over the app and a real SQLite store (no servers); the
browser test (tests/integration/test_web_pages.py) drives the same pages in Chromium."""

from __future__ import annotations

import logging
import re
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from aromatrack.schemas.events import Alert, AlertEvidence
from aromatrack.services.api import Services, create_app
from aromatrack.services.auth import Role
from aromatrack.services.inbox import SEVERITY_RANK, SESSION_COOKIE, Filters, select
from aromatrack.services.store import InboxAlert, Store
from tests.store_databases import engine_for, store_url  # noqa: F401 (fixture)

LOOPBACK = "http://127.0.0.1"
SUMMARY = "Estradiol fell below range while body fat fell."
NOTE = "Called the athlete; repeat E2 ordered."


def make_alert(alert_id: str, athlete_id: str, severity: str = "warning", rule: str = "e2_low_with_fat_loss",
               days_ago: float = 1.0) -> Alert:
    return Alert(
        alert_id=alert_id, athlete_id=athlete_id, kind="dose_review",
        time=datetime(2026, 5, 1, tzinfo=timezone.utc) - timedelta(days=days_ago), rule=rule, severity=severity, summary=SUMMARY,
        evidence=[AlertEvidence(name="e2_pg_ml", value=14.0, unit="pg/mL", event_ids=["e1"])], sources=["seed-1"],
    )


@pytest.fixture
def store(store_url: str) -> Store:  # noqa: F811
    store = Store(store_url)
    for user, role in (("clin-1", Role.CLINICIAN), ("clin-2", Role.CLINICIAN), ("coach-1", Role.COACH),
                       ("ath-1", Role.ATHLETE)):
        store.add_user(user, role)
    for athlete, member in (("ath-1", "clin-1"), ("ath-1", "coach-1"), ("ath-2", "clin-1"), ("ath-3", "clin-2")):
        store.assign(athlete, member)
    store.record_alert(make_alert("a-1", "ath-1", "urgent"))
    store.record_alert(make_alert("a-2", "ath-2", "info", rule="recheck_after_dose_change"))
    store.record_alert(make_alert("b-1", "ath-3", "urgent"))
    return store


def client_for(store: Store, base_url: str = LOOPBACK) -> TestClient:
    return TestClient(create_app(Services(store)), base_url=base_url, follow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def sign_in(client: TestClient, token: str):
    form = client.get("/inbox/sign-in")
    return client.post("/inbox/sign-in", data={"token": token, "csrf": csrf_of(form.text)})


def signed_in(store: Store, user: str = "clin-1") -> TestClient:
    client = client_for(store)
    assert sign_in(client, store.issue_token(user)).status_code == 303
    return client


def test_sign_in_sets_an_httponly_strict_expiring_cookie_secure_outside_loopback(store: Store) -> None:
    token = store.issue_token("clin-1")
    local = sign_in(client_for(store), token)
    assert local.status_code == 303 and local.headers["location"] == "/inbox"
    cookie = next(c for c in local.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Path=/inbox" in cookie and "Secure" not in cookie
    remote = sign_in(client_for(store, "https://clinic.example"), token)
    cookie = next(c for c in remote.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_a_session_cookie_is_random_and_stored_only_as_a_hash(store: Store, store_url: str) -> None:  # noqa: F811
    client = signed_in(store)
    cookie = client.cookies[SESSION_COOKIE]
    assert len(cookie) > 40
    with engine_for(store_url).connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM web_sessions")).all()
    assert rows and all(cookie not in map(str, row) for row in rows)


def test_sign_in_needs_its_form_token(store: Store) -> None:
    client = client_for(store)
    token = store.issue_token("clin-1")
    client.get("/inbox/sign-in")
    forged = client.post("/inbox/sign-in", data={"token": token, "csrf": "from-another-site"})
    assert forged.status_code == 403 and SESSION_COOKIE not in forged.cookies
    fresh = client_for(store)  # no sign-in cookie at all, as in a cross-site POST
    assert fresh.post("/inbox/sign-in", data={"token": token, "csrf": "x"}).status_code == 403


def test_an_unknown_token_is_refused_and_not_logged(store: Store, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    response = sign_in(client_for(store), "at_not-a-real-token")
    assert response.status_code == 401 and "not valid" in response.text
    assert SESSION_COOKIE not in response.cookies
    assert "at_not-a-real-token" not in caplog.text


@pytest.mark.parametrize("user", ["coach-1", "ath-1"])
def test_coaches_and_athletes_get_no_inbox(store: Store, user: str) -> None:
    response = sign_in(client_for(store), store.issue_token(user))
    assert response.status_code == 403 and "for clinicians" in response.text
    assert SESSION_COOKIE not in response.cookies


def test_without_a_session_every_inbox_page_goes_to_sign_in(store: Store) -> None:
    client = client_for(store)
    client.cookies.set(SESSION_COOKIE, "forged", domain="127.0.0.1", path="/inbox")
    for method, path in (("GET", "/inbox"), ("GET", "/inbox/alerts/a-1"), ("GET", "/inbox/alerts/a-1/chart.png"),
                         ("POST", "/inbox/alerts/a-1/acknowledge"), ("POST", "/inbox/sign-out")):
        response = client.request(method, path, data={"csrf": "x"})
        assert response.status_code == 303 and response.headers["location"] == "/inbox/sign-in", path
    assert store.alert("a-1").acknowledged_at is None


def test_the_list_holds_only_the_clinicians_own_patients_most_severe_first(store: Store) -> None:
    page = signed_in(store).get("/inbox")
    assert page.status_code == 200
    links = re.findall(r'href="/inbox/alerts/([^"]+)"', page.text)
    assert links == ["a-1", "a-2"]
    assert "ath-3" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_filters_by_athlete_and_rule_and_never_reach_another_care_team(store: Store) -> None:
    client = signed_in(store)
    assert re.findall(r'href="/inbox/alerts/([^"]+)"', client.get("/inbox?athlete=ath-2").text) == ["a-2"]
    by_rule = client.get("/inbox?rule=e2_low_with_fat_loss").text
    assert re.findall(r'href="/inbox/alerts/([^"]+)"', by_rule) == ["a-1"]
    assert re.findall(r'href="/inbox/alerts/([^"]+)"', client.get("/inbox?athlete=ath-3").text) == []


def test_another_care_teams_alert_is_refused_by_url(store: Store) -> None:
    client = signed_in(store)
    page = client.get("/inbox/alerts/b-1")
    assert page.status_code == 403 and SUMMARY not in page.text
    assert client.get("/inbox/alerts/b-1/chart.png").status_code == 403
    unknown = client.get("/inbox/alerts/nope")
    assert unknown.status_code == 403 and unknown.text == page.text  # an id's existence does not show
    csrf = csrf_of(client.get("/inbox").text)
    assert client.post("/inbox/alerts/b-1/acknowledge", data={"csrf": csrf, "note": "x"}).status_code == 403
    assert store.alert("b-1").acknowledged_at is None


def test_the_chart_is_a_png_even_without_influxdb(store: Store) -> None:
    response = signed_in(store).get("/inbox/alerts/a-1/chart.png")
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")


def test_acknowledging_needs_the_sessions_form_token(store: Store) -> None:
    client = signed_in(store)
    assert client.post("/inbox/alerts/a-1/acknowledge", data={"csrf": "guess", "note": "x"}).status_code == 403
    other = signed_in(store)  # another session's token is no good either
    stolen = csrf_of(other.get("/inbox").text)
    assert client.post("/inbox/alerts/a-1/acknowledge", data={"csrf": stolen}).status_code == 403
    assert store.alert("a-1").acknowledged_at is None


def test_acknowledging_records_who_when_and_the_note_and_stops_reminders(store: Store, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    store.log_delivery("a-1", "webhook:clin-1", 1, "delivered", 1)
    assert [a.alert_id for a, _ in store.due_for_renotification(-1)] == ["a-1"]
    client = signed_in(store)
    csrf = csrf_of(client.get("/inbox/alerts/a-1").text)
    done = client.post("/inbox/alerts/a-1/acknowledge", data={"csrf": csrf, "note": NOTE})
    assert done.status_code == 303 and done.headers["location"] == "/inbox?acknowledged=a-1"
    stored = store.alert("a-1")
    assert (stored.acknowledged_by, stored.acknowledgement_note) == ("clin-1", NOTE)
    assert stored.acknowledged_at is not None
    assert store.due_for_renotification(-1) == []
    history = client.get("/inbox?view=history").text
    assert re.findall(r'href="/inbox/alerts/([^"]+)"', history) == ["a-1"] and "by clin-1" in history
    assert NOTE in client.get("/inbox/alerts/a-1").text
    assert NOTE not in caplog.text and SUMMARY not in caplog.text and "pg/mL" not in caplog.text


def test_the_api_route_and_the_inbox_acknowledge_alike(store: Store) -> None:
    api = client_for(store)
    token = store.issue_token("clin-1")
    answer = api.post("/v1/alerts/a-2/acknowledge", json={"note": NOTE}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert (answer.json()["acknowledged_by"], answer.json()["acknowledgement_note"]) == ("clin-1", NOTE)
    # The first acknowledgement stands, whichever door the second comes through.
    client = signed_in(store)
    csrf = csrf_of(client.get("/inbox").text)
    client.post("/inbox/alerts/a-2/acknowledge", data={"csrf": csrf, "note": "later"})
    assert store.alert("a-2").acknowledgement_note == NOTE
    assert api.post("/v1/alerts/a-1/acknowledge", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert store.alert("a-1").acknowledgement_note is None


def test_sign_out_ends_the_session_on_the_server(store: Store) -> None:
    client = signed_in(store)
    cookie = client.cookies[SESSION_COOKIE]
    csrf = csrf_of(client.get("/inbox").text)
    assert client.post("/inbox/sign-out", data={"csrf": "wrong"}).status_code == 403
    out = client.post("/inbox/sign-out", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["location"] == "/inbox/sign-in"
    replay = client_for(store)
    replay.cookies.set(SESSION_COOKIE, cookie, domain="127.0.0.1", path="/inbox")
    assert replay.get("/inbox").headers["location"] == "/inbox/sign-in"


def test_a_session_ends_when_it_expires(store: Store) -> None:
    token = store.issue_token("clin-1")
    cookie, _ = store.open_session(token, lifetime_s=-1)
    assert store.session(cookie) is None
    live, _ = store.open_session(token, lifetime_s=60)
    assert store.session(live) is not None


def test_a_session_ends_with_its_token_or_its_users_clinician_role(store: Store) -> None:
    revoked = signed_in(store)
    assert revoked.get("/inbox").status_code == 200
    store.revoke_tokens("clin-1")
    assert revoked.get("/inbox").headers["location"] == "/inbox/sign-in"
    demoted = signed_in(store, "clin-2")
    store.add_user("clin-2", Role.COACH)
    assert demoted.get("/inbox").headers["location"] == "/inbox/sign-in"


def test_a_store_of_the_first_version_gains_the_note_column(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(  # the first release's tables (user_version 0)
        "CREATE TABLE users (user_id TEXT PRIMARY KEY, role TEXT NOT NULL, email TEXT, webhook_url TEXT,"
        " webhook_secret TEXT);"
        "CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users);"
        "CREATE TABLE care_team (athlete_id TEXT NOT NULL, member_id TEXT NOT NULL REFERENCES users,"
        " PRIMARY KEY (athlete_id, member_id));"
        "CREATE TABLE idempotency (scope TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, response TEXT);"
        "CREATE TABLE produced (event_id TEXT PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0, claimed_at REAL NOT NULL);"
        "CREATE TABLE alerts (alert_id TEXT PRIMARY KEY, athlete_id TEXT NOT NULL, body TEXT NOT NULL,"
        " received_at REAL NOT NULL, acknowledged_at REAL, acknowledged_by TEXT);")
    old.close()
    store = Store(path)
    store.record_alert(make_alert("a-9", "ath-9"))
    assert store.acknowledge("a-9", "clin-1", NOTE).acknowledgement_note == NOTE


items = st.builds(
    lambda index, athlete, severity, rule, days, acknowledged: InboxAlert(
        make_alert(f"a-{index}", athlete, severity, rule, days), 1000.0 + days if acknowledged else None,
        "clin-1" if acknowledged else None),
    st.integers(0, 10_000), st.sampled_from(["ath-1", "ath-2"]), st.sampled_from(sorted(SEVERITY_RANK)),
    st.sampled_from(["r1", "r2"]), st.floats(0, 400), st.booleans(),
)


@given(st.lists(items, max_size=30, unique_by=lambda i: i.alert.alert_id), st.sampled_from(["open", "history"]),
       st.sampled_from([None, "ath-1"]), st.sampled_from([None, "r2"]))
def test_a_view_holds_exactly_its_matching_alerts_in_triage_order(items, view, athlete, rule) -> None:
    chosen = select(items, Filters(view, athlete, rule))
    expected = {i.alert.alert_id for i in items if (i.acknowledged_at is None) == (view == "open")
                and athlete in (None, i.alert.athlete_id) and rule in (None, i.alert.rule)}
    assert sorted(i.alert.alert_id for i in chosen) == sorted(expected)
    if view == "open":
        keys = [(SEVERITY_RANK[i.alert.severity], -i.alert.time.timestamp()) for i in chosen]
    else:
        keys = [-i.acknowledged_at for i in chosen]
    assert keys == sorted(keys)


def test_an_updated_alert_shows_when_it_was_raised_and_updated(store: Store) -> None:
    first = make_alert("a-1", "ath-1", "urgent")
    store.record_alert(first.model_copy(update={
        "version": 2, "raised_at": first.time, "time": first.time + timedelta(days=3)}))
    client = signed_in(store)
    listed = client.get("/inbox").text
    assert "2026-04-30 00:00 UTC" in listed and "updated 2026-05-03 00:00 UTC" in listed
    assert "version 2" in client.get("/inbox/alerts/a-1").text
