"""The local stack: real servers on loopback for `make demo` and the integration tests.

No Docker engine runs on these machines, so instead of docker-compose this starts:
- Apache Kafka (the jars `deploy/kafka_jars.py` resolves from Maven Central) in KRaft combined mode, one node
  that is broker and controller, with a generated `server.properties` suited to a single node, and
- Debian's `influxd` 1.6.7 with a generated config that binds 127.0.0.1, keeps data in the state dir and
  requires authentication; `up` creates its users and grants (deploy/influx_access.py), and
- Debian's PostgreSQL (the store's production database; the tests run the store on it and on SQLite), a cluster
  made by `initdb` under the state dir with a generated password, run as the unprivileged `postgres` user when
  we are root (the server refuses to run as root), TCP on loopback only and no Unix socket.
All bind loopback only. Each server is a detached process with a pid file; `up` is idempotent and waits
until each answers (the broker: until it answers a metadata request naming itself).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import pwd
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
import tempfile
from typing import Callable, Iterator

from . import influx_access, kafka_jars
from .settings import API_PORT, Settings


class StackError(RuntimeError):
    """A server could not be installed, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class Server:
    name: str
    host: str
    port: int
    command: Callable[[Settings], list[str]]
    ready: Callable[[str, int], bool]
    other_ports: tuple[int, ...] = ()  # bound besides `port` (the broker's controller listener)
    start_timeout_s: float = 30.0
    stop_timeout_s: float = 20.0
    stop_signal: int = signal.SIGTERM


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _bindable(host: str, port: int) -> bool:
    """Whether a server could listen on the port now, as the broker binds (address reuse on): nothing listens
    there, and no connection uses it as its local port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(host: str, preferred: int, count: int, attempts: int = 50) -> int:
    """`preferred` if it and the `count - 1` ports after it can be bound, else the first such run above it.

    A throwaway stack's fixed ports lie in the range the kernel takes outgoing connections' local ports from
    (32768-60999 by default): once, the broker of four fault tests in a row exited at start and the fifth started
    on the same ports, most likely because some connection held one of them as its local port until it closed
    (the broker's log went with the throwaway state)."""
    for start in range(preferred, preferred + attempts * count, count):
        if all(_bindable(host, port) for port in range(start, start + count)):
            return start
    raise StackError(f"no {count} free ports on {host} from {preferred} on")


def _influx_ready(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ping", timeout=1) as response:
            return response.status == 204
    except (urllib.error.URLError, OSError):
        return False


# The broker's controller listener (KRaft) sits on the port after the client one.
CONTROLLER_PORT_OFFSET = 1
KAFKA_HEAP = "-Xmx512m"  # fits beside the tests' workers on a 2-core, shared machine


def _java_binary() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError(
            "java is not installed: the local broker is Apache Kafka on the JVM; run `make install` "
            "(it installs Debian's openjdk-17-jre-headless) or `apt-get install openjdk-17-jre-headless`"
        )
    return java


def _kafka_libs() -> Path:
    try:
        return kafka_jars.resolve()
    except kafka_jars.JarsError as exc:
        raise StackError(str(exc)) from None


def _kafka_config(settings: Settings, host: str, port: int) -> Path:
    """server.properties for one node that is broker and controller; data and logs under the state dir."""
    root = settings.state_dir / "kafka"
    root.mkdir(parents=True, exist_ok=True)
    controller = f"{host}:{port + CONTROLLER_PORT_OFFSET}"
    config = root / "server.properties"
    config.write_text(
        f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{controller}
listeners=PLAINTEXT://{host}:{port},CONTROLLER://{controller}
advertised.listeners=PLAINTEXT://{host}:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={root / 'data'}
# As in docker-compose and the Helm chart: topics are created by the services with their partition count
# (`ensure_topics`, faust's declarations), never by a client that asks for one first (Kafka would create it with
# one partition, and a worker computing an athlete's partition over four would crash on it).
auto.create.topics.enable=false
# One node: the internal topics cannot have more replicas than that.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
# A group's first member is assigned at once rather than after 3 s (workers and tests start one by one).
group.initial.rebalance.delay.ms=0
# The cleaner compacts faust's changelogs; it looks for work every second instead of every 15.
log.cleaner.enable=true
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=16777216
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
"""
    )
    (root / "log4j.properties").write_text(
        """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=INFO
"""
    )
    return config


def _kafka_command(settings: Settings, host: str, port: int) -> list[str]:
    """Write the config, format the storage once (KRaft needs a cluster id on disk), return the broker's command."""
    java = _java_binary()
    classpath = f"{_kafka_libs()}/*"
    config = _kafka_config(settings, host, port)
    root = config.parent
    if not (root / "data" / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        formatted = subprocess.run(
            # `--cluster-id=`: an id starting with "-" (1 in 64 of them) was taken for an option ("expected one argument")
            [java, "-cp", classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config)],
            capture_output=True,
            text=True,
        )
        if formatted.returncode != 0:
            raise StackError(f"kafka: formatting {root / 'data'} failed: {formatted.stdout}{formatted.stderr}")
    return [
        java,
        KAFKA_HEAP,
        "-Xms128m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{root / 'log4j.properties'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(config),
    ]


def _kafka_ready(host: str, port: int) -> bool:
    """True when the broker answers a Metadata request (v1) that lists at least one broker and a controller."""
    client_id = b"aromatrack-stack"
    # api_key 3 (Metadata), version 1, correlation id 1, client id, topics: an empty array (none, just brokers)
    body = struct.pack(">hhih", 3, 1, 1, len(client_id)) + client_id + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _read_exactly(sock, 4))[0]
            response = _read_exactly(sock, size)
    except (OSError, struct.error):
        return False
    correlation_id, broker_count = struct.unpack_from(">ii", response, 0)
    if correlation_id != 1 or broker_count < 1:
        return False
    offset = 8
    for _ in range(broker_count):  # node_id, host, port, rack
        offset += 4
        (host_length,) = struct.unpack_from(">h", response, offset)
        offset += 2 + host_length + 4
        (rack_length,) = struct.unpack_from(">h", response, offset)
        offset += 2 + max(rack_length, 0)
    (controller_id,) = struct.unpack_from(">i", response, offset)
    return controller_id >= 0


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


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


# The local cluster's superuser and database (the store's tables live in it); its password is generated at initdb
POSTGRES_USER = POSTGRES_DB = "aromatrack"
DEBIAN_POSTGRESQL = Path("/usr/lib/postgresql")
# Debian's system user for PostgreSQL (the package creates it): the server refuses to run as root.
POSTGRES_SYSTEM_USER = "postgres"


def _postgres_bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (Debian keeps them off PATH, under /usr/lib/postgresql/N/bin)."""
    found = sorted(DEBIAN_POSTGRESQL.glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    initdb = str(found[-1]) if found else shutil.which("initdb")
    if not initdb:
        raise StackError(
            "PostgreSQL is not installed (no initdb): the store's server is Debian's postgresql; run `make install` "
            "(deploy/install-system-packages.sh installs it) or `apt-get install postgresql`"
        )
    return Path(initdb).parent


def _as_postgres_user(settings: Settings) -> list[str]:
    """The command prefix that runs the server's tools unprivileged: as Debian's `postgres` user when we are root,
    as ourselves otherwise.

    When a directory above the state dir lets only root pass (a checkout under `mktemp -d`), that user gets
    CAP_DAC_READ_SEARCH to reach its cluster; the capability also lets it read other files, acceptable for a
    loopback-only, password-protected test and demo server, and not given when the path is open."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        raise StackError(f"PostgreSQL refuses to run as root and there is no {POSTGRES_SYSTEM_USER!r} user to run it "
                         "as; install Debian's postgresql package (it creates the user)") from None
    reach = [] if _passable(settings.state_dir, user.pw_uid) else [
        "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *reach, "--reset-env"]


def _passable(directory: Path, uid: int) -> bool:
    """Whether a process of `uid` (no supplementary groups) may pass through `directory` and all above it."""
    for parent in (directory, *directory.parents):
        info = parent.stat()
        if not (info.st_mode & 0o001 or (info.st_uid == uid and info.st_mode & 0o100)):
            return False
    return True


def _postgres_root(settings: Settings) -> Path:
    return settings.state_dir / "postgresql"


def postgres_password(settings: Settings) -> str:
    try:
        return (_postgres_root(settings) / "password").read_text().strip()
    except FileNotFoundError:
        raise StackError("the local PostgreSQL has no cluster yet: run `aromatrack stack up`") from None


def postgres_dsn(settings: Settings, *, with_password: bool = True) -> str:
    """The local cluster's database as a libpq/SQLAlchemy URL (for AROMATRACK_STORE_DSN, or the tests)."""
    host, port = settings.postgres_host_port
    secret = f":{postgres_password(settings)}" if with_password else ""
    return f"postgresql://{POSTGRES_USER}{secret}@{host}:{port}/{POSTGRES_DB}"


def _postgres_command(settings: Settings, host: str, port: int) -> list[str]:
    """Make the cluster once (initdb, a generated password, the store's database), return the server's command.

    The cluster's directory belongs to the user the server runs as (`_as_postgres_user`)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    bin_dir, as_user = _postgres_bin_dir(), _as_postgres_user(settings)
    root, data = _postgres_root(settings), _postgres_root(settings) / "data"
    owner = pwd.getpwnam(POSTGRES_SYSTEM_USER) if as_user else None
    made = root / "made"  # written once initdb and the database's creation both succeeded
    if not made.exists():
        shutil.rmtree(root, ignore_errors=True)  # a half-made cluster from an interrupted or failed first start
        root.mkdir(mode=0o700, parents=True)
        if owner:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        password = root / "password"
        password.touch(mode=0o600)
        password.write_text(secrets.token_urlsafe(24) + "\n")
        if owner:
            os.chown(password, owner.pw_uid, owner.pw_gid)
        steps = [
            [str(bin_dir / "initdb"), "-D", str(data), "-U", POSTGRES_USER, f"--pwfile={password}",
             "--auth=scram-sha-256", "-E", "UTF8", "--no-locale"],
            [str(bin_dir / "postgres"), "--single", "-D", str(data), "postgres"],
        ]
        for step, stdin in zip(steps, (None, f"CREATE DATABASE {POSTGRES_DB};\n")):
            done = subprocess.run(as_user + step, input=stdin, capture_output=True, text=True)
            if done.returncode != 0:
                raise StackError(f"postgresql: {Path(step[0]).name} failed: {done.stdout}{done.stderr}")
        made.touch()
    return as_user + [
        str(bin_dir / "postgres"), "-D", str(data), "-h", host, "-p", str(port),
        "-c", "unix_socket_directories=",
    ]


def _postgres_ready(host: str, port: int) -> bool:
    try:
        return subprocess.run([str(_postgres_bin_dir() / "pg_isready"), "-q", "-h", host, "-p", str(port)],
                              timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired, StackError):
        return False


def servers(settings: Settings, *, with_store: bool = True) -> list[Server]:
    """The stack's servers: the broker and InfluxDB, and PostgreSQL for the store unless `with_store` is False."""
    kafka_host, kafka_port = settings.kafka_host_port
    influx_url = settings.influx_url.removeprefix("http://").rstrip("/")
    influx_host, _, influx_port = influx_url.rpartition(":")
    return [
        Server(
            "kafka",
            kafka_host,
            kafka_port,
            lambda s: _kafka_command(s, kafka_host, kafka_port),
            _kafka_ready,
            other_ports=(kafka_port + CONTROLLER_PORT_OFFSET,),
            start_timeout_s=120.0,
            stop_timeout_s=60.0,
        ),
        Server(
            "influxdb",
            influx_host,
            int(influx_port),
            lambda s: [_influxd_binary(), "-config", str(_influx_config(s, influx_host, int(influx_port)))],
            _influx_ready,
        ),
    ] + ([postgres_server(settings)] if with_store else [])


def postgres_server(settings: Settings) -> Server:
    host, port = settings.postgres_host_port
    # SIGINT: PostgreSQL's fast shutdown, which ends client sessions (SIGTERM waits until every client has gone,
    # and the store's pools keep connections) and still checkpoints cleanly
    return Server("postgresql", host, port, lambda s: _postgres_command(s, host, port), _postgres_ready,
                  start_timeout_s=60.0, stop_signal=signal.SIGINT)


def api_server(settings: Settings) -> Server:
    """`aromatrack api` as a detached server on loopback: the demo leaves it running for the clinicians' inbox."""
    return Server(
        "api",
        "127.0.0.1",
        API_PORT,
        lambda s: ["env", *(f"{k}={v}" for k, v in s.as_env().items()),
                   sys.executable, "-m", "aromatrack.services.cli", "api", "--port", str(API_PORT)],
        _port_open,
    )


def _pid_file(settings: Settings, server: Server) -> Path:
    return settings.state_dir / f"{server.name}.pid"


def _running_pid(settings: Settings, server: Server) -> int | None:
    pid_file = _pid_file(settings, server)
    try:
        pid = int(pid_file.read_text())
        _reap(pid)  # a server this process started and something killed is a zombie until reaped
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def start(settings: Settings, server: Server) -> str:
    """Start one server unless ours already runs; waits until it answers."""
    running = _running_pid(settings, server)
    if running:
        if _wait_ready(server, server.start_timeout_s, lambda: _running_pid(settings, server) is not None):
            return f"{server.name}: already running on {server.host}:{server.port}"
        raise StackError(
            f"{server.name}: our process {running} runs but does not answer on {server.host}:{server.port}; "
            f"see {settings.state_dir / (server.name + '.log')}, then `aromatrack stack down` and up again"
        )
    for port in (server.port, *server.other_ports):
        if _port_open(server.host, port):
            raise StackError(
                f"{server.name}: port {server.host}:{port} is taken by another process; stop it, or point "
                "AROMATRACK_KAFKA (its port and the next) / AROMATRACK_INFLUX_URL at free ports"
            )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    command = server.command(settings)
    log_path = settings.state_dir / f"{server.name}.log"
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    _pid_file(settings, server).write_text(str(process.pid))
    if _wait_ready(server, server.start_timeout_s, lambda: process.poll() is None):
        return f"{server.name}: started on {server.host}:{server.port} (pid {process.pid})"
    if process.poll() is not None:
        raise StackError(f"{server.name}: exited with status {process.returncode}; see {log_path}")
    raise StackError(
        f"{server.name}: did not answer on {server.host}:{server.port} in {server.start_timeout_s:.0f}s; see {log_path}"
    )


def _wait_ready(server: Server, timeout_s: float, alive: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        if server.ready(server.host, server.port):
            return True
        time.sleep(0.2)
    return False


def stop(settings: Settings, server: Server) -> str:
    """Signal our server's process group (SIGTERM; PostgreSQL: SIGINT) and wait until it exits and its ports are
    free (SIGKILL after `stop_timeout_s`). The broker's clean shutdown flushes its logs and writes its clean-shutdown
    marker."""
    pid = _running_pid(settings, server)
    if pid is None:
        _pid_file(settings, server).unlink(missing_ok=True)
        return f"{server.name}: not running"
    os.killpg(pid, server.stop_signal)
    if not _wait_gone(server, pid, server.stop_timeout_s):
        os.killpg(pid, signal.SIGKILL)
        _wait_gone(server, pid, 10.0)
    _pid_file(settings, server).unlink(missing_ok=True)
    return f"{server.name}: stopped"


def kill(settings: Settings, server: Server) -> None:
    """SIGKILL our server (fault tests: a crash, no shutdown at all) and wait until it is gone."""
    pid = _running_pid(settings, server)
    if pid is None:
        raise StackError(f"{server.name}: not running")
    os.killpg(pid, signal.SIGKILL)
    _wait_gone(server, pid, 10.0)
    _pid_file(settings, server).unlink(missing_ok=True)


def _wait_gone(server: Server, pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not _group_alive(pid) and not any(_port_open(server.host, p) for p in (server.port, *server.other_ports)):
            return True
        time.sleep(0.1)
    return False


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
    if answering or _port_open(server.host, server.port):
        return f"{server.name}: something else answers on {server.host}:{server.port}"
    return f"{server.name}: stopped"


def up(settings: Settings, *, with_store: bool = True) -> list[str]:
    influx_access.ensure_users_file(settings)
    started = [start(settings, server) for server in servers(settings, with_store=with_store)]
    try:
        started.append(influx_access.provision(settings))
    except influx_access.AccessError as exc:
        raise StackError(str(exc)) from None
    if with_store:
        started.append(f"postgresql: the store's DSN is {postgres_dsn(settings, with_password=False)} (password in "
                       f"{_postgres_root(settings) / 'password'}); set AROMATRACK_STORE_DSN to use it")
    return started


def down(settings: Settings) -> list[str]:
    """Stop the servers, and the demo's API first if it runs (it uses both)."""
    api = api_server(settings)
    stopped_api = [stop(settings, api)] if _running_pid(settings, api) else []
    return stopped_api + [stop(settings, server) for server in reversed(servers(settings))]


def report(settings: Settings) -> list[str]:
    return [status(settings, server) for server in servers(settings)]


@contextlib.contextmanager
def throwaway_stack(kafka_port: int, influx_port: int) -> Iterator[Settings]:
    """A broker and InfluxDB with empty state on the given loopback ports (or the next free ones), removed
    afterwards (no PostgreSQL).

    For benchmarks and fault tests that must start from empty topics or restart servers freely.
    """
    from .settings import load_settings

    host = "127.0.0.1"
    kafka_port = free_ports(host, kafka_port, 1 + CONTROLLER_PORT_OFFSET)
    influx_port = free_ports(host, influx_port, 3)  # its HTTP port, and its RPC port two above
    with tempfile.TemporaryDirectory(prefix="aromatrack-") as state_dir:
        settings = dataclasses.replace(
            load_settings(),
            kafka_bootstrap=f"{host}:{kafka_port}",
            influx_url=f"http://{host}:{influx_port}",
            state_dir=Path(state_dir),
        )
        up(settings, with_store=False)
        try:
            yield settings
        finally:
            down(settings)
