"""Topic administration: create the contract's topics (idempotent) and measure consumer lag."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from aromatrack.schemas import topics


async def ensure_topics(bootstrap: str) -> list[str]:
    """Create any missing contract topic; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics.ALL_TOPICS if name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(name, num_partitions=topics.PARTITIONS, replication_factor=1) for name in missing]
            )
        return missing
    finally:
        await admin.close()


class LagProbe:
    """Consumer lag over one admin and one consumer connection, reused across checks (a paced replay checks
    after every window; opening both connections each time cost more than the check)."""

    def __init__(self, bootstrap: str):
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)

    async def __aenter__(self) -> "LagProbe":
        await self._admin.start()
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def lag(self, group: str, topic_names: tuple[str, ...]) -> int:
        """Messages on `topic_names` that `group` has not committed yet (uncommitted partitions count fully)."""
        committed = await self._admin.list_consumer_group_offsets(group)
        await self._consumer.topics()  # refreshes the cluster metadata
        partitions = [
            TopicPartition(name, index)
            for name in topic_names
            for index in self._consumer.partitions_for_topic(name) or ()
        ]
        ends = await self._consumer.end_offsets(partitions)
        return sum(
            end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
            for tp, end in ends.items()
        )

    async def worker_lag(self, app_id: str) -> int:
        """What a worker of `app_id` has not consumed yet: its ingest consumer's and its agents' topics."""
        return await self.lag(topics.ingest_group(app_id), topics.INGEST_TOPICS) + await self.lag(
            app_id, topics.AGENT_TOPICS
        )
