"""A faust app on the worker's consumer (`RewindingApp`) whose first offset commit fails across a rebalance, as
a commit the broker answers with "the group has already rebalanced" does, then handles what it is sent until
stopped.

The failing commit asks the group for a rebalance and answers False (what faust's consumer answers for that error)
once the rebalance has begun: faust has revoked the partition, and records the commit's offsets as committed
afterwards, although the group holds none. The test reads the group's committed offset: it must reach the topic's end.
"""

import asyncio
import logging
import os

from aromatrack.streams.rewinding_consumer import RewindingApp

RUN = os.environ["FAILED_COMMIT_RUN"]
MESSAGES = int(os.environ["FAILED_COMMIT_MESSAGES"])

app = RewindingApp(
    f"failed-commit-{RUN}",
    broker=f"kafka://{os.environ['AROMATRACK_KAFKA']}",
    store="memory://",
    web_enabled=False,
    topic_partitions=1,
    broker_commit_interval=0.5,
)
source = app.topic(f"failed-commit-{RUN}", value_serializer="raw", partitions=1, internal=True)


@app.agent(source)
async def handle(stream):
    async for _ in stream:
        pass


def fail_the_first_commit_across_a_rebalance() -> None:
    consumer = app.consumer
    commit = consumer._commit
    failed = []

    async def request_rejoin() -> None:
        consumer._thread._ensure_consumer()._coordinator.request_rejoin()

    async def commit_failing_once(offsets):
        if failed:
            return await commit(offsets)
        failed.append(offsets)
        await consumer._thread.call_thread(request_rejoin)
        for _ in range(200):  # until faust has revoked the partitions (it stops the flow once it has)
            if not consumer.flow_active:
                break
            await asyncio.sleep(0.05)
        logging.getLogger(__name__).warning(
            "commit answered as failed (partitions revoked: %s)", not consumer.flow_active)
        return False

    consumer._commit = commit_failing_once


@app.task
async def send() -> None:
    fail_the_first_commit_across_a_rebalance()
    for index in range(MESSAGES):
        await source.send(key=b"k", value=str(index).encode())


if __name__ == "__main__":
    app.main()
