"""The store as it was when it moved to Alembic (its schema version 5), and the upgrade of older SQLite files.

A store from before Alembic is a SQLite file whose `PRAGMA user_version` counted its schema (0 was the
unversioned first release): its own steps bring it to version 5, and tables added since its version are created.
A new store (SQLite or PostgreSQL) gets every table at once.
"""

import sqlalchemy as sa
from alembic import op

from aromatrack.services.auth import DEFAULT_TOKEN_DAYS

revision = "0005"
down_revision = None

# The pre-Alembic steps from each `user_version` to the next.
SQLITE_STEPS: dict[int, tuple[str, ...]] = {
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
LAST_SQLITE_STEP = 5

TEXT, TIME = sa.Text(), sa.Float()  # Float: double precision on PostgreSQL (epoch seconds), REAL on SQLite


def tables() -> list[tuple[str, list[sa.Column]]]:
    return [
        ("users", [sa.Column("user_id", TEXT, primary_key=True), sa.Column("role", TEXT, nullable=False),
                   sa.Column("email", TEXT), sa.Column("webhook_url", TEXT), sa.Column("webhook_secret", TEXT)]),
        ("tokens", [sa.Column("token_hash", TEXT, primary_key=True),
                    sa.Column("user_id", TEXT, sa.ForeignKey("users.user_id"), nullable=False),
                    sa.Column("role", TEXT, nullable=False), sa.Column("created_at", TIME, nullable=False),
                    sa.Column("expires_at", TIME, nullable=False), sa.Column("revoked_at", TIME)]),
        ("care_team", [sa.Column("athlete_id", TEXT, primary_key=True),
                       sa.Column("member_id", TEXT, sa.ForeignKey("users.user_id"), primary_key=True)]),
        ("idempotency", [sa.Column("scope", TEXT, primary_key=True), sa.Column("fingerprint", TEXT, nullable=False),
                         sa.Column("response", TEXT), sa.Column("created_at", TIME, nullable=False)]),
        ("produced", [sa.Column("athlete_id", TEXT, primary_key=True), sa.Column("event_id", TEXT, primary_key=True),
                      sa.Column("done", sa.Integer(), nullable=False, server_default="0"),
                      sa.Column("claimed_at", TIME, nullable=False)]),
        ("alerts", [sa.Column("alert_id", TEXT, primary_key=True), sa.Column("athlete_id", TEXT, nullable=False),
                    sa.Column("body", TEXT, nullable=False), sa.Column("received_at", TIME, nullable=False),
                    sa.Column("acknowledged_at", TIME), sa.Column("acknowledged_by", TEXT),
                    sa.Column("acknowledgement_note", TEXT)]),
        ("historical_alerts", [sa.Column("alert_id", TEXT, primary_key=True),
                               sa.Column("athlete_id", TEXT, nullable=False),
                               sa.Column("received_at", TIME, nullable=False), sa.Column("summarised_at", TIME)]),
        ("deliveries", [sa.Column("alert_id", TEXT, primary_key=True), sa.Column("channel", TEXT, primary_key=True),
                        sa.Column("round", sa.Integer(), primary_key=True), sa.Column("status", TEXT, nullable=False),
                        sa.Column("attempts", sa.Integer(), nullable=False), sa.Column("at", TIME, nullable=False)]),
        ("web_sessions", [sa.Column("session_hash", TEXT, primary_key=True),
                          sa.Column("token_hash", TEXT, nullable=False), sa.Column("csrf_token", TEXT, nullable=False),
                          sa.Column("expires_at", TIME, nullable=False)]),
    ]


INDEXES = [("alerts_by_athlete", "alerts", ["athlete_id", "received_at"]),
           ("historical_unsummarised", "historical_alerts", ["summarised_at", "athlete_id"])]


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    if bind.dialect.name == "sqlite" and "users" in existing:
        version = bind.exec_driver_sql("PRAGMA user_version").scalar()
        for step in range(version + 1, LAST_SQLITE_STEP + 1):
            for statement in SQLITE_STEPS.get(step, ()):
                op.execute(statement)
        existing = set(sa.inspect(bind).get_table_names())
    for name, columns in tables():
        if name not in existing:
            op.create_table(name, *columns)
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, if_not_exists=True)
