"""Every record of the worker's table changelogs, for diagnosing a run whose derived results diverged.

Read uncommitted, so that records of aborted transactions (a fenced worker's) show too, beside each record's
create time as the producer stamped it: a record appended after later-stamped ones was queued while its
producer was cut off.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from aromatrack.schemas import topics
from aromatrack.streams.admin import records_to_end
from aromatrack.streams.workouts import history_from_json

TABLES = ("workout_state", "workout_seen", "athlete_profiles", "clinical_history")


async def dump_changelogs(bootstrap: str, app_id: str, path: Path) -> int:
    """Write one JSON line per changelog record (table, partition, offset, timestamp, key, value's size and, for
    a load history, its newest day and day count) to `path`; returns how many."""
    names = {f"{app_id}-{table}-changelog": table for table in TABLES}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level="read_uncommitted")
    await consumer.start()
    count = 0
    try:
        partitions = [TopicPartition(name, partition) for name in names for partition in range(topics.PARTITIONS)]
        consumer.assign(partitions)
        with path.open("w") as out:
            for record in await records_to_end(consumer, partitions, fetch_ms=500):
                out.write(json.dumps({
                    "table": names[record.topic], "partition": record.partition, "offset": record.offset,
                    "timestamp_ms": record.timestamp,
                    "key": record.key.decode(errors="replace") if record.key else None,
                    **summary(names[record.topic], record.value),
                }) + "\n")
                count += 1
    finally:
        await consumer.stop()
    return count


def summary(table: str, value: bytes | None) -> dict:
    if value is None:
        return {"deleted": True}
    described: dict = {"size": len(value)}
    if table == "workout_state":
        daily = history_from_json(json.loads(value)).daily  # any stored version, as the worker reads it
        described.update(days=len(daily), newest_day=max(daily).isoformat() if daily else None)
    return described

