"""`aromatrack stack up`'s PostgreSQL: a real cluster made once under the state dir, loopback TCP only, idempotent
starts, data kept across restarts, reachable from a state dir below a root-only directory."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import psycopg
import pytest

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import load_settings

PORT = 38632  # beside the session stack's PostgreSQL, in the test's own state dir


@pytest.fixture
def settings():
    # /tmp/pytest-of-root is root-only: a state dir below a root-only directory, as `mktemp -d` checkouts have
    with tempfile.TemporaryDirectory(prefix="aromatrack-pg-") as outer:
        os.chmod(outer, 0o700)
        state = dataclasses.replace(load_settings(), state_dir=Path(outer) / "state",
                                    postgres_address=f"127.0.0.1:{PORT}")
        try:
            yield state
        finally:
            local_stack.stop(state, local_stack.postgres_server(state))


def test_the_local_cluster_starts_once_listens_on_loopback_only_and_keeps_its_data(settings) -> None:
    server = local_stack.postgres_server(settings)
    assert local_stack.start(settings, server).startswith("postgresql: started on 127.0.0.1:")
    assert local_stack.start(settings, server) == f"postgresql: already running on 127.0.0.1:{PORT}"
    password = local_stack.postgres_password(settings)
    with psycopg.connect(local_stack.postgres_dsn(settings), autocommit=True) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == ("",)
        assert conn.execute("SHOW data_directory").fetchone()[0].startswith(str(settings.state_dir))
        conn.execute("CREATE TABLE kept (n integer)")
        conn.execute("INSERT INTO kept VALUES (7)")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(local_stack.postgres_dsn(settings).replace(password, "wrong")).close()
    assert local_stack.stop(settings, server) == "postgresql: stopped"
    assert local_stack.start(settings, server).startswith("postgresql: started")
    assert local_stack.postgres_password(settings) == password  # the same cluster, not a new initdb
    with psycopg.connect(local_stack.postgres_dsn(settings)) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
