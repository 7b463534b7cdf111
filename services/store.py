"""The API's and the notifier's store: users, hashed tokens, care teams, idempotency records, produced event
ids, the alert inbox with acknowledgements, the delivery log, and the web inbox's sign-in sessions.

One code path (SQLAlchemy 2 Core) over two databases: PostgreSQL in production, where several API processes and
the notifier share it across hosts, and a SQLite file in WAL mode under AROMATRACK_STATE_DIR as the embedded
default for one machine. The schema is versioned by Alembic (services/migrations/); opening a store brings it to
the latest version, a pre-Alembic SQLite file included. `Store` is synchronous (the CLI, the demo, tests);
`AsyncStore` is its face for async code.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects import postgresql, sqlite

from aromatrack.schemas.events import Alert
from aromatrack.services.auth import (DEFAULT_TOKEN_DAYS, Role, TokenRecord, hash_token, new_token,
                                      public_token_id)
from aromatrack.services.webhooks import WebhookSecretError, webhook_key, webhook_url_problem

MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed number: the PostgreSQL advisory lock held while one process migrates (API and notifier start together).
MIGRATION_LOCK = 0x41524F4D

# How long what only serves retries is kept (`Store.prune`): an Idempotency-Key replays for a day, as is usual;
# an event id stays a duplicate for 90 days (the stream still drops a later repeat it remembers); a dead token
# is listed for 30 days after it expired or was revoked.
IDEMPOTENCY_DAYS, PRODUCED_DAYS, DEAD_TOKEN_DAYS = 1, 90, 30

# A request holds its claim only while it waits for Kafka (milliseconds; the producer times out long before this).
STALE_CLAIM_S = 120.0

# The tables as the queries see them; services/migrations/ creates and changes them (a test checks they agree).
metadata = sa.MetaData()
TEXT, TIME = sa.Text(), sa.Float()
users = sa.Table("users", metadata, sa.Column("user_id", TEXT, primary_key=True),
                 sa.Column("role", TEXT, nullable=False), sa.Column("email", TEXT), sa.Column("webhook_url", TEXT),
                 sa.Column("webhook_secret", TEXT))
tokens = sa.Table("tokens", metadata, sa.Column("token_hash", TEXT, primary_key=True),
                  sa.Column("user_id", TEXT, sa.ForeignKey("users.user_id"), nullable=False),
                  sa.Column("role", TEXT, nullable=False), sa.Column("created_at", TIME, nullable=False),
                  sa.Column("expires_at", TIME, nullable=False), sa.Column("revoked_at", TIME))
care_team = sa.Table("care_team", metadata, sa.Column("athlete_id", TEXT, primary_key=True),
                     sa.Column("member_id", TEXT, sa.ForeignKey("users.user_id"), primary_key=True))
idempotency = sa.Table("idempotency", metadata, sa.Column("scope", TEXT, primary_key=True),
                       sa.Column("fingerprint", TEXT, nullable=False), sa.Column("response", TEXT),
                       sa.Column("created_at", TIME, nullable=False))
produced_events = sa.Table("produced", metadata, sa.Column("athlete_id", TEXT, primary_key=True),
                           sa.Column("event_id", TEXT, primary_key=True),
                           sa.Column("done", sa.Integer(), nullable=False, server_default="0"),
                           sa.Column("claimed_at", TIME, nullable=False))
alerts = sa.Table("alerts", metadata, sa.Column("alert_id", TEXT, primary_key=True),
                  sa.Column("athlete_id", TEXT, nullable=False), sa.Column("body", TEXT, nullable=False),
                  sa.Column("received_at", TIME, nullable=False), sa.Column("acknowledged_at", TIME),
                  sa.Column("acknowledged_by", TEXT), sa.Column("acknowledgement_note", TEXT),
                  sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
                  sa.Column("withdrawn_at", TIME), sa.Column("withdrawal_reason", TEXT),
                  sa.Index("alerts_by_athlete", "athlete_id", "received_at"))
historical_alerts = sa.Table("historical_alerts", metadata, sa.Column("alert_id", TEXT, primary_key=True),
                             sa.Column("athlete_id", TEXT, nullable=False),
                             sa.Column("received_at", TIME, nullable=False), sa.Column("summarised_at", TIME),
                             sa.Index("historical_unsummarised", "summarised_at", "athlete_id"))
deliveries = sa.Table("deliveries", metadata, sa.Column("alert_id", TEXT, primary_key=True),
                      sa.Column("channel", TEXT, primary_key=True), sa.Column("round", sa.Integer(), primary_key=True),
                      sa.Column("status", TEXT, nullable=False), sa.Column("attempts", sa.Integer(), nullable=False),
                      sa.Column("at", TIME, nullable=False))
web_sessions = sa.Table("web_sessions", metadata, sa.Column("session_hash", TEXT, primary_key=True),
                        sa.Column("token_hash", TEXT, nullable=False), sa.Column("csrf_token", TEXT, nullable=False),
                        sa.Column("expires_at", TIME, nullable=False))

# The requests' statements, built once: building a statement costs SQLAlchemy more than running it (an API
# request's store calls took 3x the CPU when each built its own). Parameters bind by name.
_p = sa.bindparam
TOKEN_RECORD = (sa.select(users.c.user_id, users.c.role, tokens.c.role, tokens.c.expires_at, tokens.c.revoked_at)
                .join_from(tokens, users, tokens.c.user_id == users.c.user_id)
                .where(tokens.c.token_hash == _p("token_hash")))
ON_CARE_TEAM = sa.select(1).where((care_team.c.athlete_id == _p("athlete_id"))
                                  & (care_team.c.member_id == _p("member_id")))
CARE_TEAM_CONTACTS = (sa.select(users.c.user_id, users.c.email, users.c.webhook_url, users.c.webhook_secret)
                      .join_from(care_team, users, care_team.c.member_id == users.c.user_id)
                      .where((care_team.c.athlete_id == _p("athlete_id")) & (users.c.role == _p("role")))
                      .order_by(users.c.user_id))
IDEMPOTENT_RESPONSE = (sa.select(idempotency.c.fingerprint, idempotency.c.response)
                       .where(idempotency.c.scope == _p("scope")))
# (In an UPDATE, a column's own name is reserved for its new value: the conditions bind other names.)
_MY_EVENTS = ((produced_events.c.athlete_id == _p("owner"))
              & produced_events.c.event_id.in_(_p("event_ids", expanding=True)))
CLAIM_STATES = sa.select(produced_events.c.event_id, produced_events.c.done).where(_MY_EVENTS)
MARK_PRODUCED = produced_events.update().where(_MY_EVENTS).values(done=1)
RELEASE_CLAIMS = produced_events.delete().where(_MY_EVENTS & (produced_events.c.done == 0))
INBOX_COLUMNS = (alerts.c.body, alerts.c.acknowledged_at, alerts.c.acknowledged_by, alerts.c.acknowledgement_note,
                 alerts.c.withdrawn_at, alerts.c.withdrawal_reason)
ALERT = sa.select(*INBOX_COLUMNS).where(alerts.c.alert_id == _p("alert_id"))
ACKNOWLEDGE = (alerts.update().where((alerts.c.alert_id == _p("which")) & alerts.c.acknowledged_at.is_(None))
               .values(acknowledged_at=_p("at"), acknowledged_by=_p("user_id"), acknowledgement_note=_p("note")))
DELIVERY_STATUS = sa.select(deliveries.c.status).where(
    (deliveries.c.alert_id == _p("alert_id")) & (deliveries.c.channel == _p("channel"))
    & (deliveries.c.round == _p("round")))
SESSION = (sa.select(web_sessions.c.token_hash, web_sessions.c.csrf_token, web_sessions.c.expires_at)
           .where((web_sessions.c.session_hash == _p("session_hash")) & (web_sessions.c.expires_at > _p("now"))))


@dataclass(frozen=True)
class Upserts:
    """The insert-or-update statements, in the database's own `INSERT ... ON CONFLICT` (the same SQL on both,
    built by each dialect's `insert`). Executed with a row's values by column name."""

    remember_response: sa.Insert
    claim_event: sa.Insert  # also binds stale_before; returns the event id when claimed
    record_alert: sa.Insert  # returns the alert id when stored
    queue_historical: sa.Insert
    claim_delivery: sa.Insert  # also binds stale_before; returns the alert id when claimed
    log_delivery: sa.Insert

    @staticmethod
    def of(dialect: str) -> "Upserts":
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert

        def upsert(table: sa.Table, keys: list[sa.Column], updated: list[str],
                   where: Callable[[Any], sa.ColumnElement[bool]] | None = None) -> sa.Insert:
            """`where(excluded)`: the condition on the stored row and the proposed one (`excluded`) to update."""
            statement = insert(table)
            return statement.on_conflict_do_update(
                index_elements=keys, set_={name: statement.excluded[name] for name in updated},
                where=where(statement.excluded) if where else None)

        stale = _p("stale_before")
        claim = upsert(produced_events, [produced_events.c.athlete_id, produced_events.c.event_id], ["claimed_at"],
                       lambda _: (produced_events.c.done == 0) & (produced_events.c.claimed_at < stale))
        # A newer version is the alert raised again: it clears a withdrawal of an older one.
        record = upsert(alerts, [alerts.c.alert_id], ["body", "version", "withdrawn_at", "withdrawal_reason"],
                        lambda excluded: alerts.c.version < excluded.version)
        delivery_key = [deliveries.c.alert_id, deliveries.c.channel, deliveries.c.round]
        return Upserts(
            remember_response=upsert(idempotency, [idempotency.c.scope], ["fingerprint", "response", "created_at"]),
            claim_event=claim.returning(produced_events.c.event_id),
            record_alert=record.returning(alerts.c.alert_id),
            queue_historical=insert(historical_alerts).on_conflict_do_nothing(),
            claim_delivery=upsert(deliveries, delivery_key, ["at"], lambda _: (deliveries.c.status == "sending")
                                  & (deliveries.c.at < stale)).returning(deliveries.c.alert_id),
            log_delivery=upsert(deliveries, delivery_key, ["status", "attempts", "at"]),
        )


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
    withdrawn_at: float | None = None  # the stream withdrew it: the whole history no longer supports it
    withdrawal_reason: str | None = None

    @property
    def open(self) -> bool:
        """Awaiting the clinician: neither acknowledged nor withdrawn."""
        return self.acknowledged_at is None and self.withdrawn_at is None


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: the token it signed in with (by hash), the CSRF token its forms carry, when it ends."""

    token_hash: str
    csrf_token: str
    expires_at: float


DeliveryClaim = Literal["claimed", "settled", "busy"]
# What a store call raises when the database, not the request, is at fault (down, restarting, unreachable, SQLite's
# write lock not had in 10 s): the API answers 503, so clients retry.
UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)


class StoreError(ValueError):
    """A store operation refused on its inputs (unknown user, wrong role...)."""


class Store:
    """The store on one database, named by a SQLAlchemy URL (`postgresql+psycopg://...`, `sqlite:///path`) or by
    the path of a SQLite file. Thread-safe: every method takes a pooled connection for one transaction. Errors
    never carry the statements' parameters (tokens' hashes, secrets, alert evidence)."""

    def __init__(self, target: str | Path):
        url = sa.make_url(f"sqlite:///{target}" if isinstance(target, Path) else target)
        self.dialect = url.get_backend_name()
        # Two pools: writers in transactions, readers in autocommit (each read is one statement or needs no
        # snapshot, and BEGIN and COMMIT around it cost more than the read).
        if self.dialect == "sqlite":
            self._engine, self._reader = _sqlite_engine(url, writes=True), _sqlite_engine(url, writes=False)
        elif self.dialect == "postgresql":
            # pre-ping: a pooled connection that a database restart closed is replaced, not handed out
            url = url.set(drivername="postgresql+psycopg")
            self._engine = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
            self._reader = sa.create_engine(url, pool_pre_ping=True, hide_parameters=True,
                                            isolation_level="AUTOCOMMIT")
        else:
            raise StoreError(f"the store runs on PostgreSQL or SQLite, not {self.dialect!r}")
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._upserts = Upserts.of(self.dialect)
        for engine in (self._engine, self._reader):
            sa.event.listen(engine, "before_cursor_execute", _refuse_nul)
        try:
            self._migrate()
        except sa.exc.OperationalError as exc:
            self.close()
            raise StoreError(f"cannot open the store at {url.render_as_string(hide_password=True)}: "
                             f"{str(exc.orig).strip().splitlines()[0]}") from None

    def _migrate(self) -> None:
        """Bring the schema to Alembic's head, in one transaction that holds the migration lock (SQLite: the
        write lock), so an API and a notifier that start together do not both migrate."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        with self._read() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def close(self) -> None:
        self._engine.dispose()
        self._reader.dispose()

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A transaction that writes (SQLite: it takes the write lock at once, so two writers never deadlock
        upgrading their read locks)."""
        with self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._reader.connect() as conn:
            yield conn

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
        with self._write() as conn:
            stored = conn.execute(
                sa.select(users.c.email, users.c.webhook_url, users.c.webhook_secret)
                .where(users.c.user_id == user_id).with_for_update()
            ).first() or (None, None, None)
            email, webhook_url, webhook_secret = (new if new is not None else old for new, old in zip(
                (email, webhook_url, webhook_secret), stored))
            if webhook_url is not None:
                if problem := webhook_url_problem(webhook_url):
                    raise StoreError(f"webhook URL: {problem}")
                try:
                    webhook_key(webhook_secret)
                except WebhookSecretError as exc:
                    raise StoreError(f"webhook secret: {exc}") from None
            row = dict(user_id=user_id, role=Role(role).value, email=email, webhook_url=webhook_url,
                       webhook_secret=webhook_secret)
            insert = self._insert(users).values(row)
            conn.execute(insert.on_conflict_do_update(
                index_elements=[users.c.user_id],
                set_={name: insert.excluded[name] for name in row if name != "user_id"}))
            return self._issue_token(conn, user_id, token_days)

    def issue_token(self, user_id: str, *, days: float = DEFAULT_TOKEN_DAYS) -> str:
        """A new token for the user's current role, valid for `days`."""
        with self._write() as conn:
            return self._issue_token(conn, user_id, days)

    def _issue_token(self, conn: sa.Connection, user_id: str, days: float) -> str:
        role = _role_of(conn, user_id)
        if role is None:
            raise StoreError(f"unknown user {user_id!r}")
        token, now = new_token(), time.time()
        conn.execute(tokens.insert().values(token_hash=hash_token(token), user_id=user_id, role=role.value,
                                            created_at=now, expires_at=now + days * 86400))
        return token

    def token_record(self, token_hash: str) -> TokenRecord | None:
        """For `auth.authenticate`, the one place tokens are checked."""
        with self._read() as conn:
            row = conn.execute(TOKEN_RECORD, {"token_hash": token_hash}).first()
        if row is None:
            return None
        user_id, role, issued_role, expires_at, revoked_at = row
        issued = Role(issued_role) if issued_role in Role.__members__.values() else None
        return TokenRecord(public_token_id(token_hash), user_id, Role(role), issued, expires_at, revoked_at)

    def tokens_of(self, user_id: str) -> list[TokenInfo]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(tokens.c.token_hash, tokens.c.created_at, tokens.c.expires_at, tokens.c.revoked_at)
                .where(tokens.c.user_id == user_id).order_by(tokens.c.created_at)
            ).all()
        return [TokenInfo(public_token_id(token_hash), *times) for token_hash, *times in rows]

    def revoke_tokens(self, user_id: str, token_id: str | None = None) -> int:
        """Revoke one of the user's tokens (by its id) or all of them; returns how many were still live."""
        with self._write() as conn:
            return _revoke(conn, user_id, token_id)

    def rotate_token(self, user_id: str, *, days: float = DEFAULT_TOKEN_DAYS) -> str:
        """A new token for the user, every older one revoked in the same transaction."""
        with self._write() as conn:
            _revoke(conn, user_id, None)
            return self._issue_token(conn, user_id, days)

    def remove_user(self, user_id: str) -> None:
        """Remove a user, their tokens and care-team places (as member or athlete); alerts stay on record."""
        with self._write() as conn:
            if _role_of(conn, user_id) is None:
                raise StoreError(f"unknown user {user_id!r}")
            conn.execute(tokens.delete().where(tokens.c.user_id == user_id))
            conn.execute(care_team.delete().where(
                (care_team.c.member_id == user_id) | (care_team.c.athlete_id == user_id)))
            conn.execute(users.delete().where(users.c.user_id == user_id))

    def assign(self, athlete_id: str, member_id: str) -> None:
        """Put a coach or clinician on an athlete's care team."""
        with self._write() as conn:
            if _role_of(conn, member_id) not in (Role.COACH, Role.CLINICIAN):
                raise StoreError(f"{member_id!r} is not a coach or clinician user")
            conn.execute(self._insert(care_team).values(athlete_id=athlete_id, member_id=member_id)
                         .on_conflict_do_nothing())

    def unassign(self, athlete_id: str, member_id: str) -> bool:
        """Take a coach or clinician off an athlete's care team; False if they were not on it."""
        with self._write() as conn:
            return conn.execute(care_team.delete().where(
                (care_team.c.athlete_id == athlete_id) & (care_team.c.member_id == member_id))).rowcount == 1

    def on_care_team(self, athlete_id: str, member_id: str) -> bool:
        with self._read() as conn:
            return conn.execute(ON_CARE_TEAM, {"athlete_id": athlete_id, "member_id": member_id}).first() is not None

    def athletes_of(self, member_id: str) -> list[str]:
        """The athletes whose care team `member_id` is on."""
        with self._read() as conn:
            return list(conn.execute(sa.select(care_team.c.athlete_id).where(care_team.c.member_id == member_id)
                                     .order_by(care_team.c.athlete_id)).scalars())

    def clinicians_of(self, athlete_id: str) -> list[Contact]:
        return self.care_team_contacts(athlete_id, Role.CLINICIAN)

    def care_team_contacts(self, athlete_id: str, role: Role) -> list[Contact]:
        """Where the athlete's care-team members of `role` want alerts."""
        with self._read() as conn:
            rows = conn.execute(CARE_TEAM_CONTACTS, {"athlete_id": athlete_id, "role": role.value}).all()
        return [Contact(*row) for row in rows]

    # --- idempotent intake ------------------------------------------------------------------------

    def idempotent_response(self, scope: str, fingerprint: str) -> dict | None:
        """The stored answer for a retried request, None for a new one; StoreError if the key was reused
        for a different request."""
        with self._read() as conn:
            row = conn.execute(IDEMPOTENT_RESPONSE, {"scope": scope}).first()
        if row is None:
            return None
        if row.fingerprint != fingerprint:
            raise StoreError("Idempotency-Key was already used for a different request")
        return json.loads(row.response) if row.response else None

    def remember_response(self, scope: str, fingerprint: str, response: dict) -> None:
        with self._write() as conn:
            conn.execute(self._upserts.remember_response, {"scope": scope, "fingerprint": fingerprint,
                                                           "response": json.dumps(response), "created_at": time.time()})

    def claim_events(
        self, athlete_id: str, event_ids: Iterable[str], *, stale_after_s: float = STALE_CLAIM_S
    ) -> tuple[list[str], list[str], list[str]]:
        """Claim an athlete's event ids for producing; returns (claimed, in flight elsewhere, already produced).

        Ids are the athlete's own: clients may choose them, so an id another athlete used is not a duplicate,
        and the answer says nothing about other athletes' events. The claim is one transaction, so two concurrent
        retries of the same event cannot both produce it, in one process or in several on one database (ids are
        claimed in sorted order, so two overlapping batches cannot deadlock on PostgreSQL's row locks).
        A claim left by a process that died mid-request goes stale and can be claimed again (the stream
        deduplicates by event_id, so a rare second copy on Kafka is harmless; a lost event is not).
        """
        ids = list(dict.fromkeys(event_ids))
        if not ids:
            return [], [], []
        now = time.time()
        with self._write() as conn:
            # one multi-row upsert (SQLAlchemy batches the rows into one INSERT ... VALUES ... RETURNING)
            claimed = set(conn.execute(self._upserts.claim_event, [
                {"athlete_id": athlete_id, "event_id": event_id, "claimed_at": now, "stale_before": now - stale_after_s}
                for event_id in sorted(ids)]).scalars())
            done = dict(conn.execute(CLAIM_STATES, {"owner": athlete_id, "event_ids": [
                event_id for event_id in ids if event_id not in claimed]}).all()) if len(claimed) < len(ids) else {}
        return ([e for e in ids if e in claimed], [e for e in ids if e not in claimed and not done[e]],
                [e for e in ids if e not in claimed and done[e]])

    def settle_events(self, athlete_id: str, event_ids: list[str], *, produced: bool) -> None:
        """Mark an athlete's claimed events as produced, or release the claims so a retry can produce them."""
        with self._write() as conn:
            conn.execute(MARK_PRODUCED if produced else RELEASE_CLAIMS,
                         {"owner": athlete_id, "event_ids": list(event_ids)})

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Delete idempotency records, produced ids and dead tokens past their retention; counts by table."""
        now = time.time() if now is None else now
        day = 86400
        dead_before = now - DEAD_TOKEN_DAYS * day
        with self._write() as conn:
            return {
                "idempotency": conn.execute(idempotency.delete().where(
                    idempotency.c.created_at < now - IDEMPOTENCY_DAYS * day)).rowcount,
                "produced": conn.execute(produced_events.delete().where(
                    (produced_events.c.done == 1) & (produced_events.c.claimed_at < now - PRODUCED_DAYS * day)
                )).rowcount,
                "tokens": conn.execute(tokens.delete().where(
                    (tokens.c.expires_at < dead_before) | (tokens.c.revoked_at < dead_before))).rowcount,
            }

    # --- alert inbox ------------------------------------------------------------------------------

    def record_alert(self, alert: Alert) -> bool:
        """Put an alert in the inbox, or a newer version of it over the one there (an update keeps its
        acknowledgement and delivery log); False if this version or a newer one was there already."""
        with self._write() as conn:
            return self._record_alert(conn, alert)

    def _record_alert(self, conn: sa.Connection, alert: Alert) -> bool:
        return conn.execute(self._upserts.record_alert, {
            "alert_id": alert.alert_id, "athlete_id": alert.athlete_id, "body": alert.model_dump_json(),
            "version": alert.version, "received_at": time.time()}).first() is not None

    def record_historical(self, alert: Alert) -> None:
        """An alert raised on imported history: in the inbox like any other, and queued for the athlete's
        summary (an update of one already queued or summarised only updates the inbox)."""
        with self._write() as conn:
            self._record_alert(conn, alert)
            conn.execute(self._upserts.queue_historical, {
                "alert_id": alert.alert_id, "athlete_id": alert.athlete_id, "received_at": time.time()})

    def historical_due(self, quiet_s: float) -> dict[str, list[Alert]]:
        """Per athlete, the historical alerts not summarised yet, once none has arrived for `quiet_s` (the import
        has settled), oldest first. Withdrawn ones are left out: an athlete whose imported alerts were all withdrawn
        has nothing to summarise."""
        pending = historical_alerts.c.summarised_at.is_(None) & alerts.c.withdrawn_at.is_(None)
        with self._read() as conn:
            athletes = conn.execute(
                sa.select(historical_alerts.c.athlete_id)
                .join_from(historical_alerts, alerts, historical_alerts.c.alert_id == alerts.c.alert_id)
                .where(pending).group_by(historical_alerts.c.athlete_id)
                .having(sa.func.max(historical_alerts.c.received_at) < time.time() - quiet_s)
            ).scalars().all()
            due = {}
            for athlete_id in athletes:
                bodies = conn.execute(
                    sa.select(alerts.c.body).join_from(historical_alerts, alerts,
                                                       historical_alerts.c.alert_id == alerts.c.alert_id)
                    .where(pending & (historical_alerts.c.athlete_id == athlete_id))
                ).scalars()
                due[athlete_id] = sorted((Alert.model_validate_json(body) for body in bodies), key=lambda a: a.time)
        return due

    def summarised(self, alert_ids: Iterable[str]) -> set[str]:
        """Those of `alert_ids` that a delivered import summary covered."""
        with self._read() as conn:
            return set(conn.execute(sa.select(historical_alerts.c.alert_id).where(
                historical_alerts.c.summarised_at.is_not(None) & historical_alerts.c.alert_id.in_(list(alert_ids))
            )).scalars())

    def mark_summarised(self, alert_ids: Iterable[str]) -> None:
        with self._write() as conn:
            conn.execute(historical_alerts.update().where(historical_alerts.c.alert_id.in_(list(alert_ids)))
                         .values(summarised_at=time.time()))

    def alerts_for(self, athlete_id: str, *, open_only: bool = False) -> list[InboxAlert]:
        query = sa.select(*INBOX_COLUMNS).where(alerts.c.athlete_id == athlete_id).order_by(alerts.c.received_at)
        if open_only:
            query = query.where(alerts.c.acknowledged_at.is_(None) & alerts.c.withdrawn_at.is_(None))
        with self._read() as conn:
            return [_inbox_alert(row) for row in conn.execute(query)]

    def alert(self, alert_id: str) -> InboxAlert | None:
        with self._read() as conn:
            return _alert(conn, alert_id)

    def withdraw(self, alert_id: str, reason: str) -> InboxAlert | None:
        """Mark an alert withdrawn (the first withdrawal of its version is kept); None for an alert never received."""
        with self._write() as conn:
            conn.execute(alerts.update().where((alerts.c.alert_id == alert_id) & alerts.c.withdrawn_at.is_(None))
                         .values(withdrawn_at=time.time(), withdrawal_reason=reason))
            return _alert(conn, alert_id)

    def acknowledge(self, alert_id: str, user_id: str, note: str | None = None) -> InboxAlert | None:
        """Record the first acknowledgement (later ones keep the original); None for an unknown alert."""
        with self._write() as conn:
            conn.execute(ACKNOWLEDGE, {"which": alert_id, "at": time.time(), "user_id": user_id, "note": note})
            return _alert(conn, alert_id)

    # --- delivery log -----------------------------------------------------------------------------

    def claim_delivery(self, alert_id: str, channel: str, round_: int, *, stale_after_s: float) -> DeliveryClaim:
        """Claim one channel's send of an alert's round: "claimed" (send it, then `log_delivery` the outcome over
        the claim), "settled" (delivered or dead-lettered before) or "busy" (another notifier is sending it now).

        This is what keeps "never twice" across processes on one database (two notifiers after a rebalance, both
        reminding): the claim is one atomic upsert. A claim left by a notifier that died mid-send goes stale
        after `stale_after_s` (longer than a send's retries take) and is taken over: at least once, never lost.
        """
        now = time.time()
        key = {"alert_id": alert_id, "channel": channel, "round": round_}
        with self._write() as conn:
            if conn.execute(self._upserts.claim_delivery, {**key, "status": "sending", "attempts": 0, "at": now,
                                                           "stale_before": now - stale_after_s}).first():
                return "claimed"
            status = conn.execute(DELIVERY_STATUS, key).scalar_one()
        return "busy" if status == "sending" else "settled"

    def log_delivery(self, alert_id: str, channel: str, round_: int, status: str, attempts: int) -> None:
        with self._write() as conn:
            conn.execute(self._upserts.log_delivery, {"alert_id": alert_id, "channel": channel, "round": round_,
                                                      "status": status, "attempts": attempts, "at": time.time()})

    def deliveries(self, alert_id: str) -> list[tuple[str, int, str, int]]:
        """(channel, round, status, attempts) rows, oldest first."""
        with self._read() as conn:
            return [tuple(row) for row in conn.execute(
                sa.select(deliveries.c.channel, deliveries.c.round, deliveries.c.status, deliveries.c.attempts)
                .where(deliveries.c.alert_id == alert_id).order_by(deliveries.c.round, deliveries.c.channel))]

    def due_for_renotification(self, older_than_s: float) -> list[tuple[Alert, int]]:
        """Unacknowledged alerts whose latest delivery round is older than `older_than_s`, with the next round."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(alerts.c.body, sa.func.max(deliveries.c.round))
                .join_from(alerts, deliveries, alerts.c.alert_id == deliveries.c.alert_id)
                .where(alerts.c.acknowledged_at.is_(None) & alerts.c.withdrawn_at.is_(None)
                       & (deliveries.c.status == "delivered") & (deliveries.c.round > 0))
                .group_by(alerts.c.alert_id, alerts.c.body)
                .having(sa.func.max(deliveries.c.at) < time.time() - older_than_s)
            ).all()
        return [(Alert.model_validate_json(body), last_round + 1) for body, last_round in rows]

    # --- web inbox sessions -----------------------------------------------------------------------

    def open_session(self, token: str, lifetime_s: float) -> tuple[str, WebSession]:
        """A new browser session for a verified token: (the cookie value, shown once; the session).

        Only hashes of the cookie value and the token are stored. Who the session is, is asked of the token
        each time (`auth.authenticate_hash`), so revoking or expiring the token ends its sessions too.
        """
        now = time.time()
        cookie, session = new_token(), WebSession(hash_token(token), secrets.token_urlsafe(32), now + lifetime_s)
        with self._write() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.expires_at <= now))
            conn.execute(web_sessions.insert().values(session_hash=hash_token(cookie), token_hash=session.token_hash,
                                                      csrf_token=session.csrf_token, expires_at=session.expires_at))
        return cookie, session

    def session(self, cookie: str) -> WebSession | None:
        """The unexpired session of a cookie value, or None."""
        with self._read() as conn:
            row = conn.execute(SESSION, {"session_hash": hash_token(cookie), "now": time.time()}).first()
        return WebSession(*row) if row else None

    def close_session(self, cookie: str) -> None:
        with self._write() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.session_hash == hash_token(cookie)))


class AsyncStore:
    """The store for async code (the API, the web inbox, the notifier): `await async_store.alert(id)` runs
    `Store.alert(id)` on a worker thread, so the event loop serves other requests while the database answers.

    Why threads rather than an async driver: the store is also called from synchronous code (the CLI, the demo,
    tests), and one SQLAlchemy Core code path with a thread-safe connection pool serves both; an asyncio engine's
    connections belong to the event loop that opened them, which the CLI and the tests' clients do not share.
    """

    def __init__(self, store: Store):
        self.sync = store

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)

        async def in_thread(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(method, *args, **kwargs)

        return in_thread

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(store, *args)` on a worker thread: a function of the store (e.g. `auth.authenticate`)."""
        return await asyncio.to_thread(function, self.sync, *args)


def _sqlite_engine(url: sa.URL, *, writes: bool) -> sa.Engine:
    """An engine on a SQLite file in WAL mode, readable by the service's user only (users, secrets and alert
    evidence are PHI; SQLite gives its -wal and -shm files the database file's mode), with foreign keys enforced as
    PostgreSQL enforces them. Writers take the write lock at BEGIN (IMMEDIATE) and wait up to 10 s for it; readers
    run each statement on its own (autocommit)."""
    path = Path(url.database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for existing in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if existing.exists():
            existing.chmod(0o600)
    engine = sa.create_engine(url, connect_args={"timeout": 10}, hide_parameters=True,
                              **({} if writes else {"isolation_level": "AUTOCOMMIT"}))

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN below, not the sqlite3 module's own
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    if writes:
        @sa.event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _refuse_nul(_conn, _cursor, _statement, parameters, _context, _executemany: bool) -> None:
    """StoreError for text holding a NUL character, on both databases: PostgreSQL cannot store one (clients choose
    event ids and user ids, and the contract allows any characters in them)."""
    if any("\x00" in text for text in _texts(parameters)):
        raise StoreError("an id or text with a NUL character (\\u0000) cannot be stored")


def _texts(parameters: Any) -> Iterator[str]:
    """Every string in a statement's parameters (a row, rows, or one batched row, as the driver gets them)."""
    if isinstance(parameters, str):
        yield parameters
    elif isinstance(parameters, dict):
        for value in parameters.values():
            yield from _texts(value)
    elif isinstance(parameters, (list, tuple)):
        for value in parameters:
            yield from _texts(value)


def _role_of(conn: sa.Connection, user_id: str) -> Role | None:
    role = conn.execute(sa.select(users.c.role).where(users.c.user_id == user_id)).scalar()
    return Role(role) if role else None


def _revoke(conn: sa.Connection, user_id: str, token_id: str | None) -> int:
    live = (tokens.c.user_id == user_id) & tokens.c.revoked_at.is_(None)
    if token_id is not None:
        live &= sa.func.substr(tokens.c.token_hash, 1, 12) == token_id
    return conn.execute(tokens.update().where(live).values(revoked_at=time.time())).rowcount


def _alert(conn: sa.Connection, alert_id: str) -> InboxAlert | None:
    row = conn.execute(ALERT, {"alert_id": alert_id}).first()
    return _inbox_alert(row) if row else None


def _inbox_alert(row: sa.Row) -> InboxAlert:
    return InboxAlert(Alert.model_validate_json(row[0]), *row[1:])
