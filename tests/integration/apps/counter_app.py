"""A minimal faust app for the conformance test: counts messages in a table, sends 5, exits.

Run twice with the same COUNTER_RUN: the second run must start from the first run's count,
recovered from the table's changelog topic on the broker (memory store, nothing on disk).
"""

import asyncio
import os
import sys
from pathlib import Path

import faust

RUN = os.environ["COUNTER_RUN"]
OUT = Path(os.environ["COUNTER_DIR"])
BATCH = sys.argv[1]

app = faust.App(
    f"conformance-counter-{RUN}",
    broker=f"kafka://{os.environ['AROMATRACK_KAFKA']}",
    store="memory://",
    web_enabled=False,
    topic_partitions=1,
    datadir=str(OUT / f"faust-{BATCH}"),
)
# internal=True: faust creates the topic (agents only subscribe, and a topic created later by the first send
# would be noticed only at the next metadata refresh, minutes away).
source = app.topic(f"conformance-counter-{RUN}", value_serializer="raw", partitions=1, internal=True)
# COUNTER_FAST_COMPACTION: small changelog segments, so the broker compacts them within seconds.
fast_compaction = {"segment.ms": "200", "min.cleanable.dirty.ratio": "0.01"} if os.environ.get("COUNTER_FAST_COMPACTION") else {}
counts = app.Table("counts", default=int, partitions=1, extra_topic_configs=fast_compaction)
seen = 0


@app.agent(source)
async def count(stream):
    global seen
    async for _ in stream:
        counts["n"] += 1
        seen += 1


@app.task
async def send_then_stop():
    for i in range(5):
        await source.send(key=b"n", value=f"{BATCH}-{i}".encode())
    while seen < 5:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # let the changelog writes flush
    (OUT / f"count-{BATCH}").write_text(str(counts["n"]))
    await app.stop()
    # faust's worker keeps the loop alive after app.stop(); end the process explicitly.
    os._exit(0)


if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn", "--without-web"]
    app.main()
