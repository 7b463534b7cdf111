"""The Kafka jar cache counts only a complete resolution of the current pom, and refuses clearly without Maven."""

from __future__ import annotations

import pytest

from aromatrack.deploy import kafka_jars


def test_only_a_copy_marked_with_the_current_pom_hash_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_KAFKA_CACHE", str(tmp_path))
    home = kafka_jars.kafka_home()
    assert home == tmp_path / f"kafka-{kafka_jars.kafka_version()}"
    (home / "libs").mkdir(parents=True)
    assert kafka_jars.cached_libs() is None  # interrupted: no marker
    (home / ".resolved").write_text("0" * 64 + "\n")
    assert kafka_jars.cached_libs() is None  # resolved for another pom
    (home / ".resolved").write_text(kafka_jars._pom_hash() + "\n")
    assert kafka_jars.cached_libs() == home / "libs"
    assert kafka_jars.resolve() == home / "libs"  # cached: no Maven, no network


def test_without_maven_and_without_a_cache_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("AROMATRACK_KAFKA_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(kafka_jars.JarsError, match="Maven .mvn. is not installed"):
        kafka_jars.resolve()


def test_the_pinned_kafka_is_the_line_of_the_compose_image():
    from aromatrack.deploy.settings import PROJECT_ROOT

    compose = (PROJECT_ROOT / "docker-compose.yml").read_text()
    major_minor = ".".join(kafka_jars.kafka_version().split(".")[:2])
    assert f"apache/kafka:{major_minor}." in compose
