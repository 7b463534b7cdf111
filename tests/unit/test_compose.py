"""docker-compose.yml cannot run here (no Docker engine), so it is validated offline.

`docker-compose config` (Debian's 1.29, installed by `make`) checks the file against the compose
schema without a daemon; the assertions below check the stack is the production shape we document.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aromatrack.deploy.influx_access import READER, Role

ROOT = Path(__file__).resolve().parents[2]
# What an operator exports (or puts in .env) before `docker compose up`; the file itself holds no secret.
SECRETS = {**{role.password_variable: f"secret-{role.value}" for role in Role},
           "GRAFANA_ADMIN_PASSWORD": "secret-grafana", "AROMATRACK_STORE_PASSWORD": "secret-store"}


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is not installed; run `make install` (deploy/install-system-packages.sh)")
    return subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config"], capture_output=True,
                          text=True, cwd=ROOT, env=env)


@pytest.fixture(scope="module")
def compose() -> dict:
    result = compose_config({**os.environ, **SECRETS})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_kafka_runs_in_kraft_mode_without_zookeeper(compose):
    services = compose["services"]
    assert "zookeeper" not in services
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert kafka["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_influxdb_serves_the_v1_api_the_service_speaks(compose):
    assert compose["services"]["influxdb"]["image"].startswith("influxdb:1.")


def test_our_processes_are_built_from_deploy_and_point_at_the_stack(compose):
    worker = compose["services"]["worker"]
    assert worker["build"]["dockerfile"].endswith("deploy/Dockerfile")
    assert (ROOT / "deploy" / "Dockerfile").is_file()
    assert worker["environment"]["AROMATRACK_KAFKA"] == "kafka:9092"
    assert worker["environment"]["AROMATRACK_INFLUX_URL"] == "http://influxdb:8086"


def test_only_grafana_and_the_api_are_published_and_only_on_loopback(compose):
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert name in ("grafana", "api"), f"{name} publishes a port"
            published = port if isinstance(port, str) else f"{port.get('host_ip')}:{port['published']}"
            assert published.startswith("127.0.0.1:"), published


def test_grafana_is_provisioned_through_the_api_by_a_one_shot_service(compose):
    """File provisioning cannot create organisations (and Grafana refuses to start on an unknown one)."""
    assert "volumes" not in compose["services"]["grafana"] or not any(
        "provisioning" in volume for volume in compose["services"]["grafana"]["volumes"])
    provisioner = compose["services"]["grafana-provision"]
    assert provisioner["command"][:2] == ["grafana", "provision"]
    grafana_dir = provisioner["command"][provisioner["command"].index("--grafana-dir") + 1]
    assert f"{ROOT / 'grafana'}:{grafana_dir}:ro" in provisioner["volumes"]
    assert provisioner["depends_on"]["grafana"]["condition"] == "service_healthy"


def test_influxdb_requires_authentication_and_each_process_gets_only_its_passwords(compose):
    services = compose["services"]
    assert services["influxdb"]["environment"]["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    assert services["influxdb"]["environment"]["INFLUXDB_ADMIN_USER"] == Role.ADMIN.username

    def passwords(name: str) -> set[str]:
        return {key for key in services[name]["environment"] if key.endswith("_PASSWORD")}

    assert passwords("worker") == {Role.WRITER.password_variable}
    assert passwords("grafana-provision") == {role.password_variable for role in READER.values()} | {
        "GRAFANA_ADMIN_PASSWORD"}
    for name in ("api", "notifier"):  # reads and alert charts show both audiences' series; the store is theirs
        assert passwords(name) == {role.password_variable for role in READER.values()} | {
            "AROMATRACK_STORE_PASSWORD"}


def test_the_influxdb_init_script_creates_the_users_and_grants_the_local_stack_does():
    script = (ROOT / "deploy" / "influxdb-init.sh").read_text()
    for role in (Role.WRITER, *READER.values()):
        assert f"CREATE USER {role.username} WITH PASSWORD '${{{role.password_variable}}}'" in script
    assert script.count(f"TO {Role.WRITER.username}") == 2 and "GRANT WRITE" in script
    for audience, role in READER.items():
        assert f'GRANT READ ON \\"${{base}}_{audience.value}\\" TO {role.username}' in script


def test_the_api_and_notifier_share_the_postgresql_store(compose):
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("api", "notifier"):
        env = services[name]["environment"]
        assert env["AROMATRACK_STORE_DSN"] == "postgresql://aromatrack@postgres:5432/aromatrack"
        assert env["AROMATRACK_STORE_PASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"] \
            == SECRETS["AROMATRACK_STORE_PASSWORD"]
        assert set(services[name]["depends_on"]) == {"kafka", "influxdb", "postgres"}


def test_the_stack_refuses_to_start_without_the_store_password():
    result = compose_config({k: v for k, v in {**os.environ, **SECRETS}.items() if k != "AROMATRACK_STORE_PASSWORD"})
    assert result.returncode != 0 and "set AROMATRACK_STORE_PASSWORD" in result.stderr
