"""Where the servers are: one place for addresses and paths, overridable by environment variables.

Defaults are loopback addresses on uncommon ports, so a local stack never collides with, or exposes,
a developer's own Kafka or InfluxDB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# `aromatrack api` listens on loopback at this port unless told otherwise.
API_PORT = 38480
# The assays a lab result may name (lab.result v1 `method`).
LAB_METHODS = ("lc_msms", "immunoassay")


def parse_lab_methods(pairs: Iterable[str]) -> dict[str, str]:
    """`LAB=METHOD` items as a mapping; ValueError names a malformed one."""
    methods = {}
    for pair in pairs:
        lab, _, method = pair.strip().partition("=")
        if not lab or method not in LAB_METHODS:
            raise ValueError(f"{pair!r}: expected LAB=lc_msms or LAB=immunoassay")
        methods[lab] = method
    return methods


@dataclass(frozen=True)
class WorkerOptions:
    """What differs between the stream workers of one app (`aromatrack worker` flags, or the environment).

    Several workers of one app on one host each need their own directory and, if served, their own web port;
    these are not passed on to child processes (`Settings.as_env`), which choose their own.
    """

    # faust's datadir; None is `state_dir/faust`. A directory in use by a running worker is refused.
    data_dir: Path | None = None
    # The health routes and faust's counters (streams/health.py); None serves no web port.
    web_port: int | None = None
    # Loopback unless a deployment needs its probes to reach the port from outside the host (a pod: 0.0.0.0).
    web_bind: str = "127.0.0.1"
    # How long a consumer group waits for a silent (killed) worker before its partitions move to the others;
    # None leaves faust's 60 s and aiokafka's 10 s (the ingest consumer). Failover tests set a few seconds.
    session_timeout_s: float | None = None
    # How often every athlete's load model is carried through today (streams/workouts.py); the tests use 1 s.
    rest_days_interval_s: float = 3600.0
    # Records per ingest batch; 1 turns batching off, for benchmarks/bench_ingest.py's comparison.
    ingest_batch_size: int = 1000
    # Events of one athlete's clinical timeline kept in memory: a release settles a longer one to about a third of
    # this (streams/clinical.py). Lower saves memory; an event older than what is kept reads the history back.
    timeline_events: int = 1500


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str
    influx_url: str
    influx_database: str
    state_dir: Path
    app_id: str
    # The clinical engine's settings that the stream workers and `aromatrack evaluate` must share to give the
    # same alerts: each lab's assay when its results name none, and when an alert is imported history.
    lab_methods: tuple[tuple[str, str], ...] = ()
    historical_after_days: float = 14.0
    # The API's and notifier's store: a SQLAlchemy/libpq URL (`postgresql://user@host:5432/db`); None is the
    # embedded SQLite file under the state dir. Its password may come apart from it (`store_password`).
    store_dsn: str | None = None
    store_password: str | None = None
    # Where `aromatrack stack up` runs its own PostgreSQL (loopback); the store uses it only if `store_dsn` says so.
    postgres_address: str = "127.0.0.1:38432"
    # faust's processing guarantee: "at_least_once", faust's default, or "exactly_once", which fences a worker cut
    # off from the group (streams/fencing.py; opt-in until what README "Several hosts" lists is solved).
    processing_guarantee: str = "at_least_once"
    worker: WorkerOptions = WorkerOptions()

    @property
    def worker_dir(self) -> Path:
        """This worker's own directory (faust's datadir)."""
        return self.worker.data_dir or self.state_dir / "faust"

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        host, _, port = self.kafka_bootstrap.split(",")[0].rpartition(":")
        return host, int(port)

    def engine_settings(self):
        """The clinical engine's settings: the stream workers', and `aromatrack evaluate`'s by default."""
        from aromatrack.domain.engine import EngineSettings
        from aromatrack.domain.rules import RuleSettings

        return EngineSettings(rules=RuleSettings(default_method_by_lab=dict(self.lab_methods)),
                              historical_after_days=self.historical_after_days)

    @property
    def postgres_host_port(self) -> tuple[str, int]:
        host, _, port = self.postgres_address.rpartition(":")
        return host, int(port)

    @property
    def store_url(self) -> str:
        """The store's database as a SQLAlchemy URL, its password filled in from `store_password`."""
        if not self.store_dsn:
            return f"sqlite:///{self.state_dir / 'api.sqlite3'}"
        from sqlalchemy import make_url  # here: the CLI imports settings and starts fast

        url = make_url(self.store_dsn)
        if self.store_password and url.password is None:
            url = url.set(password=self.store_password)
        return url.render_as_string(hide_password=False)

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables a child process (a worker) reads."""
        return {
            "AROMATRACK_KAFKA": self.kafka_bootstrap,
            "AROMATRACK_INFLUX_URL": self.influx_url,
            "AROMATRACK_INFLUX_DB": self.influx_database,
            "AROMATRACK_STATE_DIR": str(self.state_dir),
            "AROMATRACK_APP_ID": self.app_id,
            "AROMATRACK_LAB_METHODS": ",".join(f"{lab}={method}" for lab, method in self.lab_methods),
            "AROMATRACK_HISTORICAL_AFTER_DAYS": str(self.historical_after_days),
            "AROMATRACK_POSTGRES": self.postgres_address,
            "AROMATRACK_PROCESSING_GUARANTEE": self.processing_guarantee,
            **({"AROMATRACK_STORE_DSN": self.store_dsn} if self.store_dsn else {}),
            **({"AROMATRACK_STORE_PASSWORD": self.store_password} if self.store_password else {}),
        }


def _env_lab_methods() -> tuple[tuple[str, str], ...]:
    items = os.environ.get("AROMATRACK_LAB_METHODS", "")
    try:
        return tuple(parse_lab_methods(items.split(",") if items else []).items())
    except ValueError as exc:
        raise ValueError(f"AROMATRACK_LAB_METHODS: {exc}") from None


PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")  # the first is the default


def _env_choice(name: str, choices: tuple[str, ...]) -> str:
    text = os.environ.get(name, "") or choices[0]
    if text not in choices:
        raise ValueError(f"{name}: {text!r} is not one of {', '.join(choices)}")
    return text


def _env_number(name: str, default: float | None, what: str, minimum: float, maximum: float = float("inf"),
                number: type = float) -> float | None:
    """A number from the environment (`default` when unset or empty); a ValueError names the variable."""
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = number(text)
    except ValueError:
        value = None
    if value is None or not minimum <= value <= maximum:
        bounds = f"{minimum:g} to {maximum:g}" if maximum < float("inf") else f"at least {minimum:g}"
        raise ValueError(f"{name}: {text!r} is not {what} ({bounds})")
    return value


def _env_worker_options() -> WorkerOptions:
    data_dir = os.environ.get("AROMATRACK_WORKER_DIR")
    return WorkerOptions(
        data_dir=Path(data_dir) if data_dir else None,
        web_port=_env_number("AROMATRACK_WEB_PORT", None, "a port", 1, 65535, number=int),
        web_bind=os.environ.get("AROMATRACK_WEB_BIND") or "127.0.0.1",
        session_timeout_s=_env_number("AROMATRACK_SESSION_TIMEOUT_S", None, "a number of seconds", 6, 300),
        rest_days_interval_s=_env_number("AROMATRACK_REST_DAYS_INTERVAL_S", 3600.0, "a number of seconds", 0.001),
        ingest_batch_size=_env_number("AROMATRACK_INGEST_BATCH", 1000, "a number of records", 1, number=int),
        timeline_events=_env_number("AROMATRACK_TIMELINE_EVENTS", 1500, "a number of events", 3, number=int),
    )


def load_settings() -> Settings:
    """Settings from AROMATRACK_* environment variables, with loopback defaults, read once at start-up (the
    worker's: AROMATRACK_WORKER_DIR, _WEB_PORT, _WEB_BIND, _SESSION_TIMEOUT_S, _REST_DAYS_INTERVAL_S,
    _INGEST_BATCH, _TIMELINE_EVENTS). AROMATRACK_LAB_METHODS is `LAB=METHOD` items separated by commas; a malformed
    variable is a ValueError naming it."""
    return Settings(
        kafka_bootstrap=os.environ.get("AROMATRACK_KAFKA", "127.0.0.1:39092"),
        influx_url=os.environ.get("AROMATRACK_INFLUX_URL", "http://127.0.0.1:38086"),
        influx_database=os.environ.get("AROMATRACK_INFLUX_DB", "aromatrack"),
        state_dir=Path(os.environ.get("AROMATRACK_STATE_DIR", PROJECT_ROOT / ".state")),
        # The faust app id is also the consumer group and the prefix of its table changelogs.
        app_id=os.environ.get("AROMATRACK_APP_ID", "aromatrack"),
        lab_methods=_env_lab_methods(),
        historical_after_days=_env_number("AROMATRACK_HISTORICAL_AFTER_DAYS", 14.0, "a number of days", 0),
        store_dsn=os.environ.get("AROMATRACK_STORE_DSN") or None,
        store_password=os.environ.get("AROMATRACK_STORE_PASSWORD") or None,
        postgres_address=os.environ.get("AROMATRACK_POSTGRES", "127.0.0.1:38432"),
        processing_guarantee=_env_choice("AROMATRACK_PROCESSING_GUARANTEE", PROCESSING_GUARANTEES),
        worker=_env_worker_options(),
    )
