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

    @property
    def kafka_host_port(self) -> tuple[str, int]:
        host, _, port = self.kafka_bootstrap.split(",")[0].rpartition(":")
        return host, int(port)

    def as_env(self) -> dict[str, str]:
        """These settings as the environment variables a child process (a worker) reads."""
        return {
            "AROMATRACK_KAFKA": self.kafka_bootstrap,
            "AROMATRACK_INFLUX_URL": self.influx_url,
            "AROMATRACK_INFLUX_DB": self.influx_database,
            "AROMATRACK_STATE_DIR": str(self.state_dir),
            "AROMATRACK_APP_ID": self.app_id,
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
    )
