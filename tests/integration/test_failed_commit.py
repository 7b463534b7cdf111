"""A commit that fails across a rebalance does not stop the worker's consumer from committing that partition."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from aromatrack.streams.admin import committed_offsets

MESSAGES = 3


async def test_a_commit_failed_across_a_rebalance_is_made_again(stack, tmp_path):
    """faust records the offsets of a failed commit as committed. Across a rebalance that hands the partition back
    to the same worker, its consumer then took the partition for committed although the group held no offset: it
    neither read it again nor committed what it handled again, and the group's lag stayed for good (a two-worker
    CI run waited 300 s for a profile partition)."""
    run = uuid.uuid4().hex[:8]
    log_path = tmp_path / "app.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).parent / "apps" / "failed_commit_app.py"),
             "worker", "--loglevel", "info"],
            env={**os.environ, "FAILED_COMMIT_RUN": run, "FAILED_COMMIT_MESSAGES": str(MESSAGES),
                 "AROMATRACK_KAFKA": stack.kafka_bootstrap},
            stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True,
        )
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    partition = TopicPartition(f"failed-commit-{run}", 0)
    try:
        committed: dict = {}
        for _ in range(600):
            committed = await committed_offsets(admin, f"failed-commit-{run}", [partition])
            if committed.get(partition) == MESSAGES or process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        assert b"commit answered as failed (partitions revoked: True)" in log_path.read_bytes(), \
            f"no commit failed after the revocation; see {log_path}"
        assert committed.get(partition) == MESSAGES, f"committed {committed}; see {log_path}"
    finally:
        await admin.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
