"""The Helm chart, offline: `helm lint`, `helm template` with the defaults and with every server external, and
each rendered manifest validated against the Kubernetes JSON schemas (PyPI kubernetes-validate, strict: no
unknown fields). No cluster runs here. Strimzi's resources have no schema in that package; their fields are
checked here against the topic contract instead.

Helm is built by `make install` (deploy/helm_tool.py); without it this fails, naming the command.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from aromatrack.deploy.helm_tool import cached_helm
from aromatrack.schemas import topics

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "aromatrack"
GRAFANA = Path(__file__).resolve().parents[2] / "grafana"
KUBERNETES = "1.33.0"  # the oldest release the chart is validated for (Chart.yaml kubeVersion allows 1.29+)
STRIMZI_KINDS = {"Kafka", "KafkaNodePool", "KafkaTopic"}
EXTERNAL = ["--set", "kafka.strimzi.enabled=false", "--set", "kafka.externalBootstrap=kafka-0.kafka:9092",
            "--set", "influxdb.enabled=false", "--set", "influxdb.externalUrl=https://influx.clinic.example",
            "--set", "postgresql.enabled=false"]


def helm(*args: str) -> subprocess.CompletedProcess:
    binary = cached_helm()
    if binary is None:
        pytest.fail("Helm is not built: run `make install` (it builds Helm from the Go module proxy)")
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


def render(*values: str) -> list[dict]:
    done = helm("template", "rel", str(CHART), "--kube-version", KUBERNETES, *values)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def by_kind(manifests: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def containers(manifests: list[dict]) -> dict[str, dict]:
    return {container["name"]: container for doc in manifests if doc["kind"] in ("Deployment", "StatefulSet")
            for container in doc["spec"]["template"]["spec"]["containers"]}


def test_helm_lint_passes_strict() -> None:
    for values in ([], EXTERNAL):
        done = helm("lint", "--strict", str(CHART), "--kube-version", KUBERNETES, *values)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", [[], EXTERNAL], ids=["bundled", "external"])
def test_every_rendered_manifest_is_valid_kubernetes(values: list[str]) -> None:
    manifests = render(*values)
    checked = 0
    for doc in manifests:
        if doc["kind"] in STRIMZI_KINDS:
            assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
            continue
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises ValidationError naming the field
        checked += 1
    assert checked >= 12


def test_strimzi_topics_are_the_contracts_with_its_partitions() -> None:
    manifests = render()
    kafka = by_kind(manifests, "Kafka")
    [cluster] = kafka
    assert kafka[cluster]["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    [pool] = by_kind(manifests, "KafkaNodePool").values()
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == cluster and set(pool["spec"]["roles"]) == {"controller", "broker"}
    kafka_topics = by_kind(manifests, "KafkaTopic").values()
    assert sorted(t["spec"]["topicName"] for t in kafka_topics) == sorted(topics.ALL_TOPICS)
    for topic in kafka_topics:
        assert topic["spec"]["partitions"] == topics.PARTITIONS and topic["spec"]["replicas"] == 3
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == cluster
    worker_env = {e["name"]: e.get("value") for e in containers(manifests)["worker"]["env"]}
    assert worker_env["AROMATRACK_KAFKA"] == f"{cluster}-kafka-bootstrap:9092" and worker_env["AROMATRACK_TOPIC_REPLICAS"] == "3"


def test_without_strimzi_nothing_of_kafka_is_rendered_and_the_external_address_is_used() -> None:
    manifests = render(*EXTERNAL)
    assert not [doc for doc in manifests if doc["kind"] in STRIMZI_KINDS]
    assert not by_kind(manifests, "StatefulSet").keys() & {"rel-influxdb", "rel-postgresql"}
    env = {e["name"]: e for e in containers(manifests)["api"]["env"]}
    assert env["AROMATRACK_KAFKA"]["value"] == "kafka-0.kafka:9092"
    assert env["AROMATRACK_INFLUX_URL"]["value"] == "https://influx.clinic.example"
    assert env["AROMATRACK_STORE_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "aromatrack-store", "key": "dsn"}
    missing = helm("template", "rel", str(CHART), "--kube-version", KUBERNETES, "--set", "kafka.strimzi.enabled=false")
    assert missing.returncode != 0 and "kafka.externalBootstrap is required" in missing.stderr


def test_worker_replicas_may_not_exceed_the_partition_count() -> None:
    assert by_kind(render("--set", f"worker.replicas={topics.PARTITIONS}"), "StatefulSet")["rel-worker"]["spec"]["replicas"] == 4
    refused = helm("template", "rel", str(CHART), "--kube-version", KUBERNETES, "--set", f"worker.replicas={topics.PARTITIONS + 1}")
    assert refused.returncode != 0 and "may not exceed partitions" in refused.stderr


def test_our_processes_are_probed_on_the_health_routes_they_serve() -> None:
    running = containers(render())
    expected_port = {"worker": "health", "api": "http", "notifier": "health"}
    for name, port in expected_port.items():
        container = running[name]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}, name
        assert container["startupProbe"]["httpGet"] == {"path": "/livez", "port": port}, name
        assert [p["name"] for p in container["ports"]] == [port]
    # The routes listen beyond loopback in a pod, on the probed port.
    assert running["worker"]["args"][running["worker"]["args"].index("--web-bind") + 1] == "0.0.0.0"
    assert running["notifier"]["args"][running["notifier"]["args"].index("--health-bind") + 1] == "0.0.0.0"
    assert running["api"]["args"][running["api"]["args"].index("--host") + 1] == "0.0.0.0"


def test_secrets_come_from_kubernetes_secrets_never_from_values() -> None:
    manifests = render("--set", "notifier.smtp.host=smtp.clinic.example", "--set", "notifier.smtp.user=alerts")
    assert not by_kind(manifests, "Secret")
    for name, container in containers(manifests).items():
        for env in container.get("env", []):
            if any(word in env["name"] for word in ("PASSWORD", "DSN", "SECRET", "TOKEN")):
                assert "secretKeyRef" in env.get("valueFrom", {}) or ":" not in env["value"].split("@")[0].removeprefix(
                    "postgresql://"), (name, env)  # a DSN in the clear carries no password
    notifier = {e["name"]: e for e in containers(manifests)["notifier"]["env"]}
    assert notifier["AROMATRACK_SMTP_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "smtp-password"
    assert notifier["AROMATRACK_STORE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "aromatrack-store",
                                                                                   "key": "password"}
    assert notifier["AROMATRACK_STORE_DSN"]["value"] == "postgresql://aromatrack@rel-postgresql:5432/aromatrack"


def test_the_api_scales_on_cpu_and_the_workers_keep_one_down_at_most() -> None:
    manifests = render()
    [hpa] = by_kind(manifests, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rel-api"}
    assert hpa["spec"]["minReplicas"] >= 2 and hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    [budget] = by_kind(manifests, "PodDisruptionBudget").values()
    assert budget["spec"]["maxUnavailable"] == 1


def test_grafana_is_provisioned_from_every_file_of_the_repository_by_a_job_after_each_release() -> None:
    manifests = render()
    config_maps = by_kind(manifests, "ConfigMap")
    shipped = {key: value for config_map in config_maps.values() for key, value in config_map["data"].items()}
    files = {path.name: path.read_text() for path in (GRAFANA / "dashboards").rglob("*.json")}
    files.update({path.name: path.read_text() for path in (GRAFANA / "provisioning").glob("*.yaml")})
    assert "organisations.yaml" in files and all(shipped[name] == text for name, text in files.items())
    [job] = by_kind(manifests, "Job").values()
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    [provision] = job["spec"]["template"]["spec"]["containers"]
    assert provision["args"][:2] == ["grafana", "provision"]
    assert provision["args"][provision["args"].index("--influx-url") + 1] == "http://rel-influxdb:8086"
    mounted = {mount["mountPath"] for mount in provision["volumeMounts"]}
    assert {"/app/grafana/provisioning", "/app/grafana/dashboards/clinical", "/app/grafana/dashboards/coaching"} <= mounted


def test_each_process_gets_only_the_influxdb_passwords_of_its_role() -> None:
    manifests = render()
    running = containers(manifests)
    [job] = by_kind(manifests, "Job").values()
    running["provision"] = job["spec"]["template"]["spec"]["containers"][0]

    def influx_secrets(name: str) -> set[str]:
        return {env["valueFrom"]["secretKeyRef"]["key"] for env in running[name]["env"]
                if env.get("valueFrom", {}).get("secretKeyRef", {}).get("name") == "aromatrack-influxdb"}

    readers = {"coaching-reader-password", "clinical-reader-password"}
    assert influx_secrets("worker") == {"writer-password"}
    assert influx_secrets("api") == influx_secrets("notifier") == influx_secrets("provision") == readers
    assert influx_secrets("influxdb") == {"admin-password", "writer-password", *readers}
    influxdb_env = {env["name"]: env.get("value") for env in running["influxdb"]["env"]}
    assert influxdb_env["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    init = by_kind(manifests, "ConfigMap")["rel-influxdb-init"]["data"]["aromatrack.sh"]
    assert init == (CHART.parents[1] / "influxdb-init.sh").read_text()


def test_the_workers_get_the_clinical_engine_settings_evaluate_takes() -> None:
    env = {item["name"]: item.get("value") for item in containers(render(
        "--set", "worker.labMethods={lab-1=lc_msms,lab-2=immunoassay}", "--set", "worker.historicalAfterDays=21",
    ))["worker"]["env"]}
    assert env["AROMATRACK_LAB_METHODS"] == "lab-1=lc_msms,lab-2=immunoassay"
    assert env["AROMATRACK_HISTORICAL_AFTER_DAYS"] == "21"
    defaults = {item["name"]: item.get("value") for item in containers(render())["worker"]["env"]}
    assert defaults["AROMATRACK_LAB_METHODS"] == "" and defaults["AROMATRACK_HISTORICAL_AFTER_DAYS"] == "14"


def test_the_workers_are_fenced_by_default_on_a_cluster() -> None:
    """Several replicas on several hosts: a worker cut off from the others must not write after its successor."""
    env = {item["name"]: item.get("value") for item in containers(render())["worker"]["env"]}
    assert env["AROMATRACK_PROCESSING_GUARANTEE"] == "exactly_once"
    chosen = {item["name"]: item.get("value") for item in containers(render(
        "--set", "worker.processingGuarantee=at_least_once"))["worker"]["env"]}
    assert chosen["AROMATRACK_PROCESSING_GUARANTEE"] == "at_least_once"
