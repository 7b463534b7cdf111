"""The clinical agent on the real broker gives the same alerts as `aromatrack evaluate` for the same history.

Histories go in through the input topics in any order (a bulk import: all at once, shuffled), with a producer
retry repeating some; the alerts topic must end up holding exactly what the sorted fold gives with the clock run
on to now (`evaluate --as-of`): same ids, same content. What the topic holds is the last message per alert id,
a withdrawal removing the alert (`topic_state`).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from aromatrack.deploy import local_stack
from aromatrack.schemas import boundary, topics
from aromatrack.schemas.events import dump_event, parse_event
from aromatrack.schemas.progress import MARKER_HEADER, MAX_IMPORT_LEASE_S, ImportMarker, ProgressMarker, dump_marker
from aromatrack.schemas.series import Audience
from aromatrack.services.jsonl import read_events
from aromatrack.streams.influx import rows
from aromatrack.streams.clinical_timeline import OrderKey
from aromatrack.streams.input_progress import HEARTBEAT_S
from aromatrack.streams.producer import IMPORT_LEASE_S, IMPORT_RENEW_S, EventProducer

from .conftest import Worker, eventually, unique_athlete

TIMELINES = Path(__file__).parent.parent / "timelines"


def history(name: str, athlete: str) -> list:
    """A committed timeline under a fresh athlete id, in event-time order."""
    events = []
    for event in read_events(TIMELINES / name):
        body = event.model_dump(mode="json", exclude={"event_id"}) | {"athlete_id": athlete}
        events.append(parse_event(body))
    return sorted(events, key=OrderKey.of)


def expected_state(events: list) -> dict[str, dict]:
    """What `evaluate --as-of now` gives: the latest version per alert id."""
    return {a.alert_id: json.loads(dump_event(a)) for a in boundary.evaluate(events, as_of_s=time.time())}


def topic_state(messages: list[dict]) -> dict[str, dict]:
    """What a consumer of the alerts topic holds: the last message per alert id, withdrawn alerts dropped."""
    latest = {message["alert_id"]: message for message in messages}
    return {alert_id: message for alert_id, message in latest.items() if message.get("status") != "withdrawn"}


async def alerts_on_topic(bootstrap: str, athletes: set[str], expected: int, timeout_s: float) -> list[dict]:
    """Every alert message for these athletes on the alerts topic, waiting for `expected` alert ids and then
    2 s more."""
    consumer = AIOKafkaConsumer(topics.ALERTS_TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed")
    await consumer.start()
    found: list[dict] = []
    deadline = time.monotonic() + timeout_s
    settle_until = None
    try:
        while time.monotonic() < deadline and (settle_until is None or time.monotonic() < settle_until):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    alert = json.loads(record.value)
                    if alert["athlete_id"] in athletes:
                        found.append(alert)
            if len({alert["alert_id"] for alert in found}) >= expected and settle_until is None:
                settle_until = time.monotonic() + 2.0
    finally:
        await consumer.stop()
    return found


async def send_all(bootstrap: str, events: list) -> None:
    async with EventProducer(bootstrap) as producer:
        await producer.send_all(events)


async def test_stream_alerts_equal_evaluate_for_multi_month_histories(stack, worker, influx_for):
    rng = random.Random(4)
    histories = {
        unique_athlete("fatloss"): "fat_loss_unchanged_ai.jsonl",
        unique_athlete("dosechange"): "dose_change_recheck.jsonl",
        unique_athlete("symptomatic"): "symptomatic_high_e2.jsonl",
        unique_athlete("stable"): "stable_control.jsonl",
    }
    events = {athlete: history(name, athlete) for athlete, name in histories.items()}
    expected = expected_state([e for es in events.values() for e in es])
    assert {a["rule"] for a in expected.values()} >= {
        "recheck.fat_loss_unchanged_ai",
        "recheck.after_dose_change",
        "dose_review.high_e2_symptomatic",
    }

    arrival = [event for athlete in histories for event in events[athlete]]
    rng.shuffle(arrival)
    await send_all(stack.kafka_bootstrap, arrival)
    await send_all(stack.kafka_bootstrap, arrival[:50])  # a producer retry: must not duplicate

    received = await alerts_on_topic(stack.kafka_bootstrap, set(histories), len(expected), timeout_s=120)
    assert topic_state(received) == expected

    async with influx_for(worker.database, Audience.CLINICAL) as clinical, \
            influx_for(worker.database, Audience.COACHING) as coaching:
        athlete = next(iter(histories))
        query = f"SELECT e2_pg_ml, body_fat_pct FROM e2_correlation WHERE athlete_id = '{athlete}'"

        async def correlation_written() -> bool:
            return len(rows(await clinical.query(query))) == 1

        await eventually(correlation_written)
        trend = rows(await coaching.query(f"SELECT count(smoothed_pct) FROM body_fat_trend WHERE athlete_id = '{athlete}'"))
        assert trend[0]["count"] == sum(1 for e in events[athlete] if e.type == "scale.reading")


async def test_a_bulk_import_sent_in_two_parts_is_released_once_whole_without_withdrawals(stack, worker):
    """The worker reads the import's first part as fast as it comes and its watermark completes, but the sender's
    import is still open: nothing is released until the close, then exactly evaluate's alerts, none withdrawn.
    Released before the import's lease could lapse, so the close travelled every path (the FIT paths too)."""
    athlete = unique_athlete("import")
    events = history("fat_loss_unchanged_ai.jsonl", athlete)
    first, rest = events[: len(events) // 2], events[len(events) // 2:]
    expected = expected_state(events)
    assert expected_state(first) and expected_state(first) != expected  # released early, it would be withdrawn
    async with EventProducer(stack.kafka_bootstrap) as producer:
        async with producer.bulk_import():
            await producer.send_all(first)
            # Long enough for every stage to report its paths caught up (HEARTBEAT_S) and the agent to release.
            early = await alerts_on_topic(stack.kafka_bootstrap, {athlete}, 1, timeout_s=2 * HEARTBEAT_S + 4)
            assert early == []
            await producer.send_all(rest)
        closed_at = time.monotonic()
    received = await alerts_on_topic(stack.kafka_bootstrap, {athlete}, len(expected), timeout_s=60)
    assert topic_state(received) == expected
    assert len(received) == len(expected)  # each alert sent once: no early version, no withdrawal
    # A lapsed lease would release at least a lease less a renewal interval after the close.
    assert time.monotonic() - closed_at < IMPORT_LEASE_S - IMPORT_RENEW_S


async def send_import_markers(producer: AIOKafkaProducer, import_id: str, lease_s: float, to: list[str]) -> None:
    """What `EventProducer.bulk_import` sends, to some input topics only: open or renew (`lease_s` > 0) or close."""
    await asyncio.gather(*[
        await producer.send(topic, dump_marker(ImportMarker(import_id=import_id, partition=partition, lease_s=lease_s)),
                            partition=partition, headers=[(MARKER_HEADER, b"1")])
        for topic in to for partition in range(topics.PARTITIONS)
    ])


async def test_a_worker_restarted_mid_import_remembers_the_paths_that_closed_it(stack, worker):
    """A restarted worker starts after the last batch it handled. The import was closed along the ingest topics
    before the restart; the FIT path lags, and brings a renewal and then its close after it. Released at that
    close, not a lease later (the lease here is the longest a sender may ask for, ten minutes)."""
    athlete = unique_athlete("restarted-import")
    events = history("fat_loss_unchanged_ai.jsonl", athlete)
    expected = expected_state(events)
    import_id, fit_topic = uuid.uuid4().hex, topics.topic_for("workout.fit")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await send_import_markers(producer, import_id, MAX_IMPORT_LEASE_S, list(topics.INPUT_TOPICS.values()))
        await send_all(stack.kafka_bootstrap, events)
        await send_import_markers(producer, import_id, 0.0, list(topics.INGEST_TOPICS))
        # Long enough for the worker to handle the closes (every stage reports within HEARTBEAT_S).
        assert await alerts_on_topic(stack.kafka_bootstrap, {athlete}, 1, timeout_s=2 * HEARTBEAT_S + 4) == []
        worker.stop()
        worker.start()
        await send_import_markers(producer, import_id, MAX_IMPORT_LEASE_S, [fit_topic])
        await send_import_markers(producer, import_id, 0.0, [fit_topic])
        received = await alerts_on_topic(stack.kafka_bootstrap, {athlete}, len(expected), timeout_s=90)
    finally:  # closed along every path whatever happened: an open import holds every partition of the session
        await send_import_markers(producer, import_id, 0.0, list(topics.INPUT_TOPICS.values()))
        await producer.stop()
    assert topic_state(received) == expected


async def test_a_marker_on_another_timeline_partition_is_dead_lettered_not_counted(stack, worker):
    """The stages put a partition's markers on the timeline partition of the same number; one found elsewhere could
    complete a partition whose input is not in, so it goes to the dead letters with the reason."""
    marker = dump_marker(ProgressMarker(input=f"misplaced-{uuid.uuid4().hex}", partition=1, caught_up=True))
    consumer = AIOKafkaConsumer(topics.DEAD_LETTER_TOPIC, bootstrap_servers=stack.kafka_bootstrap,
                                auto_offset_reset="earliest")
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topics.TIMELINE_TOPIC, marker, partition=0, headers=[(MARKER_HEADER, b"1")])
        reasons: list[str] = []

        async def dead_lettered() -> bool:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                reasons.extend(dict(record.headers)["reason"].decode() for record in records if record.value == marker)
            return bool(reasons)

        await eventually(dead_lettered)
    finally:
        await producer.stop()
        await consumer.stop()
    assert reasons == ["progress marker: for partition 1, found on partition 0"]


async def test_alert_latency_is_under_a_second(stack, worker):
    athlete = unique_athlete("latency")
    high_e2 = parse_event({
        "type": "lab.result", "athlete_id": athlete, "time": "2026-02-01T07:00:00Z",
        "analyte": "estradiol", "value": 75, "unit": "pg/mL", "method": "lc_msms",
    })
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topics.ALERTS_TOPIC, p) for p in range(topics.PARTITIONS)])
        await consumer.seek_to_end()
        async with EventProducer(stack.kafka_bootstrap) as producer:
            sent_at = time.time()
            await producer.send(high_e2)  # live: through its input topic, the ingest consumer and the watermark
        latency = None
        while latency is None and time.time() - sent_at < 30:
            for records in (await consumer.getmany(timeout_ms=50)).values():
                for record in records:
                    if json.loads(record.value)["athlete_id"] == athlete:
                        latency = record.timestamp / 1000 - sent_at  # when the worker produced it
    finally:
        await consumer.stop()
    assert latency is not None and latency < 1.0, latency


async def test_through_the_ingest_agents_the_alerts_equal_evaluate(stack, worker):
    athlete = unique_athlete("ingest")
    events = history("low_e2_on_ai.jsonl", athlete)
    expected = expected_state(events)
    # Live-shaped: in event-time order, a few ms apart, one input topic per type as producers send them.
    async with EventProducer(stack.kafka_bootstrap) as producer:
        for event in sorted(events, key=OrderKey.of):
            await producer.send(event)
            await asyncio.sleep(0.02)
    received = await alerts_on_topic(stack.kafka_bootstrap, {athlete}, len(expected), timeout_s=60)
    assert "dose_review.low_e2_on_ai" in {a["rule"] for a in received}
    assert topic_state(received) == expected


async def test_imported_history_is_marked_historical_on_the_topic_and_in_influxdb_and_live_alerts_are_not(
    stack, worker, influx_for
):
    imported, live = unique_athlete("imported"), unique_athlete("live")
    history_events = history("low_e2_on_ai.jsonl", imported)  # drawn in 2025: raised now, it is history
    now = datetime.now(timezone.utc)
    live_events = [parse_event({"type": "lab.result", "athlete_id": live, "time": now.isoformat(),
                                "analyte": "estradiol", "value": 75, "unit": "pg/mL", "method": "lc_msms"})]
    expected = expected_state(history_events + live_events)
    await send_all(stack.kafka_bootstrap, history_events + live_events)
    received = topic_state(await alerts_on_topic(stack.kafka_bootstrap, {imported, live}, len(expected), 120))
    assert received == expected  # the same marks as evaluate --as-of now
    marks = {alert["athlete_id"]: set() for alert in received.values()}
    for alert in received.values():
        marks[alert["athlete_id"]].add(alert["historical"])
    assert marks == {imported: {True}, live: {False}}

    async with influx_for(worker.database, Audience.CLINICAL) as influx:
        query = f"SELECT alert_id, historical FROM alerts WHERE athlete_id = '{imported}' OR athlete_id = '{live}'"

        async def all_written() -> bool:
            return len(rows(await influx.query(query))) == len(expected)

        await eventually(all_written)
        stored = {row["alert_id"]: row["historical"] for row in rows(await influx.query(query))}
    assert stored == {alert_id: alert["historical"] for alert_id, alert in received.items()}


async def test_a_quiet_athletes_recheck_falls_due_on_the_workers_clock_with_evaluates_id(stack, worker):
    athlete = unique_athlete("clock")
    recheck_days = 42  # RuleSettings.recheck_after_trt_start_days
    start = datetime.now(timezone.utc) - timedelta(days=recheck_days) + timedelta(seconds=20)
    events = [parse_event({"type": "protocol.phase", "athlete_id": athlete, "time": start.isoformat(), "phase": "trt"}),
              parse_event({"type": "dose.change", "athlete_id": athlete, "time": start.isoformat(),
                           "drug": "testosterone_cypionate", "dose_mg": 100, "times_per_week": 1})]
    assert expected_state(events) == {}  # not due yet: nothing to release with the events
    await send_all(stack.kafka_bootstrap, events)
    received = topic_state(await alerts_on_topic(stack.kafka_bootstrap, {athlete}, 1, timeout_s=90))
    assert received == expected_state(events)  # the same id and body evaluate gives once it is due
    (alert,) = received.values()
    assert alert["rule"] == "recheck.after_trt_start" and alert["historical"] is False
    assert datetime.fromisoformat(alert["time"]) == start + timedelta(days=recheck_days)


async def test_events_older_than_what_a_worker_keeps_in_memory_are_placed_in_the_history_read_back(tmp_path):
    """A worker keeping 30 events of a timeline in memory (AROMATRACK_TIMELINE_EVENTS=30 settles it to 10 at each
    release): a history sent in order is released and settled; then events from its first weeks come late, which
    the agent places only in the whole history read back from the table. The alerts are evaluate's, each time."""
    with local_stack.throwaway_stack(39597, 38597) as settings:
        worker = Worker(settings, f"settle_{uuid.uuid4().hex[:8]}", tmp_path / "worker.log", AROMATRACK_TIMELINE_EVENTS="30")
        worker.start(timeout_s=90)
        try:
            athlete = unique_athlete("settled")
            events = history("fat_loss_unchanged_ai.jsonl", athlete)
            late = set(range(3, len(events) // 3, 4))  # every fourth of its first third
            on_time = [event for index, event in enumerate(events) if index not in late]
            await send_all(settings.kafka_bootstrap, on_time)
            expected = expected_state(on_time)
            received = await alerts_on_topic(settings.kafka_bootstrap, {athlete}, len(expected), timeout_s=120)
            assert topic_state(received) == expected
            await send_all(settings.kafka_bootstrap, [events[index] for index in sorted(late)])
            expected = expected_state(events)
            assert expected != expected_state(on_time)  # the late events change what the history raises
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                received = await alerts_on_topic(settings.kafka_bootstrap, {athlete}, len(expected), timeout_s=10)
                if topic_state(received) == expected:
                    break
            assert topic_state(received) == expected
        finally:
            worker.stop()
        log = worker.log_path.read_text()
        assert "read back whole" in log and "Traceback" not in log
