"""The local stack: real servers on loopback for `make demo` and the integration tests.

No Docker engine runs on these machines, so instead of docker-compose this starts:
- the `noida-db` binary (PyPI) with only its Kafka wire-protocol service enabled, and
- Debian's `influxd` 1.6.7 with a generated config that binds 127.0.0.1, keeps data in the state dir and
  requires authentication; `up` creates its users and grants (deploy/influx_access.py).
Each server is a detached process with a pid file; `up` is idempotent and waits until each answers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
import tempfile
from typing import Callable, Iterator

from . import influx_access
from .settings import Settings


class StackError(RuntimeError):
    """A server could not be installed, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class Server:
    name: str
    host: str
    port: int
    command: Callable[[Settings], list[str]]
    ready: Callable[[str, int], bool]


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _influx_ready(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=1) as response:
            return response.status == 204
    except (urllib.error.URLError, OSError):
        return False


def _noida_binary() -> str:
    binary = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
    if not Path(binary).exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "noida-db==0.2.3"], check=True)
    return binary


def _influxd_binary() -> str:
    binary = shutil.which("influxd")
    if binary:
        return binary
    print("installing influxdb from Debian packages (apt-get)...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "influxdb"], check=True, env=env)
        # The package's own service would listen on all interfaces; we run our own influxd instead.
        subprocess.run(["sh", "-c", "service influxdb stop >/dev/null 2>&1 || true"], env=env)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise StackError(f"could not install influxdb with apt-get ({exc}); install it and retry") from None
    binary = shutil.which("influxd")
    if not binary:
        raise StackError("apt-get installed influxdb but no influxd is on PATH")
    return binary


def _influx_config(settings: Settings, host: str, port: int) -> Path:
    root = settings.state_dir / "influxdb"
    root.mkdir(parents=True, exist_ok=True)
    config = root / "influxdb.conf"
    config.write_text(
        f"""reporting-disabled = true
bind-address = "{host}:{port + 2}"
[meta]
  dir = "{root / 'meta'}"
[data]
  dir = "{root / 'data'}"
  wal-dir = "{root / 'wal'}"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "{host}:{port}"
  log-enabled = false
  flux-enabled = false
  auth-enabled = true
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"""
    )
    return config


def servers(settings: Settings) -> list[Server]:
    kafka_host, kafka_port = settings.kafka_host_port
    influx_url = settings.influx_url.removeprefix("http://").rstrip("/")
    influx_host, _, influx_port = influx_url.rpartition(":")
    return [
        Server(
            "kafka",
            kafka_host,
            kafka_port,
            lambda s: [
                _noida_binary(),
                "start",
                "--only",
                "kafka",
                "--host",
                kafka_host,
                "--kafka-port",
                str(kafka_port),
                "--data-dir",
                str(s.state_dir / "broker"),
            ],
            _port_open,
        ),
        Server(
            "influxdb",
            influx_host,
            int(influx_port),
            lambda s: [_influxd_binary(), "-config", str(_influx_config(s, influx_host, int(influx_port)))],
            _influx_ready,
        ),
    ]


def _pid_file(settings: Settings, server: Server) -> Path:
    return settings.state_dir / f"{server.name}.pid"


def _running_pid(settings: Settings, server: Server) -> int | None:
    pid_file = _pid_file(settings, server)
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def start(settings: Settings, server: Server, *, timeout_s: float = 30.0) -> str:
    """Start one server unless ours already runs; waits until it answers."""
    if _running_pid(settings, server) and server.ready(server.host, server.port):
        return f"{server.name}: already running on {server.host}:{server.port}"
    if _port_open(server.host, server.port):
        raise StackError(
            f"{server.name}: port {server.host}:{server.port} is taken by another process; stop it, or "
            "point AROMATRACK_KAFKA / AROMATRACK_INFLUX_URL at a free port"
        )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / f"{server.name}.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            server.command(settings),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(settings, server).write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{server.name}: exited with status {process.returncode}; see {log_path}")
        if server.ready(server.host, server.port):
            return f"{server.name}: started on {server.host}:{server.port} (pid {process.pid})"
        time.sleep(0.2)
    raise StackError(f"{server.name}: did not answer on {server.host}:{server.port} in {timeout_s:.0f}s; see {log_path}")


def stop(settings: Settings, server: Server, *, timeout_s: float = 20.0) -> str:
    """SIGTERM our server's process group and wait until it exits and its port is free.

    The group matters: `noida-db` is a launcher whose child is the real broker.
    """
    pid = _running_pid(settings, server)
    if pid is None:
        _pid_file(settings, server).unlink(missing_ok=True)
        return f"{server.name}: not running"
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not _group_alive(pid) and not _port_open(server.host, server.port):
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    _pid_file(settings, server).unlink(missing_ok=True)
    return f"{server.name}: stopped"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status(settings: Settings, server: Server) -> str:
    pid = _running_pid(settings, server)
    answering = server.ready(server.host, server.port)
    if pid and answering:
        return f"{server.name}: running on {server.host}:{server.port} (pid {pid})"
    if pid:
        return f"{server.name}: process {pid} is up but not answering on {server.host}:{server.port}"
    if answering:
        return f"{server.name}: something else answers on {server.host}:{server.port}"
    return f"{server.name}: stopped"


def up(settings: Settings) -> list[str]:
    influx_access.ensure_users_file(settings)
    started = [start(settings, server) for server in servers(settings)]
    try:
        return [*started, influx_access.provision(settings)]
    except influx_access.AccessError as exc:
        raise StackError(str(exc)) from None


def down(settings: Settings) -> list[str]:
    return [stop(settings, server) for server in reversed(servers(settings))]


def report(settings: Settings) -> list[str]:
    return [status(settings, server) for server in servers(settings)]


@contextlib.contextmanager
def throwaway_stack(kafka_port: int, influx_port: int) -> Iterator[Settings]:
    """A broker and InfluxDB with empty state on the given loopback ports, removed afterwards.

    For benchmarks and fault tests that must start from empty topics or restart servers freely.
    """
    from .settings import load_settings

    with tempfile.TemporaryDirectory(prefix="aromatrack-") as state_dir:
        settings = dataclasses.replace(
            load_settings(),
            kafka_bootstrap=f"127.0.0.1:{kafka_port}",
            influx_url=f"http://127.0.0.1:{influx_port}",
            state_dir=Path(state_dir),
        )
        up(settings)
        try:
            yield settings
        finally:
            down(settings)
