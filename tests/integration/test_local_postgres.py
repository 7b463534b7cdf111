"""`aromatrack stack up`'s PostgreSQL: a real cluster made once under the state dir, loopback TCP only, idempotent
starts, data kept across restarts, reachable from a state dir below a root-only directory."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import httpx
import psycopg
import pytest

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import load_settings
from aromatrack.services.api import Services, create_app
from aromatrack.services.auth import Role
from aromatrack.services.store import Store

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


async def test_the_api_answers_503_while_its_database_is_down_and_recovers_when_it_is_back(settings) -> None:
    server = local_stack.postgres_server(settings)
    local_stack.start(settings, server)
    store = Store(local_stack.postgres_dsn(settings))
    token = store.add_user("ath-1", Role.ATHLETE)
    app = create_app(Services(store))
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://api") as client:
        assert (await client.get("/v1/athletes/ath-1/alerts", headers=headers)).status_code == 200
        local_stack.stop(settings, server)
        down = await client.get("/v1/athletes/ath-1/alerts", headers=headers)
        assert (down.status_code, down.headers["retry-after"]) == (503, "1")
        assert "127.0.0.1" not in down.text
        local_stack.start(settings, server)
        assert (await client.get("/v1/athletes/ath-1/alerts", headers=headers)).status_code == 200
    store.close()
    # stopped with the API's connections open, it still shut down cleanly (no crash recovery at the restart)
    assert "not properly shut down" not in (settings.state_dir / "postgresql.log").read_text()
