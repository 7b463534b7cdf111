"""Two API processes and two notifiers on one PostgreSQL store, as a deployment with replicas runs them: a retry
answered by the other API process is still a duplicate, racing requests put each event on Kafka once, and an alert
that both notifiers handle (two on the topic, each notifier in its own consumer group, the worst a rebalance can
do) and remind about reaches the clinician once per round."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from aromatrack.schemas import topics
from aromatrack.services.auth import Role
from aromatrack.services.store import Store
from tests.store_databases import postgres_schema

from .conftest import eventually, unique_athlete
from .test_api_kafka import end_offsets, records_since
from .test_notifier_delivery import SECRET, WebhookReceiver, make_alert, produce, start_group_at_end

RENOTIFY_S = 3.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """An `aromatrack ...` subprocess, terminated (and waited for) on exit."""
    with open(log, "ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "aromatrack.services.cli", *args], env=env, stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield child
    finally:
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def wait_for_api(port: int, child: subprocess.Popen, log: Path, timeout_s: float = 60.0) -> str:
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pytest.fail(f"API process exited ({child.returncode}): {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/openapi.json", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"API process did not answer on {url}: {log.read_text()[-2000:]}")


@pytest.fixture
def store_dsn() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


async def test_idempotency_event_claims_and_the_delivery_log_hold_across_processes(stack, store_dsn, tmp_path):
    athlete = unique_athlete()
    store = Store(store_dsn)
    athlete_token = store.add_user(athlete, Role.ATHLETE)
    receiver = WebhookReceiver()
    clinician = "clin-" + athlete
    clinician_token = store.add_user(clinician, Role.CLINICIAN, webhook_url=receiver.url, webhook_secret=SECRET)
    store.assign(athlete, clinician)
    env = {**os.environ, **stack.as_env(), "AROMATRACK_STORE_DSN": store_dsn}
    groups = [f"notifier-test-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for group in groups:
        await start_group_at_end(stack.kafka_bootstrap, group)
    topic = topics.topic_for("scale.reading")
    before = await end_offsets(stack.kafka_bootstrap, topic)

    with ExitStack() as running:
        apis = []
        for name in ("api-a", "api-b"):
            port, log = free_port(), tmp_path / f"{name}.log"
            child = running.enter_context(process(["api", "--port", str(port)], env, log))
            apis.append((port, child, log))
        for group in groups:
            running.enter_context(process(
                ["notifier", "--group", group, "--renotify-after", str(RENOTIFY_S), "--attempts", "3",
                 "--first-delay", "0.05"], env, tmp_path / f"{group}.log"))
        api_a, api_b = (wait_for_api(port, child, log) for port, child, log in apis)
        as_athlete = {"Authorization": f"Bearer {athlete_token}"}
        route = f"/v1/athletes/{athlete}/scale-readings"
        reading = {"time": "2026-05-01T07:00:00Z", "weight_kg": 81.0, "body_fat_pct": 16.5}

        async with httpx.AsyncClient(timeout=30) as client:
            # a retry with the same Idempotency-Key, answered by the other process, replays the first answer
            keyed = {**as_athlete, "Idempotency-Key": str(uuid.uuid4())}
            first = await client.post(api_a + route, json=reading, headers=keyed)
            retry = await client.post(api_b + route, json=reading, headers=keyed)
            assert first.status_code == retry.status_code == 202
            assert retry.headers.get("Idempotent-Replayed") == "true" and retry.json() == first.json()
            [first_id] = first.json()["accepted"]
            # the same event without the key: the other process knows it as a duplicate
            again = await client.post(api_b + route, json=reading, headers=as_athlete)
            assert again.json() == {"accepted": [], "duplicates": [first_id]}

            # racing requests to both processes with overlapping batches: each event is accepted once
            batch = [{**reading, "time": f"2026-05-02T07:{minute:02d}:00Z", "event_id": f"race-{minute}"}
                     for minute in range(20)]
            answers = await asyncio.gather(*(
                client.post((api_a, api_b)[n % 2] + route, json=batch[n % 3:] + batch[:n % 3], headers=as_athlete)
                for n in range(8)))
            assert {answer.status_code for answer in answers} <= {202, 409}
            accepted = [event_id for answer in answers if answer.status_code == 202
                        for event_id in answer.json()["accepted"]]
            assert sorted(accepted) == sorted(item["event_id"] for item in batch)

            # one alert, on the topic twice, handled by both notifiers and reminded by both
            alert = make_alert(athlete)
            for _ in range(2):
                await produce(stack.kafka_bootstrap, topics.ALERTS_TOPIC, alert.model_dump_json().encode(),
                              athlete.encode())

            async def reminded_twice() -> bool:
                return len(receiver.requests) >= 3

            await eventually(reminded_twice, timeout_s=60 + 3 * RENOTIFY_S)
            acknowledged = await client.post(f"{api_b}/v1/alerts/{alert.alert_id}/acknowledge", json={},
                                              headers={"Authorization": f"Bearer {clinician_token}"})
            assert acknowledged.status_code == 200
            await asyncio.sleep(2 * RENOTIFY_S + 1)  # both notifiers look for due reminders meanwhile

    receiver.server.shutdown()
    rounds = [json.loads(body)["round"] for _, body in receiver.requests]
    assert sorted(rounds) == list(range(1, len(rounds) + 1)), f"a round was delivered twice: {rounds}"
    assert [status for _, _, status, _ in store.deliveries(alert.alert_id)] == ["delivered"] * len(rounds)
    on_kafka = [json.loads(record.value) for record in await records_since(stack.kafka_bootstrap, before)]
    # The topic also carries the workers' progress markers, which name no athlete.
    mine = sorted(message["event_id"] for message in on_kafka if message.get("athlete_id") == athlete)
    assert mine == sorted([first_id] + [item["event_id"] for item in batch])
    store.close()
