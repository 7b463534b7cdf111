"""The store's two databases for tests: a SQLite file, and a fresh schema on the local stack's real PostgreSQL
(`make test` starts it; the PostgreSQL cases are integration tests, so `make unit` runs only SQLite's).

Use `store_url` as a fixture: a test that takes it runs once per database.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import load_settings

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A store URL on an empty schema of the local PostgreSQL, dropped afterwards."""
    settings = load_settings()
    if not local_stack.postgres_server(settings).ready(*settings.postgres_host_port):
        pytest.fail("the local PostgreSQL is not running (run `make test`, or `aromatrack stack up`)")
    dsn = local_stack.postgres_dsn(settings)
    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{dsn}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=DATABASES)
def store_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'api.sqlite3'}"
    else:
        with postgres_schema() as url:
            yield url


def engine_for(url: str) -> sa.Engine:
    """An engine of the test's own on a store's database, to look at what the store wrote."""
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
