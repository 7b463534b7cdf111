"""Topic administration: create the contract's topics (idempotent) and measure consumer lag."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Mapping

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from aromatrack.schemas import topics


def topic_replicas() -> int:
    """Copies of each topic the service creates (contract topics, faust's changelogs): AROMATRACK_TOPIC_REPLICAS,
    1 by default for the one-node local broker; 3 on a production cluster (the Helm chart sets it)."""
    return int(os.environ.get("AROMATRACK_TOPIC_REPLICAS") or 1)


async def ensure_topics(bootstrap: str, configured: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    """Create any missing contract topic, and any missing topic of `configured` (name -> its topic configs), all
    with the contract's partition count; returns the names created."""
    wanted = {**{name: {} for name in topics.ALL_TOPICS}, **(configured or {})}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(name, num_partitions=topics.PARTITIONS, replication_factor=topic_replicas(),
                         topic_configs=dict(wanted[name]))
                for name in missing
            ])
            await _wait_for_leaders(bootstrap, missing)
        return missing
    finally:
        await admin.close()


async def _wait_for_leaders(bootstrap: str, names: list[str]) -> None:
    """Until every partition of new topics answers as its leader: Kafka answers CreateTopics (and lists the
    leaders in its metadata) a moment before the partitions take writes, and a producer that sends at once gets
    NotLeaderForPartition retries. A ListOffsets request is retried by aiokafka until the leader answers."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.end_offsets([TopicPartition(name, index) for name in names for index in range(topics.PARTITIONS)])
    finally:
        await consumer.stop()


async def topic_partitions(admin: AIOKafkaAdminClient, topic_names: list[str]) -> list[TopicPartition]:
    """Every partition of the named topics that exist, asked of the broker (a consumer's cached metadata holds
    only the topics it subscribed to)."""
    described = await admin.describe_topics(topic_names)
    return [
        TopicPartition(item["topic"], partition["partition"])
        for item in described
        for partition in item["partitions"]
    ]


class NotReadInTime(RuntimeError):
    """A read up to given offsets that did not reach them within its time (`records_until`)."""


async def records_until(consumer: AIOKafkaConsumer, ends: Mapping[TopicPartition, int], fetch_ms: int = 1000,
                        within_s: float | None = None) -> list[ConsumerRecord]:
    """Every record of each partition of `ends` (assigned to `consumer`, and sought where the read starts) from the
    consumer's position up to its offset in `ends` (exclusive), partition by partition. A fetch that brings nothing
    within `fetch_ms` is a slow broker, not the end: taken for one, a report could count fewer alerts than were sent,
    a check could find fewer events than the API accepted, and a worker dropped the messages faust had skipped.
    With `within_s`, NotReadInTime past that long, naming the partition and the offsets not read."""
    deadline = None if within_s is None else time.monotonic() + within_s
    records: list[ConsumerRecord] = []
    for partition, end in ends.items():
        while (position := await consumer.position(partition)) < end:
            if deadline is not None and time.monotonic() > deadline:
                raise NotReadInTime(f"{partition.topic}[{partition.partition}]: offsets {position}-{end - 1} not "
                                    f"read in {within_s:.0f}s")
            fetched = (await consumer.getmany(partition, timeout_ms=fetch_ms)).get(partition, [])
            records += [record for record in fetched if record.offset < end]
    return records


async def records_to_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition],
                         fetch_ms: int = 1000) -> list[ConsumerRecord]:
    """Every record of `partitions` up to each one's end offset when the read starts (`records_until`)."""
    return await records_until(consumer, await consumer.end_offsets(partitions), fetch_ms)


async def committed_offsets(
    admin: AIOKafkaAdminClient, group: str, partitions: list[TopicPartition] | None = None, attempts: int = 1,
) -> dict[TopicPartition, int]:
    """The group's committed offsets of `partitions` (all of the group's when None), only where one was committed.
    Up to `attempts` tries on what the broker calls retriable (its group coordinator is not up yet on a new
    cluster)."""
    attempt = 1
    while True:
        try:
            offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
            break
        except KafkaError as exc:
            if not exc.retriable or attempt >= attempts:
                raise
        await asyncio.sleep(0.2 * attempt)
        attempt += 1
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


class LagProbe:
    """Consumer lag over one admin and one consumer connection, reused across checks (a wait polls it every
    0.1 s; opening both connections each time cost more than the check)."""

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

    async def lagging(self, group: str, topic_names: tuple[str, ...]) -> dict[TopicPartition, int]:
        """Each partition of `topic_names` with messages `group` has not committed yet, and how many (an uncommitted
        partition counts fully)."""
        committed = await committed_offsets(self._admin, group)
        ends = await self._consumer.end_offsets(await topic_partitions(self._admin, list(topic_names)))
        return {tp: end - committed.get(tp, 0) for tp, end in ends.items() if end > committed.get(tp, 0)}

    async def lag(self, group: str, topic_names: tuple[str, ...]) -> int:
        """Messages on `topic_names` that `group` has not committed yet."""
        return sum((await self.lagging(group, topic_names)).values())

    async def worker_lagging(self, app_id: str) -> dict[str, dict[TopicPartition, int]]:
        """What a worker of `app_id` has not consumed yet, by consumer group: its ingest consumer's and its agents'."""
        found = {
            topics.ingest_group(app_id): await self.lagging(topics.ingest_group(app_id), topics.INGEST_TOPICS),
            app_id: await self.lagging(app_id, topics.AGENT_TOPICS),
        }
        return {group: partitions for group, partitions in found.items() if partitions}

    async def worker_lag(self, app_id: str) -> int:
        """Messages a worker of `app_id` has not consumed yet, over both of its consumer groups."""
        return sum(sum(partitions.values()) for partitions in (await self.worker_lagging(app_id)).values())


class NotConsumed(Exception):
    """The workers left messages uncommitted past a deadline; the message names each group's lagging partitions."""


async def wait_until_consumed(
    probe: LagProbe, app_id: str, within_s: float | None = None, every_s: float = 0.1,
) -> None:
    """Until the worker has committed everything on the topics it consumes (both of its consumer groups); with
    `within_s`, NotConsumed after that long, naming the partitions still behind (a worker that stopped committing
    fails a caller instead of hanging it)."""
    deadline = None if within_s is None else time.monotonic() + within_s
    while lagging := await probe.worker_lagging(app_id):
        if deadline is not None and time.monotonic() > deadline:
            behind = "; ".join(
                f"{group}: " + ", ".join(f"{tp.topic}[{tp.partition}] {n}" for tp, n in sorted(partitions.items()))
                for group, partitions in lagging.items()
            )
            raise NotConsumed(f"not committed after {within_s:.0f}s: {behind}")
        await asyncio.sleep(every_s)
