"""`aromatrack users` and `aromatrack notifier` as a user runs them: real subprocesses, broker, webhook and SMTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

from aromatrack.schemas import topics
from aromatrack.services.webhooks import verify

from .conftest import eventually, reader_passwords, unique_athlete
from .test_notifier_delivery import (  # noqa: F401 (fixtures)
    SECRET, SMTP_PORT, make_alert, mailbox, produce, receiver, start_group_at_end,
)


def cli(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "aromatrack.services.cli", *args], env=env, capture_output=True,
                          text=True, check=True, timeout=60)
    return done.stdout.strip()


async def test_the_notifier_command_delivers_and_stops_cleanly(stack, tmp_path, receiver, mailbox):
    # Its own state dir (user store), so the InfluxDB readers' passwords come the production way, by environment.
    env = {**os.environ, "AROMATRACK_STATE_DIR": str(tmp_path), **reader_passwords(stack)}
    athlete = unique_athlete()
    assert cli(env, "users", "add", athlete, "--role", "athlete").startswith("at_")
    cli(env, "users", "add", "dr-" + athlete, "--role", "clinician", "--email", "dr@clinic.test",
        "--webhook-url", receiver.url, "--webhook-secret", SECRET)
    cli(env, "users", "assign", athlete, "dr-" + athlete)
    group = f"notifier-cli-{uuid.uuid4().hex[:8]}"
    await start_group_at_end(stack.kafka_bootstrap, group)
    process = subprocess.Popen(
        [sys.executable, "-m", "aromatrack.services.cli", "notifier", "--group", group,
         "--smtp-host", "127.0.0.1", "--smtp-port", str(SMTP_PORT)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        alert = make_alert(athlete)
        await produce(stack.kafka_bootstrap, topics.ALERTS_TOPIC, alert.model_dump_json().encode(), athlete.encode())

        async def delivered() -> bool:
            return len(receiver.requests) == 1 and len(mailbox.messages) == 1

        await eventually(delivered)
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    headers, body = receiver.requests[0]
    assert verify(SECRET, body, headers) and json.loads(body)["alert"]["alert_id"] == alert.alert_id
    assert f"alert {alert.alert_id} delivered via webhook:dr-{athlete}" in output
    assert alert.summary not in output and "pg/mL" not in output  # no alert content in the logs
