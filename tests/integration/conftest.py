"""Fixtures for integration tests: the real local broker and InfluxDB (`aromatrack stack up`).

`make test` starts both on test ports before pytest runs. The stream worker is a real subprocess
(`aromatrack worker`): one for the session on the shared stack; tests that run several workers of one app
(test_workers, test_faults) start them on a throwaway stack of their own.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Awaitable, Callable, Iterator

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.protocol.group import MemberAssignment

from aromatrack.deploy import influx_access, local_stack
from aromatrack.deploy.settings import Settings, load_settings
from aromatrack.schemas.series import Audience
from aromatrack.streams.influx import InfluxClient

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Settings:
    """The running local stack; fails with a clear message if `aromatrack stack up` was not run."""
    settings = load_settings()
    states = local_stack.report(settings)
    if not all(": running" in line for line in states):
        pytest.fail("the local stack is not running (run `make test`, or `aromatrack stack up`): " + "; ".join(states))
    return settings


class Worker:
    """A real `aromatrack worker` subprocess with its own InfluxDB databases, one per audience (several workers
    of one app share them), its own directory (the log's), any extra environment (e.g.
    AROMATRACK_SESSION_TIMEOUT_S) and, optionally, a network namespace of its own to run in."""

    def __init__(self, settings: Settings, database: str, log_path: Path, netns: str | None = None, **extra_env: str):
        self.settings = settings
        self.database = database
        self.log_path = log_path
        self.netns = netns  # run on a test host of its own (tests/integration/hosts.py)
        self.extra_env = extra_env
        self.process: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ, **self.settings.as_env(), "AROMATRACK_INFLUX_DB": self.database,
            "AROMATRACK_WORKER_DIR": str(self.log_path.parent / f"{self.log_path.stem}-data"), **self.extra_env,
        }

    def start(self, timeout_s: float = 60.0) -> None:
        influx_access.provision(self.settings, self.database)
        self._ready_before = self.log_path.read_bytes().count(b"[^Worker]: Ready") if self.log_path.exists() else 0
        log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*(["ip", "netns", "exec", self.netns] if self.netns else []),
             sys.executable, "-m", "aromatrack.services.cli", "worker", "--loglevel", "info"],
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited ({self.process.returncode}); see {self.log_path}")
            if self.log_path.read_bytes().count(b"[^Worker]: Ready") > self._ready_before:
                return
            time.sleep(0.2)
        self.stop()  # a worker left running would join the next one's consumer group and break later tests
        raise RuntimeError(f"worker not ready in {timeout_s}s; see {self.log_path}")

    def log_digest(self, kinds: int = 6) -> str:
        """The most frequent warnings and errors of the worker's log, each as its first words, with its count: what a
        failed wait says of the worker (a CI run's output has the test's message only)."""
        found: Counter[str] = Counter()
        for line in self.log_path.read_text(errors="replace").splitlines():
            message = line.partition("] [WARNING] " if "] [WARNING] " in line else "] [ERROR] ")[2]
            if message:
                found[" ".join(message.split()[:8])] += 1
        return ", ".join(f"{count}x {message}" for message, count in found.most_common(kinds)) or "no warnings"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


@pytest.fixture(scope="session")
def worker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for the session (tests keep apart by using their own athlete ids)."""
    # Rest days are carried through today every second here (hourly by default), for test_rest_days.py.
    running = Worker(stack, f"it_{uuid.uuid4().hex[:8]}", tmp_path_factory.mktemp("worker") / "worker.log",
                     AROMATRACK_REST_DAYS_INTERVAL_S="1")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def influx_for(stack: Settings) -> Callable[[str, Audience], InfluxClient]:
    """A client of one audience's database under a base name, logged in as that audience's reader."""

    def make(database: str, audience: Audience) -> InfluxClient:
        store = influx_access.reader_store(replace(stack, influx_database=database), [audience], max_attempts=3)
        return store.client(audience)

    return make


def reader_passwords(stack: Settings) -> dict[str, str]:
    """The InfluxDB readers' passwords as the environment of a process with its own state dir (an API or a notifier
    over its own user store), the production way of passing them."""
    return {role.password_variable: influx_access.user(stack, role).password for role in influx_access.READER.values()}


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0, every_s: float = 0.25,
    describe: Callable[[], str] = lambda: "",
) -> None:
    """Poll an async check until it is true; fail the test with the timeout, and what `describe` says of the state
    the check last saw, otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every_s)
    pytest.fail(f"condition not met within {timeout_s}s {describe()}".rstrip())


async def group_assignments(settings: Settings, group: str) -> list[set[tuple[str, int]]]:
    """The partitions each member of a consumer group holds now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    (group_entry,) = described.to_object()["groups"]
    held = []
    for member in group_entry["members"]:
        assignment = MemberAssignment.decode(member["member_assignment"])
        held.append({(topic, partition) for topic, partitions in assignment.assignment for partition in partitions})
    return held


async def new_topic(settings: Settings, prefix: str, partitions: int) -> str:
    """A topic of its own for one test, `<prefix>-<random>`, with `partitions` partitions."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


def unique_athlete(prefix: str = "ath") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
