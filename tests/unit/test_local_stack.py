"""The local stack manager refuses a taken port with a message that says what to do."""

from __future__ import annotations

import socket

import pytest

from aromatrack.deploy import local_stack
from aromatrack.deploy.settings import load_settings


def test_a_port_taken_by_another_process_is_reported_not_fought_over(tmp_path, monkeypatch):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("AROMATRACK_KAFKA", f"127.0.0.1:{port}")
        monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
        settings = load_settings()
        kafka = next(s for s in local_stack.servers(settings) if s.name == "kafka")
        with pytest.raises(local_stack.StackError, match=f"port 127.0.0.1:{port} is taken by another process"):
            local_stack.start(settings, kafka)
        assert local_stack.status(settings, kafka) == f"kafka: something else answers on 127.0.0.1:{port}"


def test_a_listener_that_is_not_a_kafka_broker_is_not_ready():
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        host, port = squatter.getsockname()
        assert not local_stack._kafka_ready(host, port)  # accepts, never answers the metadata request
    assert not local_stack._kafka_ready(host, port)  # nothing listens


def test_the_generated_broker_config_suits_one_loopback_node_with_data_in_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    config = local_stack._kafka_config(load_settings(), "127.0.0.1", 39092).read_text()
    settings = dict(line.split("=", 1) for line in config.splitlines() if line and not line.startswith("#"))
    assert settings["process.roles"] == "broker,controller"
    assert settings["listeners"] == "PLAINTEXT://127.0.0.1:39092,CONTROLLER://127.0.0.1:39093"
    assert settings["controller.quorum.voters"] == "1@127.0.0.1:39093"
    assert settings["log.dirs"] == f"{tmp_path}/kafka/data"
    assert settings["offsets.topic.replication.factor"] == settings["transaction.state.log.replication.factor"] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"
    assert "0.0.0.0" not in config


def test_the_generated_influxdb_config_binds_loopback_and_keeps_data_in_the_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    config = local_stack._influx_config(load_settings(), "127.0.0.1", 38086).read_text()
    assert 'bind-address = "127.0.0.1:38086"' in config
    assert 'bind-address = "127.0.0.1:38088"' in config
    assert "0.0.0.0" not in config and "/var/lib" not in config
    assert f'dir = "{tmp_path}/influxdb/meta"' in config


def test_stopping_a_server_that_is_not_running_is_harmless(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    settings = load_settings()
    assert [line.split(":")[1].strip() for line in local_stack.down(settings)] == ["not running"] * 3


def test_the_demos_api_server_runs_aromatrack_api_with_the_settings_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    settings = load_settings()
    api = local_stack.api_server(settings)
    command = api.command(settings)
    assert command[0] == "env" and f"AROMATRACK_STATE_DIR={tmp_path}" in command
    assert command[-5:] == ["-m", "aromatrack.services.cli", "api", "--port", str(api.port)]
    assert (api.host, api.port) == ("127.0.0.1", 38480)


def test_missing_postgresql_binaries_are_named_with_how_to_install_them(monkeypatch, tmp_path):
    monkeypatch.setattr(local_stack, "DEBIAN_POSTGRESQL", tmp_path)
    monkeypatch.setattr(local_stack.shutil, "which", lambda name: None)
    with pytest.raises(local_stack.StackError, match=r"PostgreSQL is not installed .*apt-get install postgresql"):
        local_stack._postgres_bin_dir()
    assert not local_stack._postgres_ready("127.0.0.1", 1)


def test_the_newest_debian_postgresql_is_chosen(monkeypatch, tmp_path):
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    monkeypatch.setattr(local_stack, "DEBIAN_POSTGRESQL", tmp_path)
    assert local_stack._postgres_bin_dir() == tmp_path / "15" / "bin"


def test_the_store_settings_give_sqlite_by_default_and_postgresql_with_its_password_apart(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    assert load_settings().store_url == f"sqlite:///{tmp_path}/api.sqlite3"
    monkeypatch.setenv("AROMATRACK_STORE_DSN", "postgresql://aromatrack@db.internal:5432/aromatrack")
    monkeypatch.setenv("AROMATRACK_STORE_PASSWORD", "p@ss/word")
    settings = load_settings()
    assert settings.store_url == "postgresql://aromatrack:p%40ss%2Fword@db.internal:5432/aromatrack"
    assert settings.as_env()["AROMATRACK_STORE_PASSWORD"] == "p@ss/word"


def test_a_port_some_connection_uses_as_its_local_port_is_not_taken_for_a_server():
    """An outgoing connection's local port comes from the range the throwaway stacks' fixed ports lie in."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            local_port = client.getsockname()[1]
            assert not local_stack._bindable("127.0.0.1", local_port)
            chosen = local_stack.free_ports("127.0.0.1", local_port, 2)
            assert chosen >= local_port + 2 and local_stack._bindable("127.0.0.1", chosen)
        listening_port = server.getsockname()[1]
        assert local_stack.free_ports("127.0.0.1", listening_port, 1) != listening_port
