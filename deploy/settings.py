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


def _env_days(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    try:
        days = float(text) if text else default
    except ValueError:
        days = -1.0
    if not days >= 0:
        raise ValueError(f"{name}: {text!r} is not a number of days")
    return days


def load_settings() -> Settings:
    """Settings from AROMATRACK_* environment variables, with loopback defaults. AROMATRACK_LAB_METHODS is
    `LAB=METHOD` items separated by commas; a malformed variable is a ValueError naming it."""
    return Settings(
        kafka_bootstrap=os.environ.get("AROMATRACK_KAFKA", "127.0.0.1:39092"),
        influx_url=os.environ.get("AROMATRACK_INFLUX_URL", "http://127.0.0.1:38086"),
        influx_database=os.environ.get("AROMATRACK_INFLUX_DB", "aromatrack"),
        state_dir=Path(os.environ.get("AROMATRACK_STATE_DIR", PROJECT_ROOT / ".state")),
        # The faust app id is also the consumer group and the prefix of its table changelogs.
        app_id=os.environ.get("AROMATRACK_APP_ID", "aromatrack"),
        lab_methods=_env_lab_methods(),
        historical_after_days=_env_days("AROMATRACK_HISTORICAL_AFTER_DAYS", 14.0),
        store_dsn=os.environ.get("AROMATRACK_STORE_DSN") or None,
        store_password=os.environ.get("AROMATRACK_STORE_PASSWORD") or None,
        postgres_address=os.environ.get("AROMATRACK_POSTGRES", "127.0.0.1:38432"),
        processing_guarantee=_env_choice("AROMATRACK_PROCESSING_GUARANTEE", PROCESSING_GUARANTEES),
    )
