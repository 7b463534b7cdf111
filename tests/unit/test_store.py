"""The store's behaviour, the same on both of its databases: every test runs on a SQLite file and on the local
stack's real PostgreSQL (tests/store_databases.py). Concurrency tests open one `Store` per simulated process, each
with its own connection pool, and race them from threads."""

from __future__ import annotations

import random
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from aromatrack.schemas.events import Alert, AlertEvidence
from typer.testing import CliRunner

from aromatrack.services.auth import Role, authenticate
from aromatrack.services.cli import app
from aromatrack.services.store import MIGRATIONS, Store, StoreError, metadata
from tests.store_databases import engine_for, store_url  # noqa: F401  (the fixture)

SECRET = "whsec_" + "A" * 43 + "="


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:  # noqa: F811
    opened = Store(store_url)
    yield opened
    opened.close()


def make_alert(alert_id: str, athlete_id: str = "ath-1", version: int = 1, days_ago: float = 1.0) -> Alert:
    return Alert(
        alert_id=alert_id, athlete_id=athlete_id, version=version, kind="dose_review",
        time=datetime(2026, 5, 1, tzinfo=timezone.utc) - timedelta(days=days_ago), rule="e2_low_with_fat_loss",
        severity="warning", summary="Estradiol fell below range while body fat fell.",
        evidence=[AlertEvidence(name="e2_pg_ml", value=14.0, unit="pg/mL", event_ids=["e1"])], sources=["seed-1"],
    )


def test_the_migrated_schema_is_the_one_the_queries_use(store: Store, store_url: str) -> None:  # noqa: F811
    assert store.schema_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine = engine_for(store_url)
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert differences == []


def test_opening_a_store_again_migrates_nothing_and_keeps_the_data(store: Store, store_url: str) -> None:  # noqa: F811
    token = store.add_user("ath-1", Role.ATHLETE)
    again = Store(store_url)
    assert authenticate(again, token).user_id == "ath-1"
    again.close()


def test_users_keep_contacts_not_given_and_a_role_change_ends_old_tokens(store: Store) -> None:
    old = store.add_user("clin-1", Role.CLINICIAN, email="a@clinic.example",
                         webhook_url="https://hooks.example/a", webhook_secret=SECRET)
    store.add_user("clin-1", Role.CLINICIAN, email="b@clinic.example")
    store.add_user("ath-1", Role.ATHLETE)
    store.assign("ath-1", "clin-1")
    (contact,) = store.clinicians_of("ath-1")
    assert (contact.email, contact.webhook_url, contact.webhook_secret) == (
        "b@clinic.example", "https://hooks.example/a", SECRET)
    assert authenticate(store, old) is not None
    store.add_user("clin-1", Role.COACH)
    assert authenticate(store, old) is None
    assert store.care_team_contacts("ath-1", Role.COACH)[0].user_id == "clin-1"


def test_a_bad_webhook_or_unknown_user_is_refused_and_nothing_is_written(store: Store) -> None:
    with pytest.raises(StoreError, match="webhook secret"):
        store.add_user("clin-1", Role.CLINICIAN, webhook_url="https://hooks.example/a", webhook_secret="nope")
    with pytest.raises(StoreError, match="unknown user"):
        store.issue_token("clin-1")
    with pytest.raises(StoreError, match="not a coach or clinician"):
        store.assign("ath-1", "nobody")


def test_tokens_rotate_revoke_by_id_and_go_with_their_user(store: Store) -> None:
    first = store.add_user("ath-1", Role.ATHLETE)
    second = store.issue_token("ath-1")
    assert store.revoke_tokens("ath-1", store.tokens_of("ath-1")[0].token_id) == 1
    assert authenticate(store, first) is None and authenticate(store, second) is not None
    third = store.rotate_token("ath-1")
    assert authenticate(store, second) is None and authenticate(store, third) is not None
    store.add_user("coach-1", Role.COACH)
    store.assign("ath-1", "coach-1")
    store.remove_user("coach-1")
    assert store.athletes_of("coach-1") == [] and store.tokens_of("coach-1") == []
    assert store.unassign("ath-1", "coach-1") is False


def test_times_keep_their_sub_second_precision(store: Store) -> None:
    # PostgreSQL's REAL is single precision: epoch seconds in it would be off by up to two minutes
    before = time.time()
    store.add_user("ath-1", Role.ATHLETE, token_days=1.0)
    (info,) = store.tokens_of("ath-1")
    assert before <= info.created_at <= time.time()
    assert abs(info.expires_at - info.created_at - 86400) < 1e-3


def test_an_idempotency_key_replays_its_answer_and_refuses_another_request(store: Store) -> None:
    assert store.idempotent_response('["ath-1", "k"]', "f1") is None
    store.remember_response('["ath-1", "k"]', "f1", {"accepted": ["e1"], "duplicates": []})
    assert store.idempotent_response('["ath-1", "k"]', "f1") == {"accepted": ["e1"], "duplicates": []}
    with pytest.raises(StoreError, match="different request"):
        store.idempotent_response('["ath-1", "k"]', "f2")


def test_text_with_a_nul_character_is_refused_alike_on_both_databases(store: Store) -> None:
    with pytest.raises(StoreError, match="NUL"):
        store.claim_events("ath-1", ["ok", "e\x001"])
    assert store.claim_events("ath-1", ["ok"]) == (["ok"], [], [])  # the refused batch claimed nothing


def test_claims_are_per_athlete_answered_in_the_callers_order_and_go_stale(store: Store) -> None:
    assert store.claim_events("ath-1", ["e3", "e1", "e2"]) == (["e3", "e1", "e2"], [], [])
    store.settle_events("ath-1", ["e1"], produced=True)
    store.settle_events("ath-1", ["e2"], produced=False)
    assert store.claim_events("ath-1", ["e3", "e2", "e1"]) == (["e2"], ["e3"], ["e1"])
    assert store.claim_events("ath-2", ["e1"]) == (["e1"], [], [])
    assert store.claim_events("ath-1", ["e3"], stale_after_s=0) == (["e3"], [], [])


def test_racing_processes_claim_each_event_exactly_once(store: Store, store_url: str) -> None:  # noqa: F811
    """Eight requests from two API processes, overlapping batches in random orders (a deadlock on row locks
    would raise here)."""
    other = Store(store_url)
    ids = [f"e{n}" for n in range(40)]
    batches = [random.Random(seed).sample(ids, 25) for seed in range(8)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: (store, other)[job[0] % 2].claim_events("ath-1", job[1]),
                                enumerate(batches)))
    other.close()
    claimed = [event_id for won, _, _ in answers for event_id in won]
    assert sorted(claimed) == sorted(set().union(*batches))
    for (won, in_flight, done), batch in zip(answers, batches):
        assert sorted(won + in_flight) == sorted(batch) and done == []


def test_racing_notifiers_claim_a_send_once_and_a_dead_ones_claim_is_taken_over(
        store: Store, store_url: str) -> None:  # noqa: F811
    other = Store(store_url)
    with ThreadPoolExecutor(6) as pool:
        claims = list(pool.map(lambda n: (store, other)[n % 2].claim_delivery("a-1", "webhook:clin-1", 1,
                                                                            stale_after_s=60), range(6)))
    assert sorted(claims) == ["busy"] * 5 + ["claimed"]
    store.log_delivery("a-1", "webhook:clin-1", 1, "delivered", 2)
    assert other.claim_delivery("a-1", "webhook:clin-1", 1, stale_after_s=0) == "settled"
    assert other.deliveries("a-1") == [("webhook:clin-1", 1, "delivered", 2)]
    assert store.claim_delivery("a-1", "email:clin-1", 1, stale_after_s=60) == "claimed"  # then the notifier died
    assert other.claim_delivery("a-1", "email:clin-1", 1, stale_after_s=0) == "claimed"
    other.close()


def test_an_alert_is_replaced_only_by_a_newer_version_and_keeps_its_acknowledgement(store: Store) -> None:
    assert store.record_alert(make_alert("a-1"))
    store.acknowledge("a-1", "clin-1", "seen")
    assert store.record_alert(make_alert("a-1", version=3))
    assert not store.record_alert(make_alert("a-1", version=2))
    kept = store.alert("a-1")
    assert kept.alert.version == 3 and (kept.acknowledged_by, kept.acknowledgement_note) == ("clin-1", "seen")
    assert store.acknowledge("a-1", "clin-2").acknowledged_by == "clin-1"
    assert store.acknowledge("nope", "clin-1") is None
    store.record_alert(make_alert("a-2"))
    assert [item.alert.alert_id for item in store.alerts_for("ath-1", open_only=True)] == ["a-2"]
    assert [item.alert.alert_id for item in store.alerts_for("ath-1")] == ["a-1", "a-2"]


def test_a_withdrawn_alert_leaves_the_open_alerts_and_reminders_until_a_newer_version_raises_it_again(
    store: Store,
) -> None:
    for alert_id in ("a-1", "a-2"):
        store.record_alert(make_alert(alert_id))
        store.log_delivery(alert_id, "webhook:clin-1", 1, "delivered", 1)
    assert store.withdraw("nope", "late lab") is None
    withdrawn = store.withdraw("a-1", "late lab")
    assert (withdrawn.withdrawal_reason, withdrawn.open) == ("late lab", False) and withdrawn.withdrawn_at
    assert store.withdraw("a-1", "again").withdrawal_reason == "late lab"  # the first withdrawal is kept
    assert [item.alert.alert_id for item in store.alerts_for("ath-1", open_only=True)] == ["a-2"]
    assert [alert.alert_id for alert, _ in store.due_for_renotification(older_than_s=-1)] == ["a-2"]
    assert not store.record_alert(make_alert("a-1"))  # a re-delivered old version does not revive it
    assert store.alert("a-1").withdrawn_at is not None
    assert store.record_alert(make_alert("a-1", version=2))  # raised again with new evidence: open again
    assert store.alert("a-1").open and store.alert("a-1").withdrawal_reason is None


def test_historical_alerts_are_due_once_settled_oldest_first_until_summarised(store: Store) -> None:
    for alert_id, days_ago in (("h-1", 3), ("h-2", 9), ("h-3", 1)):
        store.record_historical(make_alert(alert_id, days_ago=days_ago))
    assert store.historical_due(quiet_s=3600) == {}
    due = store.historical_due(quiet_s=0)
    assert [alert.alert_id for alert in due["ath-1"]] == ["h-2", "h-1", "h-3"]
    assert store.summarised(["h-1", "h-2"]) == set()
    store.mark_summarised(["h-1", "h-2", "h-3"])
    assert store.historical_due(quiet_s=0) == {} and store.summarised(["h-1", "x"]) == {"h-1"}


def test_withdrawn_historical_alerts_are_not_summarised_and_leave_no_empty_summary(store: Store) -> None:
    store.record_historical(make_alert("h-1"))
    store.record_historical(make_alert("h-2", athlete_id="ath-2"))
    store.record_historical(make_alert("h-3", athlete_id="ath-2"))
    store.withdraw("h-1", "late lab")
    store.withdraw("h-2", "late lab")
    due = store.historical_due(quiet_s=0)
    assert list(due) == ["ath-2"] and [alert.alert_id for alert in due["ath-2"]] == ["h-3"]


def test_reminders_are_due_for_unacknowledged_delivered_alerts_with_the_next_round(store: Store) -> None:
    for alert_id in ("a-1", "a-2", "a-3"):
        store.record_alert(make_alert(alert_id))
    store.log_delivery("a-1", "webhook:clin-1", 1, "delivered", 1)
    store.log_delivery("a-1", "webhook:clin-1", 2, "delivered", 1)
    store.log_delivery("a-2", "webhook:clin-1", 1, "delivered", 1)
    store.acknowledge("a-2", "clin-1")
    store.log_delivery("a-3", "webhook:clin-1", 1, "dead", 5)
    assert store.due_for_renotification(older_than_s=3600) == []
    assert [(alert.alert_id, round_) for alert, round_ in store.due_for_renotification(older_than_s=-1)] == [
        ("a-1", 3)]


def test_prune_drops_only_what_retention_no_longer_needs(store: Store) -> None:
    store.add_user("ath-1", Role.ATHLETE)
    store.remember_response("k", "f", {})
    store.claim_events("ath-1", ["done", "open"])
    store.settle_events("ath-1", ["done"], produced=True)
    store.revoke_tokens("ath-1")
    assert store.prune() == {"idempotency": 0, "produced": 0, "tokens": 0}
    assert store.prune(now=time.time() + 400 * 86400) == {"idempotency": 1, "produced": 1, "tokens": 1}
    assert store.claim_events("ath-1", ["open"]) == ([], ["open"], [])


def test_a_web_session_lives_until_it_expires_or_closes(store: Store) -> None:
    cookie, opened = store.open_session("at_token", lifetime_s=3600)
    assert store.session(cookie) == opened
    store.close_session(cookie)
    assert store.session(cookie) is None
    short, _ = store.open_session("at_token", lifetime_s=-1)
    assert store.session(short) is None


def test_an_unreachable_database_is_a_store_error_that_keeps_the_password_out(monkeypatch) -> None:
    hidden = r"cannot open the store at postgresql\+psycopg://aromatrack:\*\*\*@127.0.0.1:1/x"
    with pytest.raises(StoreError, match=hidden) as refused:
        Store("postgresql://aromatrack:s3cret-pw@127.0.0.1:1/x?connect_timeout=2")
    assert "s3cret-pw" not in str(refused.value)
    monkeypatch.setenv("AROMATRACK_STORE_DSN", "postgresql://aromatrack@127.0.0.1:1/x?connect_timeout=2")
    monkeypatch.setenv("AROMATRACK_STORE_PASSWORD", "s3cret-pw")
    result = CliRunner().invoke(app, ["users", "add", "ath-1", "--role", "athlete"])
    assert result.exit_code == 1 and "cannot open the store" in result.output and "s3cret-pw" not in result.output


# The last release before Alembic (PRAGMA user_version 5), as it created its tables.
VERSION_5_SCHEMA = """
CREATE TABLE users (user_id TEXT PRIMARY KEY, role TEXT NOT NULL, email TEXT, webhook_url TEXT, webhook_secret TEXT);
CREATE TABLE tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users, role TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL);
CREATE TABLE care_team (athlete_id TEXT NOT NULL, member_id TEXT NOT NULL REFERENCES users,
    PRIMARY KEY (athlete_id, member_id));
CREATE TABLE idempotency (scope TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, response TEXT, created_at REAL NOT NULL);
CREATE TABLE produced (athlete_id TEXT NOT NULL, event_id TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0,
    claimed_at REAL NOT NULL, PRIMARY KEY (athlete_id, event_id));
CREATE TABLE alerts (alert_id TEXT PRIMARY KEY, athlete_id TEXT NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL,
    acknowledged_at REAL, acknowledged_by TEXT, acknowledgement_note TEXT);
CREATE INDEX alerts_by_athlete ON alerts (athlete_id, received_at);
CREATE TABLE historical_alerts (alert_id TEXT PRIMARY KEY, athlete_id TEXT NOT NULL, received_at REAL NOT NULL,
    summarised_at REAL);
CREATE INDEX historical_unsummarised ON historical_alerts (summarised_at, athlete_id);
CREATE TABLE deliveries (alert_id TEXT NOT NULL, channel TEXT NOT NULL, round INTEGER NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (alert_id, channel, round));
CREATE TABLE web_sessions (session_hash TEXT PRIMARY KEY, token_hash TEXT NOT NULL, csrf_token TEXT NOT NULL,
    expires_at REAL NOT NULL);
PRAGMA user_version = 5;
"""


def test_a_version_5_sqlite_file_keeps_its_data_and_its_alerts_versions(tmp_path) -> None:
    path = tmp_path / "api.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(VERSION_5_SCHEMA)
    old.execute("INSERT INTO alerts VALUES (?, 'ath-1', ?, 1.0, 2.0, 'clin-1', 'seen')",
                ("a-1", make_alert("a-1", version=2).model_dump_json()))
    old.execute("INSERT INTO deliveries VALUES ('a-1', 'webhook:clin-1', 1, 'delivered', 1, 1.0)")
    old.commit()
    old.close()
    store = Store(path)
    assert store.schema_revision() == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert not store.record_alert(make_alert("a-1", version=2))  # the body's version 2 became the column's
    assert store.record_alert(make_alert("a-1", version=3))
    assert store.alert("a-1").acknowledgement_note == "seen"
    assert store.claim_delivery("a-1", "webhook:clin-1", 1, stale_after_s=0) == "settled"
    store.close()
