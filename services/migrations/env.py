"""Alembic's environment for the store's migrations: `Store` runs them on its own connection, inside the
transaction that holds the migration lock (see `Store._migrate`), so no URL or ini file is read here."""

from alembic import context

context.configure(connection=context.config.attributes["connection"])
with context.begin_transaction():
    context.run_migrations()
