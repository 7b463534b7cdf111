"""The settings the stream workers and `aromatrack evaluate` share, read from the environment."""

import pytest

from aromatrack.deploy.settings import load_settings


def test_the_workers_engine_settings_come_from_the_environment_and_travel_to_child_processes(monkeypatch):
    monkeypatch.setenv("AROMATRACK_LAB_METHODS", "lab-1=lc_msms, lab-2=immunoassay")
    monkeypatch.setenv("AROMATRACK_HISTORICAL_AFTER_DAYS", "30")
    settings = load_settings()
    engine = settings.engine_settings()
    assert dict(engine.rules.default_method_by_lab) == {"lab-1": "lc_msms", "lab-2": "immunoassay"}
    assert engine.historical_after_days == 30.0
    for name, value in settings.as_env().items():  # what a worker started with these settings reads
        monkeypatch.setenv(name, value)
    assert load_settings() == settings


def test_defaults_and_malformed_values_named(monkeypatch):
    monkeypatch.delenv("AROMATRACK_LAB_METHODS", raising=False)
    monkeypatch.delenv("AROMATRACK_HISTORICAL_AFTER_DAYS", raising=False)
    assert load_settings().engine_settings().historical_after_days == 14.0
    assert load_settings().lab_methods == ()
    monkeypatch.setenv("AROMATRACK_HISTORICAL_AFTER_DAYS", "two weeks")
    with pytest.raises(ValueError, match="AROMATRACK_HISTORICAL_AFTER_DAYS: 'two weeks' is not a number of days"):
        load_settings()
    monkeypatch.setenv("AROMATRACK_HISTORICAL_AFTER_DAYS", "-1")
    with pytest.raises(ValueError, match="AROMATRACK_HISTORICAL_AFTER_DAYS"):
        load_settings()
    monkeypatch.setenv("AROMATRACK_HISTORICAL_AFTER_DAYS", "14")
    monkeypatch.setenv("AROMATRACK_LAB_METHODS", "lab-1")
    with pytest.raises(ValueError, match="AROMATRACK_LAB_METHODS: 'lab-1': expected LAB=lc_msms"):
        load_settings()


def test_workers_process_at_least_once_unless_told_exactly_once(monkeypatch):
    monkeypatch.delenv("AROMATRACK_PROCESSING_GUARANTEE", raising=False)
    assert load_settings().processing_guarantee == "at_least_once"
    monkeypatch.setenv("AROMATRACK_PROCESSING_GUARANTEE", "exactly_once")
    assert load_settings().processing_guarantee == "exactly_once"
    monkeypatch.setenv("AROMATRACK_PROCESSING_GUARANTEE", "at_most_once")
    with pytest.raises(ValueError, match="AROMATRACK_PROCESSING_GUARANTEE: 'at_most_once' is not one of"):
        load_settings()
