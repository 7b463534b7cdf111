"""The athlete tables' on-disk store (streams/table_store.py): a mapping like faust's memory store, on SQLite."""

from types import SimpleNamespace

import pytest

from aromatrack.streams.table_store import DiskMapping, DiskStore


def partition_of(key: bytes) -> int:
    return int(key.split(b":")[0])


def test_the_mapping_reads_back_what_was_written_and_forgets_what_was_deleted():
    data = DiskMapping(partition_of)
    data[b"1:a"] = b"x"
    data[b"2:b"] = b"y"
    data[b"1:a"] = b"z"
    assert data[b"1:a"] == b"z" and data.get(b"2:b") == b"y" and data.get(b"3:c", b"none") == b"none"
    assert b"2:b" in data and b"3:c" not in data and len(data) == 2
    assert sorted(data) == [b"1:a", b"2:b"] and dict(data.items()) == {b"1:a": b"z", b"2:b": b"y"}
    del data[b"1:a"]
    with pytest.raises(KeyError):
        data[b"1:a"]
    with pytest.raises(KeyError):
        del data[b"1:a"]
    assert data.pop(b"2:b") == b"y" and len(data) == 0


def test_keys_may_be_written_while_iterating_them():
    data = DiskMapping(partition_of)
    data.update({b"0:%d" % i: b"v" for i in range(5)})
    for key in data:
        data[key + b"!"] = b"w"
    assert len(data) == 10


def test_keeping_partitions_drops_the_others_and_keeping_none_drops_all():
    """After a recovery a worker keeps only its active partitions; one left with none (more workers than
    partitions) keeps nothing, rather than failing on SQL's empty `NOT IN ()`."""
    data = DiskMapping(partition_of)
    data.update({b"0:a": b"v", b"1:b": b"v", b"2:c": b"v"})
    data.keep_partitions({0, 2})
    assert sorted(data) == [b"0:a", b"2:c"]
    data[b"3:d"] = b"waiting"  # not yet flushed: kept or dropped like the rest
    data.keep_partitions(set())
    assert len(data) == 0


def changelog(*records):
    return [SimpleNamespace(key=key, value=value, message=SimpleNamespace(partition=partition, value=value))
            for key, partition, value in records]


def store_of(partition_for_key=partition_of) -> DiskStore:
    table = SimpleNamespace(partition_for_key=partition_for_key, name="t")
    return DiskStore("disk://", app=None, table=table)


def test_a_changelog_batch_applies_the_last_record_of_each_key_and_deletions():
    store = store_of()
    store.apply_changelog_batch(
        changelog((b"1:a", 1, b"old"), (b"1:a", 1, b"new"), (b"2:b", 2, b"y"), (b"2:b", 2, None), (b"3:c", 3, None)),
        to_key=lambda key: key, to_value=lambda value: value)
    assert dict(store.items()) == {b"1:a": b"new"}
    store.apply_changelog_batch(changelog((b"1:a", 1, None), (b"2:b", 2, b"back")), lambda k: k, lambda v: v)
    assert dict(store.items()) == {b"2:b": b"back"}


async def test_recovery_keeps_only_the_partitions_the_worker_is_active_for():
    store = store_of()
    store.apply_changelog_batch(changelog((b"0:a", 0, b"x"), (b"1:b", 1, b"y")), lambda k: k, lambda v: v)
    store[b"2:c"] = b"z"  # an agent's write: its partition from the table's `partition_for_key`
    store[b"3:d"] = b"w"
    await store.on_recovery_completed({("t", 1), ("t", 2)}, set())
    assert dict(store.items()) == {b"1:b": b"y", b"2:c": b"z"}
    await store.on_recovery_completed(set(), set())
    assert len(store) == 0 and store.persisted_offset(("t", 1)) is None


def test_writes_wait_in_memory_until_enough_are_waiting_and_are_read_back_meanwhile():
    data = DiskMapping(partition_of, flush_every=3)
    data[b"1:a"] = b"x"
    data[b"1:a"] = b"y"  # the last write of a key is what waits
    data[b"2:b"] = b"z"
    del data[b"2:b"]
    assert data._db.execute("SELECT count(*) FROM kv").fetchone()[0] == 0  # two keys waiting, none written
    assert data[b"1:a"] == b"y" and b"2:b" not in data and data.get(b"2:b") is None
    data[b"3:c"] = b"w"  # the third key waiting: all three go to SQLite together
    assert data._db.execute("SELECT key, partition, value FROM kv ORDER BY key").fetchall() == [
        (b"1:a", 1, b"y"), (b"3:c", 3, b"w")]
    data[b"4:d"] = b"v"
    assert sorted(data) == [b"1:a", b"3:c", b"4:d"] and len(data) == 3  # iterating writes what waits first
