"""Where the InfluxDB users' passwords come from, and that they stay out of reprs and the file's other readers."""

from __future__ import annotations

import stat

import pytest

from aromatrack.deploy import influx_access
from aromatrack.deploy.influx_access import AccessError, Role
from aromatrack.deploy.settings import load_settings


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    for role in Role:
        monkeypatch.delenv(role.password_variable, raising=False)
    return load_settings()


def test_first_start_generates_a_private_password_per_role_and_later_starts_keep_them(settings):
    influx_access.ensure_users_file(settings)
    path = influx_access.users_file(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = {role: influx_access.user(settings, role) for role in Role}
    assert len({u.password for u in first.values()}) == len(Role)
    assert all(len(u.password) >= 24 for u in first.values())
    influx_access.ensure_users_file(settings)
    assert {role: influx_access.user(settings, role) for role in Role} == first
    assert all(u.password not in repr(u) for u in first.values())


def test_a_worker_with_its_own_state_dir_inside_the_stacks_finds_the_stacks_passwords(settings, tmp_path, monkeypatch):
    influx_access.ensure_users_file(settings)
    stack_writer = influx_access.user(settings, Role.WRITER)
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path / "w1"))
    assert influx_access.user(load_settings(), Role.WRITER) == stack_writer
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path.parent / "elsewhere"))
    with pytest.raises(AccessError, match="no InfluxDB password for aromatrack_writer"):
        influx_access.user(load_settings(), Role.WRITER)


def test_the_environment_wins_over_the_file(settings, monkeypatch):
    influx_access.ensure_users_file(settings)
    monkeypatch.setenv(Role.WRITER.password_variable, "from-env")
    assert influx_access.user(settings, Role.WRITER).password == "from-env"
    assert influx_access.user(settings, Role.WRITER).username == "aromatrack_writer"


def test_a_missing_password_names_the_variable_and_the_command(settings):
    with pytest.raises(AccessError, match=f"{Role.COACHING_READER.password_variable}.*aromatrack stack up"):
        influx_access.reader_store(settings)


def test_a_password_with_quotes_is_one_influxql_string():
    assert influx_access._quote("a'b\\c") == "'a\\'b\\\\c'"
