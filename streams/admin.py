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


async def consumer_lag(bootstrap: str, group: str, topic_names: tuple[str, ...]) -> int:
    """Messages on `topic_names` that `group` has not committed yet (uncommitted partitions count fully)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        await consumer.topics()  # loads the cluster metadata
        partitions = [
            TopicPartition(name, index) for name in topic_names for index in consumer.partitions_for_topic(name) or ()
        ]
        ends = await consumer.end_offsets(partitions)
        return sum(
            end - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0)
            for tp, end in ends.items()
        )
    finally:
        await consumer.stop()
        await admin.close()
