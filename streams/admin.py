"""Create the contract's topics with their partition count (idempotent)."""

from __future__ import annotations

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
