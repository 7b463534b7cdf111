"""The probes' routes against the real broker: the worker's /readyz means "partitions assigned and tables
recovered" and follows a rebalance; the API's and the notifier's answer once they are connected.

The workers run on a throwaway stack of their own (two workers of one app, a clean consumer group); the API and
the notifier run on the shared test stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import httpx
from aromatrack.deploy import local_stack
from aromatrack.schemas import topics

from .conftest import Worker, eventually, reader_passwords


def status(url: str) -> tuple[int, dict]:
    """(status, JSON body) of a GET, or (0, {}) while nothing listens."""
    try:
        response = httpx.get(url, timeout=5)
    except httpx.TransportError:
        return 0, {}
    return response.status_code, response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {}


async def wait_ready(url: str, timeout_s: float = 90) -> dict:
    seen: dict = {}

    async def ready() -> bool:
        code, body = status(url + "/readyz")
        seen.update(body)
        return code == 200 and body.get("ready") is True

    await eventually(ready, timeout_s=timeout_s, every_s=0.5)
    return seen


def described(*workers: Worker) -> str:
    """What each worker's /readyz answers now, whether it exited, and its log's warnings and errors: the message of
    a wait that gave up (a CI run's output has only the test's)."""
    answers = []
    for worker in workers:
        port = worker.extra_env["AROMATRACK_WEB_PORT"]
        exit_code = worker.process.poll() if worker.process else None
        answers.append(f"port {port}: {status(f'http://127.0.0.1:{port}/readyz')}, exit code {exit_code}, "
                       f"{worker.log_digest()}")
    return "; ".join(answers)


async def test_worker_readiness_means_partitions_held_and_tables_recovered_and_follows_a_rebalance(tmp_path):
    ingest_partitions = len(topics.INGEST_TOPICS) * topics.PARTITIONS
    with local_stack.throwaway_stack(39721, 38721) as settings:
        first = Worker(settings, "health", tmp_path / "first.log", AROMATRACK_WEB_PORT="6301",
                       AROMATRACK_SESSION_TIMEOUT_S="6")
        second = Worker(settings, "health", tmp_path / "second.log", AROMATRACK_WEB_PORT="6302",
                        AROMATRACK_SESSION_TIMEOUT_S="6")
        try:
            first.start(timeout_s=90)
            alone = await wait_ready("http://127.0.0.1:6301")
            assert alone["ingest_partitions"] == ingest_partitions and alone["agent_partitions"] > 0, alone
            assert not alone["rebalancing"] and not alone["recovering"], alone
            assert status("http://127.0.0.1:6301/livez") == (200, {"alive": True})
            # faust's table and router views would answer table contents (health data): they are off.
            assert httpx.get("http://127.0.0.1:6301/table/", timeout=5).status_code == 404

            second.start(timeout_s=90)

            async def shared() -> bool:
                answers = [status(f"http://127.0.0.1:{port}/readyz") for port in (6301, 6302)]
                return all(code == 200 for code, _ in answers) and all(
                    body["ingest_partitions"] == ingest_partitions // 2 for _, body in answers)

            await eventually(shared, timeout_s=120, every_s=0.5, describe=lambda: described(first, second))
            halves = [status(f"http://127.0.0.1:{port}/readyz")[1] for port in (6301, 6302)]
            assert sum(body["agent_partitions"] for body in halves) == alone["agent_partitions"], halves

            # The second worker's host gone without a goodbye: the first holds everything again once the group
            # has noticed and its tables are recovered for the partitions it took over.
            second.stop(signal.SIGKILL)

            async def whole_again() -> bool:
                code, body = status("http://127.0.0.1:6301/readyz")
                return code == 200 and body["ingest_partitions"] == ingest_partitions and (
                    body["agent_partitions"] == alone["agent_partitions"])

            await eventually(whole_again, timeout_s=120, every_s=0.5, describe=lambda: described(first))
        finally:
            for worker in (first, second):
                if worker.process and worker.process.poll() is None:
                    worker.stop()


def spawn(env: dict, *args: str, log_path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aromatrack.services.cli", *args], env=env,
                            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


async def test_api_health_answers_without_a_token_once_its_broker_connection_is_open(stack, tmp_path):
    env = {**os.environ, **stack.as_env(), "AROMATRACK_STATE_DIR": str(tmp_path), **reader_passwords(stack)}
    api = spawn(env, "api", "--port", "38781", log_path=tmp_path / "api.log")
    try:
        assert await wait_ready("http://127.0.0.1:38781", timeout_s=60) == {"ready": True}
        assert status("http://127.0.0.1:38781/livez") == (200, {"alive": True})
        # Everything else still wants a token.
        assert httpx.get("http://127.0.0.1:38781/v1/athletes/ath-1/alerts", timeout=5).status_code == 401
    finally:
        # uvicorn shuts down cleanly, then re-raises the SIGTERM it caught.
        assert stop(api) in (0, -signal.SIGTERM), (tmp_path / "api.log").read_text()


async def test_notifier_health_is_ready_once_it_holds_the_alert_partitions(stack, tmp_path):
    env = {**os.environ, **stack.as_env(), "AROMATRACK_STATE_DIR": str(tmp_path), **reader_passwords(stack)}
    notifier = spawn(env, "notifier", "--group", f"notifier-health-{uuid.uuid4().hex[:8]}", "--health-port", "38782",
                     log_path=tmp_path / "notifier.log")
    try:
        assert await wait_ready("http://127.0.0.1:38782", timeout_s=120) == {"ready": True,
                                                                            "partitions": topics.PARTITIONS}
        assert status("http://127.0.0.1:38782/livez") == (200, {"alive": True})
    finally:
        assert stop(notifier) == 0, (tmp_path / "notifier.log").read_text()
    assert status("http://127.0.0.1:38782/readyz") == (0, {})  # the port closes with the notifier
