"""The stream worker's app is built from settings at start-up: importing the stream modules builds and changes
nothing, and `create_app` builds the app the worker runs from the settings it is given."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from aromatrack.deploy.settings import Settings, WorkerOptions

# Run in a fresh interpreter: in this one, another test may have imported the modules or built an app already.
# faust.App and load_settings are wrapped before the stream modules are imported, so a module that built an app or
# read the settings at import would be counted.
IMPORT_EVERY_STREAM_MODULE = """
import json, logging, os, pkgutil, sys

import faust
from faust.app import base
import aromatrack.deploy.settings as deploy_settings

built, loaded = [], []
original_init, original_load = base.App.__init__, deploy_settings.load_settings

def counting_init(self, *args, **kwargs):
    built.append(args[0] if args else kwargs.get("id"))
    original_init(self, *args, **kwargs)

def counting_load():
    loaded.append(True)
    return original_load()

base.App.__init__ = counting_init
deploy_settings.load_settings = counting_load
environment = dict(os.environ)
loggers = {name: getattr(logger, "level", None) for name, logger in logging.root.manager.loggerDict.items()}
levels_before = {"root": logging.root.level, "httpx": logging.getLogger("httpx").level}

import aromatrack.streams
modules = sorted(info.name for info in pkgutil.iter_modules(aromatrack.streams.__path__))
for name in modules:
    __import__(f"aromatrack.streams.{name}")

print(json.dumps({
    "modules": modules,
    "apps_built": built,
    "settings_loaded": len(loaded),
    "environment_changed": sorted(set(os.environ.items()) ^ set(environment.items())),
    "levels_changed": {"root": logging.root.level, "httpx": logging.getLogger("httpx").level} != levels_before,
    "loggers_reconfigured": sorted(name for name, level in loggers.items()
                                   if getattr(logging.root.manager.loggerDict.get(name), "level", None) != level),
    "root_handlers": len(logging.root.handlers),
}))
"""


def test_importing_the_stream_modules_builds_no_app_reads_no_settings_and_configures_nothing():
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERY_STREAM_MODULE], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert {"app", "worker", "ingest", "workouts", "clinical", "health"} <= set(report["modules"])
    assert report["apps_built"] == []
    assert report["settings_loaded"] == 0
    assert report["environment_changed"] == []
    assert not report["levels_changed"] and report["loggers_reconfigured"] == [] and report["root_handlers"] == 0


def settings(tmp_path: Path, **worker: object) -> Settings:
    return Settings(kafka_bootstrap="127.0.0.1:1", influx_url="http://127.0.0.1:2", influx_database="unit",
                    state_dir=tmp_path, app_id="unit-app", worker=WorkerOptions(**worker))


def test_create_app_builds_the_workers_app_from_the_settings_it_is_given(tmp_path):
    from aromatrack.streams.worker import create_app

    app = create_app(settings(tmp_path))
    assert app.conf.id == "unit-app" and str(app.conf.datadir) == str(tmp_path / "faust")
    assert not app.conf.web_enabled
    assert sorted(app.agents) == ["aromatrack.clinical", "aromatrack.workouts.fit", "aromatrack.workouts.profiles"]
    assert sorted(app.tables) == [
        "athlete_profiles", "clinical_history", "delivered_offsets", "timeline_imports", "workout_seen", "workout_state"]
    assert {table.changelog_topic.get_topic_name() for table in app.tables.values()} == {
        f"unit-app-{name}-changelog" for name in app.tables}

    # A second app from other settings shares nothing with the first (several workers' apps in one process).
    other = create_app(settings(tmp_path, data_dir=tmp_path / "w2", web_port=6399, web_bind="0.0.0.0",
                                session_timeout_s=8.0))
    assert other is not app and other.tables["workout_state"] is not app.tables["workout_state"]
    assert str(other.conf.datadir) == str(tmp_path / "w2")
    assert other.conf.web_enabled and other.conf.web_port == 6399 and other.conf.web_bind == "0.0.0.0"
    assert other.conf.broker_session_timeout == 8.0 and other.conf.broker_heartbeat_interval == 2.0


# In a fresh interpreter: the worker's logging set-up replaces the root logger's handlers and level.
WORKER_LOGGING_AT = """
import io, logging, sys
from pathlib import Path
from aromatrack.deploy.settings import Settings, WorkerOptions
from aromatrack.streams.worker import create_app

app = create_app(Settings(kafka_bootstrap="127.0.0.1:1", influx_url="http://127.0.0.1:2", influx_database="unit",
                          state_dir=Path(sys.argv[1]), app_id="unit-app", worker=WorkerOptions()))
worker = app.conf.Worker(app, loglevel=sys.argv[2], stdout=io.StringIO(), stderr=io.StringIO())
worker._setup_logging()
sys.__stdout__.write(f"{logging.getLogger('aiokafka').getEffectiveLevel()} {worker.shortlabel}\\n")
"""


@pytest.mark.parametrize("loglevel, effective", [("warn", 30), ("info", 20)])
def test_the_workers_loggers_keep_the_log_level_it_is_given(tmp_path, loglevel, effective):
    """faust's terminal spinner set the root logger to DEBUG under `--loglevel warn` (the default), so every debug
    call of aiokafka and faust built a record that was then dropped: 7% of a bulk send's CPU."""
    result = subprocess.run([sys.executable, "-c", WORKER_LOGGING_AT, str(tmp_path), loglevel], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    level, label = result.stdout.splitlines()[-1].split()
    assert int(level) == effective
    assert label == "Worker"  # its "[^Worker]: Ready" line is what the demo, the benchmarks and the tests wait for


def test_the_workers_options_are_read_from_the_environment_once_with_bad_values_named(monkeypatch, tmp_path):
    from aromatrack.deploy.settings import load_settings

    monkeypatch.setenv("AROMATRACK_STATE_DIR", str(tmp_path))
    for name in ("AROMATRACK_WORKER_DIR", "AROMATRACK_WEB_PORT", "AROMATRACK_WEB_BIND", "AROMATRACK_SESSION_TIMEOUT_S",
                 "AROMATRACK_REST_DAYS_INTERVAL_S", "AROMATRACK_INGEST_BATCH"):
        monkeypatch.delenv(name, raising=False)
    defaults = load_settings()
    assert defaults.worker == WorkerOptions() and defaults.worker_dir == tmp_path / "faust"
    monkeypatch.setenv("AROMATRACK_WORKER_DIR", str(tmp_path / "w1"))
    monkeypatch.setenv("AROMATRACK_WEB_PORT", "6301")
    monkeypatch.setenv("AROMATRACK_SESSION_TIMEOUT_S", "6")
    monkeypatch.setenv("AROMATRACK_REST_DAYS_INTERVAL_S", "1")
    monkeypatch.setenv("AROMATRACK_INGEST_BATCH", "1")
    assert load_settings().worker == replace(WorkerOptions(), data_dir=tmp_path / "w1", web_port=6301,
                                             session_timeout_s=6.0, rest_days_interval_s=1.0, ingest_batch_size=1)
    assert load_settings().worker_dir == tmp_path / "w1"
    for name, value, problem in [("AROMATRACK_WEB_PORT", "70000", "'70000' is not a port (1 to 65535)"),
                                 ("AROMATRACK_SESSION_TIMEOUT_S", "2", "'2' is not a number of seconds (6 to 300)"),
                                 ("AROMATRACK_INGEST_BATCH", "many", "'many' is not a number of records")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValueError, match=re.escape(f"{name}: {problem}")):
            load_settings()
        monkeypatch.delenv(name)


async def test_the_workers_consumers_ask_the_broker_to_hold_an_empty_fetch_briefly(tmp_path):
    """aiokafka sends one fetch per broker at a time, without the partitions whose records are still waiting to be
    taken: a bulk import's busy timeline waits behind a fetch of the idle topics for as long as the broker holds it
    (faust's fixed 1.5 s stalled the clinical agent for that long)."""
    from aromatrack.streams import ingest
    from aromatrack.streams.rewinding_consumer import FETCH_MAX_WAIT_MS
    from aromatrack.streams.worker import create_app

    app = create_app(settings(tmp_path))
    agents_consumer = app.consumer._thread._create_worker_consumer(app.transport)
    ingest_consumer = ingest.new_consumer(settings(tmp_path))
    try:
        assert agents_consumer._fetch_max_wait_ms == ingest_consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS <= 100
    finally:
        await agents_consumer.stop()
        await ingest_consumer.stop()
