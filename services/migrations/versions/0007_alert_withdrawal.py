"""An alert the stream withdrew (the whole history no longer supports it) is marked in the inbox, with the reason,
so it leaves the open alerts and its reminders stop."""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column("alerts", sa.Column("withdrawn_at", sa.Float()))
    op.add_column("alerts", sa.Column("withdrawal_reason", sa.Text()))
