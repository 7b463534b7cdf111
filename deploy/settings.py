"""Where the servers are: one place for addresses and paths, overridable by environment variables.

Defaults are loopback addresses on uncommon ports, so a local stack never collides with, or exposes,
a developer's own Kafka or InfluxDB.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# `aromatrack api` listens on loopback at this port unless told otherwise.
API_PORT = 38480


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str
    influx_url: str
    influx_database: str
    state_dir: Path
    app_id: str
    # The API's and notifier's store: a SQLAlchemy/libpq URL (`postgresql://user@host:5432/db`); None is the
    # embedded SQLite file under the state dir. Its password may come apart from it (`store_password`).
    store_dsn: str | None = None
    store_password: str | None = None
    # Where `aromatrack stack up` runs its own PostgreSQL (loopback); the store uses it only if `store_dsn` says so.
    postgres_address: str = "127.0.0.1:38432"

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        host, _, port = self.kafka_bootstrap.split(",")[0].rpartition(":")
        return host, int(port)

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
            "AROMATRACK_POSTGRES": self.postgres_address,
            **({"AROMATRACK_STORE_DSN": self.store_dsn} if self.store_dsn else {}),
            **({"AROMATRACK_STORE_PASSWORD": self.store_password} if self.store_password else {}),
        }


def load_settings() -> Settings:
    """Settings from AROMATRACK_* environment variables, with loopback defaults."""
    return Settings(
        kafka_bootstrap=os.environ.get("AROMATRACK_KAFKA", "127.0.0.1:39092"),
        influx_url=os.environ.get("AROMATRACK_INFLUX_URL", "http://127.0.0.1:38086"),
        influx_database=os.environ.get("AROMATRACK_INFLUX_DB", "aromatrack"),
        state_dir=Path(os.environ.get("AROMATRACK_STATE_DIR", PROJECT_ROOT / ".state")),
        # The faust app id is also the consumer group and the prefix of its table changelogs.
        app_id=os.environ.get("AROMATRACK_APP_ID", "aromatrack"),
        store_dsn=os.environ.get("AROMATRACK_STORE_DSN") or None,
        store_password=os.environ.get("AROMATRACK_STORE_PASSWORD") or None,
        postgres_address=os.environ.get("AROMATRACK_POSTGRES", "127.0.0.1:38432"),
    )
