"""The API's and the notifier's small local store: users, hashed tokens, care teams, idempotency records,
the alert inbox with acknowledgements, the delivery log, and the web inbox's sign-in sessions.

SQLite in WAL mode under AROMATRACK_STATE_DIR, shared by the API and notifier processes on one host.
Production would use a real database server; the SQL here is plain enough to port.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from aromatrack.schemas.events import Alert
from aromatrack.services.auth import (DEFAULT_TOKEN_DAYS, Role, TokenRecord, hash_token, new_token,
                                      public_token_id)
from aromatrack.services.webhooks import WebhookSecretError, webhook_key, webhook_url_problem

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY, role TEXT NOT NULL,
    email TEXT, webhook_url TEXT, webhook_secret TEXT);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users, role TEXT NOT NULL,
    created_at REAL NOT NULL, expires_at REAL NOT NULL, revoked_at REAL);
CREATE TABLE IF NOT EXISTS care_team (
    athlete_id TEXT NOT NULL, member_id TEXT NOT NULL REFERENCES users, PRIMARY KEY (athlete_id, member_id));
CREATE TABLE IF NOT EXISTS idempotency (
    scope TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, response TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS produced (
    athlete_id TEXT NOT NULL, event_id TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0, claimed_at REAL NOT NULL,
    PRIMARY KEY (athlete_id, event_id));
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, athlete_id TEXT NOT NULL, body TEXT NOT NULL, received_at REAL NOT NULL,
    acknowledged_at REAL, acknowledged_by TEXT, acknowledgement_note TEXT);
CREATE INDEX IF NOT EXISTS alerts_by_athlete ON alerts (athlete_id, received_at);
CREATE TABLE IF NOT EXISTS historical_alerts (
    alert_id TEXT PRIMARY KEY, athlete_id TEXT NOT NULL, received_at REAL NOT NULL, summarised_at REAL);
CREATE INDEX IF NOT EXISTS historical_unsummarised ON historical_alerts (summarised_at, athlete_id);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL, channel TEXT NOT NULL, round INTEGER NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY (alert_id, channel, round));
CREATE TABLE IF NOT EXISTS web_sessions (
    session_hash TEXT PRIMARY KEY, token_hash TEXT NOT NULL, csrf_token TEXT NOT NULL, expires_at REAL NOT NULL);
"""
SCHEMA_VERSION = 5
# Steps that bring an existing store of an older version up to the next (`PRAGMA user_version` is the version;
# 0 is the unversioned first release). New tables need no step: SCHEMA creates them.
UPGRADES: dict[int, tuple[str, ...]] = {
    # Version 1 claimed event ids in one table for every athlete, so one athlete could claim another's id
    # (issue 15). Its claims cannot be attributed to athletes; the stream still drops repeats by event id.
    2: ("DROP TABLE IF EXISTS produced",),
    # Version 2's tokens never expired and survived a role change: they get the user's role now and the default
    # lifetime from the upgrade on.
    3: ("ALTER TABLE tokens ADD COLUMN role TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE tokens ADD COLUMN created_at REAL NOT NULL DEFAULT 0",
        "ALTER TABLE tokens ADD COLUMN expires_at REAL NOT NULL DEFAULT 0",
        "ALTER TABLE tokens ADD COLUMN revoked_at REAL",
        "UPDATE tokens SET role = coalesce((SELECT role FROM users WHERE users.user_id = tokens.user_id), ''),"
        " created_at = strftime('%s', 'now'),"
        f" expires_at = strftime('%s', 'now') + {DEFAULT_TOKEN_DAYS * 86400}"),
    # Idempotency records get an age, so retention can drop them (older ones go at the first prune).
    4: ("ALTER TABLE idempotency ADD COLUMN created_at REAL NOT NULL DEFAULT 0",),
    # Version 5 keeps the clinician's note with an acknowledgement.
    5: ("ALTER TABLE alerts ADD COLUMN acknowledgement_note TEXT",),
}
# How long what only serves retries is kept (`Store.prune`): an Idempotency-Key replays for a day, as is usual;
# an event id stays a duplicate for 90 days (the stream still drops a later repeat it remembers); a dead token
# is listed for 30 days after it expired or was revoked.
IDEMPOTENCY_DAYS, PRODUCED_DAYS, DEAD_TOKEN_DAYS = 1, 90, 30

# A request holds its claim only while it waits for Kafka (milliseconds; the producer times out long before this).
STALE_CLAIM_S = 120.0


@dataclass(frozen=True)
class Contact:
    """Where a clinician wants alerts: a signed webhook, an e-mail address, or both."""

    user_id: str
    email: str | None
    webhook_url: str | None
    webhook_secret: str | None


@dataclass(frozen=True)
class TokenInfo:
    """A token as `users tokens` lists it: never the token itself."""

    token_id: str
    created_at: float
    expires_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class InboxAlert:
    alert: Alert
    acknowledged_at: float | None
    acknowledged_by: str | None
    acknowledgement_note: str | None = None


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: the token it signed in with (by hash), the CSRF token its forms carry, when it ends."""

    token_hash: str
    csrf_token: str
    expires_at: float


class StoreError(ValueError):
    """A store operation refused on its inputs (unknown user, wrong role...)."""


class Store:
    def __init__(self, path: Path):
        # Users, secrets and alert evidence (PHI): readable by the service's user only. SQLite gives its -wal and
        # -shm files the database file's mode.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if existing.exists():
                existing.chmod(0o600)
        # Autocommit mode: every statement is its own transaction unless wrapped in `with self._db`.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._upgrade()

    def _upgrade(self) -> None:
        """Bring the store to SCHEMA_VERSION, in one transaction (the API and the notifier may start together)."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            fresh = self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'users'").fetchone() is None
            for step in range(version + 1, SCHEMA_VERSION + 1):
                for statement in () if fresh else UPGRADES.get(step, ()):
                    self._db.execute(statement)
            for statement in filter(str.strip, SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    # --- users and tokens -------------------------------------------------------------------------

    def add_user(
        self,
        user_id: str,
        role: Role,
        *,
        email: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        token_days: float = DEFAULT_TOKEN_DAYS,
    ) -> str:
        """Create (or update) a user and return a new API token; only its hash is kept.

        Contact fields not given keep their stored values (re-running `users add` without the secret does not
        clear it). A webhook needs a valid `whsec_` secret and an https URL (http only to loopback). Changing
        the role ends the tokens issued for the old one."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            stored = self._db.execute(
                "SELECT email, webhook_url, webhook_secret FROM users WHERE user_id = ?", (user_id,)
            ).fetchone() or (None, None, None)
            email, webhook_url, webhook_secret = (new if new is not None else old for new, old in zip(
                (email, webhook_url, webhook_secret), stored))
            if webhook_url is not None:
                if problem := webhook_url_problem(webhook_url):
                    raise StoreError(f"webhook URL: {problem}")
                try:
                    webhook_key(webhook_secret)
                except WebhookSecretError as exc:
                    raise StoreError(f"webhook secret: {exc}") from None
            self._db.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET role = excluded.role,"
                " email = excluded.email, webhook_url = excluded.webhook_url,"
                " webhook_secret = excluded.webhook_secret",
                (user_id, Role(role).value, email, webhook_url, webhook_secret),
            )
        return self.issue_token(user_id, days=token_days)

    def issue_token(self, user_id: str, *, days: float = DEFAULT_TOKEN_DAYS) -> str:
        """A new token for the user's current role, valid for `days`."""
        role = self._role_of(user_id)
        if role is None:
            raise StoreError(f"unknown user {user_id!r}")
        token, now = new_token(), time.time()
        self._db.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, NULL)",
                         (hash_token(token), user_id, role.value, now, now + days * 86400))
        return token

    def token_record(self, token_hash: str) -> TokenRecord | None:
        """For `auth.authenticate`, the one place tokens are checked."""
        row = self._db.execute(
            "SELECT users.user_id, users.role, tokens.role, expires_at, revoked_at FROM tokens JOIN users"
            " USING (user_id) WHERE token_hash = ?", (token_hash,),
        ).fetchone()
        if row is None:
            return None
        user_id, role, issued_role, expires_at, revoked_at = row
        issued = Role(issued_role) if issued_role in Role.__members__.values() else None
        return TokenRecord(public_token_id(token_hash), user_id, Role(role), issued, expires_at, revoked_at)

    def tokens_of(self, user_id: str) -> list[TokenInfo]:
        rows = self._db.execute(
            "SELECT token_hash, created_at, expires_at, revoked_at FROM tokens WHERE user_id = ? ORDER BY created_at",
            (user_id,),
        ).fetchall()
        return [TokenInfo(public_token_id(token_hash), *times) for token_hash, *times in rows]

    def revoke_tokens(self, user_id: str, token_id: str | None = None) -> int:
        """Revoke one of the user's tokens (by its id) or all of them; returns how many were still live."""
        query = "UPDATE tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL"
        params: tuple = (time.time(), user_id)
        if token_id is not None:
            query += " AND substr(token_hash, 1, 12) = ?"
            params += (token_id,)
        return self._db.execute(query, params).rowcount

    def rotate_token(self, user_id: str, *, days: float = DEFAULT_TOKEN_DAYS) -> str:
        """A new token for the user, every older one revoked in the same transaction."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self.revoke_tokens(user_id)
            return self.issue_token(user_id, days=days)

    def remove_user(self, user_id: str) -> None:
        """Remove a user, their tokens and care-team places (as member or athlete); alerts stay on record."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if self._role_of(user_id) is None:
                raise StoreError(f"unknown user {user_id!r}")
            self._db.execute("DELETE FROM tokens WHERE user_id = ?", (user_id,))
            self._db.execute("DELETE FROM care_team WHERE member_id = ? OR athlete_id = ?", (user_id, user_id))
            self._db.execute("DELETE FROM users WHERE user_id = ?", (user_id,))

    def _role_of(self, user_id: str) -> Role | None:
        row = self._db.execute("SELECT role FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return Role(row[0]) if row else None

    def assign(self, athlete_id: str, member_id: str) -> None:
        """Put a coach or clinician on an athlete's care team."""
        if self._role_of(member_id) not in (Role.COACH, Role.CLINICIAN):
            raise StoreError(f"{member_id!r} is not a coach or clinician user")
        self._db.execute("INSERT OR IGNORE INTO care_team VALUES (?, ?)", (athlete_id, member_id))

    def unassign(self, athlete_id: str, member_id: str) -> bool:
        """Take a coach or clinician off an athlete's care team; False if they were not on it."""
        return self._db.execute(
            "DELETE FROM care_team WHERE athlete_id = ? AND member_id = ?", (athlete_id, member_id)
        ).rowcount == 1

    def on_care_team(self, athlete_id: str, member_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM care_team WHERE athlete_id = ? AND member_id = ?", (athlete_id, member_id)
        ).fetchone()
        return row is not None

    def athletes_of(self, member_id: str) -> list[str]:
        """The athletes whose care team `member_id` is on."""
        rows = self._db.execute(
            "SELECT athlete_id FROM care_team WHERE member_id = ? ORDER BY athlete_id", (member_id,)
        ).fetchall()
        return [athlete_id for (athlete_id,) in rows]

    def clinicians_of(self, athlete_id: str) -> list[Contact]:
        return self.care_team_contacts(athlete_id, Role.CLINICIAN)

    def care_team_contacts(self, athlete_id: str, role: Role) -> list[Contact]:
        """Where the athlete's care-team members of `role` want alerts."""
        rows = self._db.execute(
            "SELECT user_id, email, webhook_url, webhook_secret FROM care_team JOIN users ON member_id = user_id"
            " WHERE athlete_id = ? AND role = ? ORDER BY user_id",
            (athlete_id, role.value),
        ).fetchall()
        return [Contact(*row) for row in rows]

    # --- idempotent intake ------------------------------------------------------------------------

    def idempotent_response(self, scope: str, fingerprint: str) -> dict | None:
        """The stored answer for a retried request, None for a new one; StoreError if the key was reused
        for a different request."""
        row = self._db.execute("SELECT fingerprint, response FROM idempotency WHERE scope = ?", (scope,)).fetchone()
        if row is None:
            return None
        if row[0] != fingerprint:
            raise StoreError("Idempotency-Key was already used for a different request")
        return json.loads(row[1]) if row[1] else None

    def remember_response(self, scope: str, fingerprint: str, response: dict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?)",
            (scope, fingerprint, json.dumps(response), time.time()),
        )

    def claim_events(
        self, athlete_id: str, event_ids: Iterable[str], *, stale_after_s: float = STALE_CLAIM_S
    ) -> tuple[list[str], list[str], list[str]]:
        """Claim an athlete's event ids for producing; returns (claimed, in flight elsewhere, already produced).

        Ids are the athlete's own: clients may choose them, so an id another athlete used is not a duplicate,
        and the answer says nothing about other athletes' events. The claim is one transaction, so two concurrent retries of the same event cannot both produce it.
        A claim left by a process that died mid-request goes stale and can be claimed again (the stream
        deduplicates by event_id, so a rare second copy on Kafka is harmless; a lost event is not).
        """
        claimed, in_flight, produced = [], [], []
        now = time.time()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for event_id in event_ids:
                cursor = self._db.execute(
                    "INSERT INTO produced (athlete_id, event_id, claimed_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (athlete_id, event_id) DO UPDATE"
                    " SET claimed_at = excluded.claimed_at WHERE done = 0 AND claimed_at < ?",
                    (athlete_id, event_id, now, now - stale_after_s),
                )
                if cursor.rowcount == 1:
                    claimed.append(event_id)
                    continue
                (done,) = self._db.execute(
                    "SELECT done FROM produced WHERE athlete_id = ? AND event_id = ?", (athlete_id, event_id)
                ).fetchone()
                (produced if done else in_flight).append(event_id)
        return claimed, in_flight, produced

    def settle_events(self, athlete_id: str, event_ids: list[str], *, produced: bool) -> None:
        """Mark an athlete's claimed events as produced, or release the claims so a retry can produce them."""
        marks = [(athlete_id, eid) for eid in event_ids]
        if produced:
            self._db.executemany("UPDATE produced SET done = 1 WHERE athlete_id = ? AND event_id = ?", marks)
        else:
            self._db.executemany("DELETE FROM produced WHERE athlete_id = ? AND event_id = ? AND done = 0", marks)

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Delete idempotency records, produced ids and dead tokens past their retention; counts by table."""
        now = time.time() if now is None else now
        day = 86400
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return {
                "idempotency": self._db.execute("DELETE FROM idempotency WHERE created_at < ?",
                                                (now - IDEMPOTENCY_DAYS * day,)).rowcount,
                "produced": self._db.execute("DELETE FROM produced WHERE done = 1 AND claimed_at < ?",
                                             (now - PRODUCED_DAYS * day,)).rowcount,
                "tokens": self._db.execute("DELETE FROM tokens WHERE min(expires_at, coalesce(revoked_at, expires_at))"
                                           " < ?", (now - DEAD_TOKEN_DAYS * day,)).rowcount,
            }

    # --- alert inbox ------------------------------------------------------------------------------

    def record_alert(self, alert: Alert) -> bool:
        """Put an alert in the inbox, or a newer version of it over the one there (an update keeps its
        acknowledgement and delivery log); False if this version or a newer one was there already."""
        cursor = self._db.execute(
            "INSERT INTO alerts (alert_id, athlete_id, body, received_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (alert_id) DO UPDATE SET body = excluded.body"
            " WHERE coalesce(json_extract(alerts.body, '$.version'), 1) < json_extract(excluded.body, '$.version')",
            (alert.alert_id, alert.athlete_id, alert.model_dump_json(), time.time()),
        )
        return cursor.rowcount == 1

    def record_historical(self, alert: Alert) -> None:
        """An alert raised on imported history: in the inbox like any other, and queued for the athlete's
        summary (an update of one already queued or summarised only updates the inbox)."""
        with self._db:
            self.record_alert(alert)
            self._db.execute(
                "INSERT OR IGNORE INTO historical_alerts (alert_id, athlete_id, received_at) VALUES (?, ?, ?)",
                (alert.alert_id, alert.athlete_id, time.time()),
            )

    def historical_due(self, quiet_s: float) -> dict[str, list[Alert]]:
        """Per athlete, the historical alerts not summarised yet, once none has arrived for `quiet_s` (the import
        has settled), oldest first."""
        athletes = [row[0] for row in self._db.execute(
            "SELECT athlete_id FROM historical_alerts WHERE summarised_at IS NULL GROUP BY athlete_id"
            " HAVING max(received_at) < ?", (time.time() - quiet_s,),
        ).fetchall()]
        due = {}
        for athlete_id in athletes:
            rows = self._db.execute(
                "SELECT a.body FROM historical_alerts h JOIN alerts a USING (alert_id)"
                " WHERE h.athlete_id = ? AND h.summarised_at IS NULL ORDER BY json_extract(a.body, '$.time')",
                (athlete_id,),
            ).fetchall()
            due[athlete_id] = [Alert.model_validate_json(body) for (body,) in rows]
        return due

    def summarised(self, alert_ids: Iterable[str]) -> set[str]:
        """Those of `alert_ids` that a delivered import summary covered."""
        ids = list(alert_ids)
        rows = self._db.execute(
            f"SELECT alert_id FROM historical_alerts WHERE summarised_at IS NOT NULL AND alert_id IN "
            f"({','.join('?' * len(ids))})", ids,
        ).fetchall() if ids else []
        return {row[0] for row in rows}

    def mark_summarised(self, alert_ids: Iterable[str]) -> None:
        self._db.executemany(
            "UPDATE historical_alerts SET summarised_at = ? WHERE alert_id = ?",
            [(time.time(), alert_id) for alert_id in alert_ids],
        )

    def alerts_for(self, athlete_id: str, *, open_only: bool = False) -> list[InboxAlert]:
        query = f"SELECT {INBOX_COLUMNS} FROM alerts WHERE athlete_id = ?"
        if open_only:
            query += " AND acknowledged_at IS NULL"
        rows = self._db.execute(query + " ORDER BY received_at", (athlete_id,)).fetchall()
        return [_inbox_alert(row) for row in rows]

    def alert(self, alert_id: str) -> InboxAlert | None:
        row = self._db.execute(f"SELECT {INBOX_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return _inbox_alert(row) if row else None

    def acknowledge(self, alert_id: str, user_id: str, note: str | None = None) -> InboxAlert | None:
        """Record the first acknowledgement (later ones keep the original); None for an unknown alert."""
        self._db.execute(
            "UPDATE alerts SET acknowledged_at = ?, acknowledged_by = ?, acknowledgement_note = ?"
            " WHERE alert_id = ? AND acknowledged_at IS NULL",
            (time.time(), user_id, note, alert_id),
        )
        return self.alert(alert_id)

    # --- delivery log -----------------------------------------------------------------------------

    def delivery_status(self, alert_id: str, channel: str, round_: int) -> str | None:
        row = self._db.execute(
            "SELECT status FROM deliveries WHERE alert_id = ? AND channel = ? AND round = ?",
            (alert_id, channel, round_),
        ).fetchone()
        return row[0] if row else None

    def log_delivery(self, alert_id: str, channel: str, round_: int, status: str, attempts: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
            (alert_id, channel, round_, status, attempts, time.time()),
        )

    def deliveries(self, alert_id: str) -> list[tuple[str, int, str, int]]:
        """(channel, round, status, attempts) rows, oldest first."""
        return self._db.execute(
            "SELECT channel, round, status, attempts FROM deliveries WHERE alert_id = ? ORDER BY round, channel",
            (alert_id,),
        ).fetchall()

    def due_for_renotification(self, older_than_s: float) -> list[tuple[Alert, int]]:
        """Unacknowledged alerts whose latest delivery round is older than `older_than_s`, with the next round."""
        rows = self._db.execute(
            "SELECT a.body, max(d.round), max(d.at) FROM alerts a JOIN deliveries d USING (alert_id)"
            " WHERE a.acknowledged_at IS NULL AND d.status = 'delivered' GROUP BY a.alert_id"
            " HAVING max(d.at) < ?",
            (time.time() - older_than_s,),
        ).fetchall()
        return [(Alert.model_validate_json(body), last_round + 1) for body, last_round, _ in rows]

    # --- web inbox sessions -----------------------------------------------------------------------

    def open_session(self, token: str, lifetime_s: float) -> tuple[str, WebSession]:
        """A new browser session for a verified token: (the cookie value, shown once; the session).

        Only hashes of the cookie value and the token are stored. Who the session is, is asked of the token
        each time (`auth.authenticate_hash`), so revoking or expiring the token ends its sessions too.
        """
        now = time.time()
        self._db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
        cookie, session = new_token(), WebSession(hash_token(token), secrets.token_urlsafe(32), now + lifetime_s)
        self._db.execute(
            "INSERT INTO web_sessions VALUES (?, ?, ?, ?)",
            (hash_token(cookie), session.token_hash, session.csrf_token, session.expires_at),
        )
        return cookie, session

    def session(self, cookie: str) -> WebSession | None:
        """The unexpired session of a cookie value, or None."""
        row = self._db.execute(
            "SELECT token_hash, csrf_token, expires_at FROM web_sessions WHERE session_hash = ? AND expires_at > ?",
            (hash_token(cookie), time.time()),
        ).fetchone()
        return WebSession(*row) if row else None

    def close_session(self, cookie: str) -> None:
        self._db.execute("DELETE FROM web_sessions WHERE session_hash = ?", (hash_token(cookie),))


INBOX_COLUMNS = "body, acknowledged_at, acknowledged_by, acknowledgement_note"


def _inbox_alert(row: tuple) -> InboxAlert:
    return InboxAlert(Alert.model_validate_json(row[0]), *row[1:])
