"""What the benchmarks share: a real worker subprocess on a given stack, and its memory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

from aromatrack.deploy import influx_access
from aromatrack.deploy.settings import Settings


@contextlib.contextmanager
def running_worker(settings: Settings, **env: str) -> Iterator[subprocess.Popen]:
    """`aromatrack worker` against `settings` (plus env overrides), ready when yielded, stopped after. Its InfluxDB
    databases, users and grants are created first (the worker's writer may not create them)."""
    influx_access.provision(settings, env.get("AROMATRACK_INFLUX_DB"))
    log_path = settings.state_dir / f"bench-worker-{time.time_ns()}.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "aromatrack.services.cli", "worker", "--loglevel", "info"],
        env={**os.environ, **settings.as_env(), **env}, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while b"[^Worker]: Ready" not in log_path.read_bytes():
            if worker.poll() is not None:
                raise SystemExit(f"worker exited: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A /proc/PID/status memory field in MB: VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop_on_sigterm() -> None:
    """Turn SIGTERM (e.g. from `timeout`) into SystemExit, so context managers stop their servers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
