"""An alert's version gets its own column: an update replaces the stored alert only when newer, and PostgreSQL
cannot compare a version inside a text body the way SQLite's json_extract did."""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

BODY_VERSION = {
    "sqlite": "json_extract(body, '$.version')",
    "postgresql": "(body::json ->> 'version')::integer",
}


def upgrade() -> None:
    op.add_column("alerts", sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.execute(f"UPDATE alerts SET version = coalesce({BODY_VERSION[op.get_bind().dialect.name]}, 1)")
