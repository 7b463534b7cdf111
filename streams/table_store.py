"""A faust table store on disk: the athlete tables' values in a private SQLite file, not in the worker's memory.

faust's in-memory store keeps every value of a table in the process, and the clinical history table holds every
event of every athlete the worker owns (issue 13: no tail that forgets), so a worker's memory grew with history
(~8 MB a year for 50 athletes, with the clinical timelines themselves settled). faust's RocksDB store was tried and
refuses the writes the agents make outside a single event's context (BENCHMARKS.md "Table recovery").

This store is what the memory store is, with the mapping on disk: the changelog is still the record, the file
starts empty with each process (SQLite's private temporary database, deleted when the process closes it) and faust
rebuilds it from the changelog as it would the memory store, and the keys of partitions no longer held are
dropped when recovery completes. Each row notes its key's partition (the table's own `partition_for_key`, since
the agents write outside any event's context). SQLite's page cache bounds the memory it uses.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Callable, Iterable, Iterator, MutableMapping, Optional, Set, Union

from faust.stores import base
from faust.types import TP, EventT

# SQLite's page cache per table, in KiB (a negative cache_size is KiB): what the store keeps in memory at most.
CACHE_KIB = 16 * 1024


class DiskMapping(MutableMapping[bytes, bytes]):
    """bytes -> bytes in a private temporary SQLite database, each row with its key's partition.

    Writes wait in memory (the last of each key) and go to SQLite together, in one transaction, once
    `flush_every` keys wait: a bulk import rewrites an athlete's latest period at every batch, and one SQLite
    statement per write cost 2.5x a statement in a shared transaction (20 against 8 us here)."""

    def __init__(self, partition_for_key: Callable[[bytes], int], flush_every: int = 1000) -> None:
        self.partition_for_key = partition_for_key
        self.flush_every = flush_every
        self._waiting: dict[bytes, Optional[bytes]] = {}  # key -> its value, or None: deleted
        # "": a private on-disk database, deleted when closed. Durability is the changelog's, not this file's.
        self._db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{CACHE_KIB}"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute("CREATE TABLE kv (key BLOB PRIMARY KEY, partition INTEGER NOT NULL, value BLOB NOT NULL)")

    def _stored(self, key: object) -> Optional[bytes]:
        if key in self._waiting:
            return self._waiting[key]
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def __getitem__(self, key: bytes) -> bytes:
        value = self._stored(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        value = self._stored(key)
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return self._stored(key) is not None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.wait(key, value)

    def __delitem__(self, key: bytes) -> None:
        if self._stored(key) is None:
            raise KeyError(key)
        self.wait(key, None)

    def __iter__(self) -> Iterator[bytes]:
        self.flush()
        # Read whole before yielding: callers write to the table while they iterate its keys.
        return iter([key for (key,) in self._db.execute("SELECT key FROM kv ORDER BY key")])

    def __len__(self) -> int:
        self.flush()
        return self._db.execute("SELECT count(*) FROM kv").fetchone()[0]

    def wait(self, key: bytes, value: Optional[bytes]) -> None:
        """Write `value` (None: delete the key, whether stored or not) with the waiting writes."""
        self._waiting[key] = value
        if len(self._waiting) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write the waiting writes and deletions to SQLite in one transaction."""
        if not self._waiting:
            return
        waiting, self._waiting = self._waiting, {}
        with self._db:  # one transaction
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO kv (key, partition, value) VALUES (?, ?, ?)",
                ((key, self.partition_for_key(key), value) for key, value in waiting.items() if value is not None))
            self._db.executemany("DELETE FROM kv WHERE key = ?", ((key,) for key, value in waiting.items() if value is None))

    def keep_partitions(self, partitions: Set[int]) -> None:
        """Drop every key of a partition not in `partitions`."""
        self.flush()
        held = ",".join(str(int(partition)) for partition in sorted(partitions))
        self._db.execute(f"DELETE FROM kv WHERE partition NOT IN ({held})")

    def clear(self) -> None:
        self._waiting.clear()
        self._db.execute("DELETE FROM kv")


class DiskStore(base.Store):
    """faust's store interface over a `DiskMapping`, for tables of bytes keys and values that map each key to its
    partition (`partition_for_key`, as `streams.app.AthleteKeyedTable` does)."""

    def __init__(self, url: Union[str, Any], app: Any, table: Any, **kwargs: Any) -> None:
        super().__init__(url, app, table, **kwargs)
        self.data = DiskMapping(table.partition_for_key)

    def _clear(self) -> None:
        self.data.clear()

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        """A batch of changelog records, as writes (None is a deletion): the last of each key wins. A record's
        partition is its key's (`partition_for_key` is what the table sends it by)."""
        for event in batch:
            self.data.wait(to_key(event.key), None if event.message.value is None else to_value(event.value))

    async def on_recovery_completed(self, active_tps: Set[TP], standby_tps: Set[TP]) -> None:
        """As faust's memory store: keep only the partitions this worker is active for."""
        self.data.keep_partitions({partition for _, partition in active_tps})

    def persisted_offset(self, tp: TP) -> Optional[int]:
        """None: the file starts empty with each process, so faust reads the whole changelog."""
        return None

    def reset_state(self) -> None:
        """Nothing outlives the process."""

    async def backup_partition(
        self, tp: Union[TP, int], flush: bool = True, purge: bool = False, keep: int = 1
    ) -> None:
        """No backups: the changelog is the record."""

    def restore_backup(self, tp: Union[TP, int], latest: bool = True, backup_id: int = 0) -> None:
        """No backups: the changelog is the record."""
