"""The clinical stream's pure parts without a broker: ordering and re-fold, the outbox, the stored-state codec and
the watermark, and all of them together against `engine.evaluate` for random arrival orders, late events,
releases and crashes."""

import asyncio
import json
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.schemas import boundary
from aromatrack.schemas.events import Alert, EventError, dump_event, parse_event
from aromatrack.schemas.progress import (
    FIT_TOPIC, SCALE_TOPIC, SUMMARY_TOPIC, TIMELINE_INPUTS, ImportMarker, MarkerError, ProgressMarker, arrived_via,
    dump_marker, marker_found_on, parse_marker, via,
)
from aromatrack.services import cohort
from aromatrack.services.jsonl import read_events
from aromatrack.streams import clinical_codec as codec
from aromatrack.streams.alert_outbox import AlertPointIdentity, Outbox, stale_alert_points, standing_alerts_sharing
from aromatrack.domain.engine import EngineSettings
from aromatrack.streams.app import part_key
from aromatrack.streams.clinical import Clinical, HistoryUnreadable, _load, _place, _release
from aromatrack.streams.clinical_codec import ClinicalRecord
from aromatrack.streams.clinical_timeline import CHECKPOINT_EVERY, AthleteTimeline, OrderKey, SettledHistoryError
from aromatrack.streams.input_progress import (
    CLOSED_IMPORTS_KEPT, HEARTBEAT_S, InputPartition, PartitionProgress, StageProgress,
)

TIMELINES = Path(__file__).parent.parent / "timelines"
EVENTS = {name: sorted(read_events(TIMELINES / f"{name}.jsonl"), key=OrderKey.of)
          for name in ("fat_loss_unchanged_ai", "symptomatic_high_e2", "dose_change_recheck", "stable_control")}


def _cohort_athlete(index):
    """One synthetic athlete's half year: several hundred events, so re-folds start from checkpoints."""
    events = []
    for raw in cohort.generate(athletes=3, days=182, seed=11):
        if raw["athlete_id"] == f"ath-{index:04d}":
            try:
                events.append(parse_event(raw))
            except EventError:
                continue  # the cohort's deliberate impossible readings
    return sorted(events, key=OrderKey.of)


COHORT = {index: _cohort_athlete(index) for index in (1, 2)}
HISTORIES = {**EVENTS, **{f"cohort-{index}": events for index, events in COHORT.items()}}


def as_json(alerts):
    return {alert.alert_id: json.loads(dump_event(alert)) for alert in alerts}


def evaluated(events):
    return as_json(boundary.evaluate(events))


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(sorted(HISTORIES)), st.randoms(use_true_random=False), st.integers(1, 60))
def test_any_arrival_order_and_batching_gives_evaluates_alerts(name, rng, batch_size):
    events = HISTORIES[name]
    arrival = events[:]
    rng.shuffle(arrival)
    timeline = AthleteTimeline(events[0].athlete_id)
    for start in range(0, len(arrival), batch_size):
        timeline.add(arrival[start : start + batch_size])
        if rng.random() < 0.3:  # folded now and then (a release), from the state or a checkpoint
            timeline.fold()
    assert as_json(timeline.alerts().values()) == evaluated(events)
    assert len(timeline) == len(events)


def test_repeated_ids_are_placed_once_whatever_their_age():
    events = COHORT[1]
    timeline = AthleteTimeline.of(events[0].athlete_id, events)
    timeline.fold()
    assert timeline.add(events[:50] + events[-5:]) == ()
    assert len(timeline) == len(events) and as_json(timeline.alerts().values()) == evaluated(events)


def test_a_timeline_keeps_the_bytes_the_reader_made_of_the_events_it_places():
    events = COHORT[1][:60]
    read = {event.event_id: dump_event(event) for event in events}
    timeline = AthleteTimeline(events[0].athlete_id)
    assert timeline.add(events[30:], read) + timeline.add(events[:30], read) == (*events[30:], *events[:30])
    dumped = AthleteTimeline.of(events[0].athlete_id, events)
    assert timeline.encoded == dumped.encoded == [read[event.event_id] for event in events]
    first, twin = events[0], events[1].model_copy(update={"event_id": events[0].event_id})
    once = AthleteTimeline(first.athlete_id)
    assert once.add([first, twin], {first.event_id: None}) == (first,)  # no bytes at hand: dumped
    assert once.encoded == [dump_event(first)]


def test_an_event_inside_the_history_refolds_from_the_checkpoint_before_it():
    events = COHORT[2]
    late = events[len(events) // 2]
    timeline = AthleteTimeline.of(late.athlete_id, [e for e in events if e is not late])
    timeline.fold()
    assert len(timeline.checkpoints) >= len(events) // CHECKPOINT_EVERY - 1
    kept = [c for c in timeline.checkpoints if c.before.time_s < late.time.timestamp()]
    assert timeline.add([late]) == (late,)
    timeline.fold()
    assert timeline.checkpoints[: len(kept)] == kept  # the ones before the late event survive the re-fold
    assert as_json(timeline.alerts().values()) == evaluated(events)


def test_a_settled_timeline_keeps_the_recent_part_in_memory_and_still_gives_evaluates_alerts():
    events = COHORT[1]
    head, tail = events[: len(events) - 40], events[len(events) - 40 :]
    timeline = AthleteTimeline.of(head[0].athlete_id, head)
    timeline.settle(100)
    assert 100 <= len(timeline) < 100 + CHECKPOINT_EVERY  # dropped up to the last checkpoint leaving 100
    assert timeline.base is not None and timeline.keys[0] == timeline.base.before
    assert len(timeline.results) == len(timeline.ids) == len(timeline)
    assert as_json(timeline.alerts().values()) == evaluated(head)
    shuffled = tail[:]
    random.Random(3).shuffle(shuffled)
    timeline.add(shuffled[:20])
    timeline.fold()  # the next ones land inside what this fold did: re-folds from a checkpoint or the base
    timeline.add(shuffled[20:])
    assert as_json(timeline.alerts().values()) == evaluated(events)
    with pytest.raises(SettledHistoryError):
        timeline.add([head[0].model_copy(update={"event_id": "new-but-old"})])


def test_an_event_before_the_part_kept_in_memory_is_placed_in_the_history_read_back_whole():
    events = COHORT[2]
    old = events[10]
    store: dict[bytes, bytes] = {}
    record = ClinicalRecord.new(old.athlete_id)
    rest = [e for e in events if e is not old]
    record.timeline.add(rest)
    store.update(codec.event_writes(record, rest))
    record.timeline.settle(60)
    assert codec.holds(record, rest[-3:]) and not codec.holds(record, [old])
    # An event of the period the kept part starts in is refused too: that period is stored from memory whole.
    first_kept = record.timeline.keys[0]
    same_period = [e for e in rest if codec.period_of(e) == int(first_kept.time_s // codec.PERIOD_S)]
    assert not codec.holds(record, same_period[-1:])
    whole = codec.read_record(old.athlete_id, store.get)
    assert whole.timeline.add([old]) == (old,)
    store.update(codec.event_writes(whole, [old]))
    assert as_json(whole.timeline.alerts().values()) == evaluated(events)
    assert codec.read_record(old.athlete_id, store.get).timeline.keys == sorted(map(OrderKey.of, events))


def test_a_late_event_rewrites_only_the_points_whose_values_changed():
    events = COHORT[1]
    scale = [e for e in events if e.type == "scale.reading"]
    late = scale[len(scale) // 2]
    timeline = AthleteTimeline.of(late.athlete_id, [e for e in events if e is not late])
    assert len(timeline.fold()) > len(scale) // 2  # the first fold: every point
    timeline.add([late])
    trend_after = [p for p in timeline.fold() if p.measurement == "body_fat_trend"]
    assert trend_after and trend_after[0].time == late.time  # its own trend point, then later ones it moved
    assert len(trend_after) < len([e for e in scale if e.time >= late.time])  # not every later reading's


def live(alert):
    """Releases in these tests follow their events at once: no alert is imported history."""
    return False


def _alert(alert_id="a1", summary="E2 low", rule="dose_review.low_e2_on_ai"):
    return Alert(alert_id=alert_id, athlete_id="ath", time="2026-01-05T08:00:00Z", kind="dose_review", rule=rule,
                 severity="warning", summary=summary, evidence=[], sources=[])


def test_outbox_sends_new_and_changed_alerts_and_withdraws_what_no_longer_holds():
    outbox = Outbox("ath")
    first = outbox.release({"a1": _alert(), "a2": _alert("a2")}, live)
    assert [m.alert_id for m in first] == ["a1", "a2"]
    outbox.confirm()
    assert outbox.release({"a1": _alert(), "a2": _alert("a2")}, live) == []  # released again, nothing new
    changed = outbox.release({"a1": _alert(summary="E2 low, corrected")}, live)
    assert [(m.type, m.alert_id) for m in changed] == [("alert.withdrawal", "a2"), ("alert", "a1")]
    assert changed[0].status == "withdrawn" and changed[0].rule == "dose_review.low_e2_on_ai"
    # not confirmed (a crash while sending): released again, the same messages go out again
    assert outbox.release({"a1": _alert(summary="E2 low, corrected")}, live) == changed
    outbox.confirm()
    assert outbox.release({"a1": _alert(summary="E2 low, corrected")}, live) == []


def test_outbox_marks_a_version_historical_at_its_first_release_and_keeps_the_mark():
    outbox = Outbox("ath")
    imported = outbox.release({"a1": _alert()}, lambda alert: True)
    assert [m.historical for m in imported] == [True]
    outbox.confirm()
    assert outbox.release({"a1": _alert()}, live) == []  # the same version: no change, whatever the clock says
    update = outbox.release({"a1": _alert(summary="E2 low, new evidence")}, live)
    assert [m.historical for m in update] == [False]  # a new version is marked as raised now
    # not confirmed (a crash): sent again as it was marked, though the clock would now call it history
    assert outbox.release({"a1": _alert(summary="E2 low, new evidence")}, lambda alert: True) == update
    outbox.confirm()
    marks = {alert_id: sent.historical for alert_id, sent in outbox.sent.items()}
    restored = codec.decode_outbox("ath", codec.encode_outbox(outbox))
    assert {alert_id: sent.historical for alert_id, sent in restored.sent.items()} == marks == {"a1": False}


def test_a_format_1_outbox_is_read_as_sent_live():
    sent = {"a1": {"digest": "d", "time": "2026-01-05T08:00:00+00:00", "kind": "dose_review", "rule": "r"}}
    outbox = codec.decode_outbox("ath", json.dumps({"v": 1, "unreleased": False, "sent": sent, "in_flight": {}}).encode())
    assert outbox.sent["a1"].historical is False and outbox.sent["a1"].digest == "d"


def test_a_release_names_the_points_it_leaves_stale_a_withdrawn_alerts_and_an_updated_alerts_earlier_one():
    outbox = Outbox("ath")
    outbox.release({"a1": _alert(), "a2": _alert("a2")}, live)
    outbox.confirm()
    previous = dict(outbox.sent)
    moved = _alert(summary="E2 low, a week later").model_copy(
        update={"time": datetime(2026, 1, 12, 8, tzinfo=timezone.utc), "version": 2})
    messages = outbox.release({"a1": moved, "a3": _alert("a3", rule="recheck.interval_stable")}, live)
    stale = stale_alert_points(previous, messages)
    earlier = datetime(2026, 1, 5, 8, tzinfo=timezone.utc)
    assert stale == [AlertPointIdentity("ath", "dose_review", "dose_review.low_e2_on_ai", earlier)] * 2  # a2, a1
    assert stale_alert_points(previous, []) == []  # a new alert (a3) leaves nothing stale


def test_a_standing_alert_whose_point_a_withdrawal_removes_is_written_again_as_it_was_marked():
    """Two alert ids can share a point's identity (athlete, kind, rule, time): removing the withdrawn one's point
    removes the standing one's too (seen in the multi-host test: an alert on the topic without its point)."""
    outbox = Outbox("ath")
    outbox.release({"a1": _alert(), "a2": _alert("a2")}, lambda alert: alert.alert_id == "a1")  # a1 historical
    outbox.confirm()
    previous = dict(outbox.sent)
    current = {"a1": _alert()}
    messages = outbox.release(current, live)
    assert [(m.type, m.alert_id) for m in messages] == [("alert.withdrawal", "a2")]  # a1 unchanged: not sent
    stale = stale_alert_points(previous, messages)
    assert [(a.alert_id, a.historical) for a in standing_alerts_sharing(stale, current, outbox.sent, messages)] == [
        ("a1", True)]
    # Another identity keeps its point; an alert the release sends anyway has its point written with it.
    other = {"a3": _alert("a3", rule="recheck.interval_stable")}
    assert standing_alerts_sharing(stale, other, {"a3": outbox.sent["a1"]}, messages) == []
    assert standing_alerts_sharing(stale, current, outbox.sent, [*messages, _alert()]) == []


def test_a_stored_period_is_the_json_of_its_events_bodies():
    events = COHORT[1][:40]  # lab panels, readings, workouts, symptoms
    assert json.loads(codec.encode_events(map(dump_event, events))) == {
        "v": codec.FORMAT_VERSION, "events": [event.model_dump(mode="json", exclude_none=True) for event in events]}


def test_codec_round_trips_events_and_outbox_and_refuses_other_versions():
    events = EVENTS["fat_loss_unchanged_ai"]
    record = ClinicalRecord.new(events[0].athlete_id)
    added = record.timeline.add(events)
    record.outbox.release(record.timeline.alerts(), live)
    store = dict(codec.event_writes(record, added) + [codec.outbox_write(record)])
    restored = codec.read_record(record.timeline.athlete_id, store.get)
    assert restored.timeline.encoded == record.timeline.encoded == [dump_event(e) for e in events]
    assert restored.outbox == record.outbox and restored.periods == record.periods
    assert all(json.loads(value)["v"] == codec.FORMAT_VERSION for value in store.values())
    store[codec.OUTBOX_PART] = json.dumps({"v": 99, "sent": {}}).encode()
    with pytest.raises(codec.StoredStateError, match="format version 99"):
        codec.read_record(record.timeline.athlete_id, store.get)
    assert codec.read_record("never-stored", {}.get) is None


def ctx_periods(ctx, athlete_key):
    return json.loads(ctx.history_table[part_key(athlete_key, codec.PERIODS_PART)])["periods"]


def test_a_stored_history_this_worker_cannot_read_holds_that_athlete_and_nothing_else():
    """An event stored before the contract refused its kind (here a weigh-in dated in the year 3000), or a part
    in a newer format: that athlete's record is not built from part of its history, and the agent is told so
    without the values; another athlete's record loads as before."""
    ctx = Clinical(None, {}, {}, None, EngineSettings())
    for name in ("fat_loss_unchanged_ai", "stable_control"):
        record = ClinicalRecord.new(EVENTS[name][0].athlete_id)
        added = record.timeline.add(EVENTS[name])
        for part, value in codec.placement_writes(record, added):
            ctx.history_table[part_key(record.timeline.athlete_id.encode(), part)] = value
    held = EVENTS["fat_loss_unchanged_ai"][0].athlete_id.encode()
    last_period = max(part_key(held, codec.period_part(period)) for period in ctx_periods(ctx, held))
    stored = json.loads(ctx.history_table[last_period])
    stored["events"][-1] = {**stored["events"][-1], "time": "3000-01-01T07:00:00Z"}
    ctx.history_table[last_period] = json.dumps(stored).encode()
    with pytest.raises(HistoryUnreadable) as caught:
        _load(ctx, held, held.decode())
    assert caught.value.reason == "EventError: time"
    assert held.decode() not in str(caught.value) and "3000" not in str(caught.value)
    assert held not in ctx.records
    other = EVENTS["stable_control"][0].athlete_id
    assert as_json(_load(ctx, other.encode(), other).timeline.alerts().values()) == evaluated(EVENTS["stable_control"])
    ctx.history_table[last_period] = json.dumps({"v": 99, "events": []}).encode()
    with pytest.raises(HistoryUnreadable, match=r"\(StoredStateError: stored part"):
        _load(ctx, held, held.decode())


def test_a_history_the_engine_fails_to_fold_holds_that_athlete_and_leaves_its_release_owed(monkeypatch, caplog):
    """A bug in the fold (as the boundary TypeError of fb853c3 was) is kept to its athlete: nothing is released for
    it, its record leaves memory, its stored outbox still owes a release (the next event or a restart tries again),
    and the log names it by a digest and the error's type only."""
    ctx = Clinical(None, {}, {}, None, EngineSettings())
    events = EVENTS["fat_loss_unchanged_ai"]
    athlete_key = events[0].athlete_id.encode()
    record = ClinicalRecord.new(events[0].athlete_id)
    for part, value in codec.placement_writes(record, record.timeline.add(events)):
        ctx.history_table[part_key(athlete_key, part)] = value
    ctx.progress[0] = PartitionProgress(caught_up={path: True for path in PartitionProgress.expected})
    ctx.unreleased[0] = {athlete_key}

    def broken_fold(self):
        raise TypeError("'<' not supported between instances of 'int' and 'tuple'")

    monkeypatch.setattr(AthleteTimeline, "fold", broken_fold)
    asyncio.run(_release(ctx, {0}))
    assert athlete_key not in ctx.records and not ctx.unreleased.get(0) and ctx.held == {athlete_key}
    assert codec.decode_outbox(events[0].athlete_id, ctx.history_table[part_key(athlete_key, codec.OUTBOX_PART)]).unreleased
    [held] = [r.getMessage() for r in caplog.records if "held" in r.getMessage()]
    assert "cannot be folded (TypeError)" in held and events[0].athlete_id not in held


class OnePartitionTable(dict):
    """A plain mapping for the clinical table, every key in partition 0."""

    def partition_for_key(self, key):
        return 0


class RecordingProducer:
    """What a release sends, kept in order (at least once: no transaction), each delivery already acknowledged."""

    def __init__(self):
        self.sent = []

    async def send(self, topic, key, value, partition, timestamp, headers, transactional_id=None):
        self.sent.append(value)
        delivered = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered


class RecordingStore:
    def __init__(self):
        self.points = []

    async def write(self, points, before_attempt=None):
        self.points += points
        return len(points)


class RecordingStreams:
    """The release's view of the worker, recording instead of reaching a broker and InfluxDB: these tests are of
    the release's bookkeeping (the real path is tests/integration/test_clinical_stream.py)."""

    def __init__(self):
        self.app = SimpleNamespace(in_transaction=False, producer=RecordingProducer())
        self.store = RecordingStore()

    def influx(self):
        return self.store


def test_a_hold_lasts_until_a_release_of_that_athlete_succeeds_and_its_alerts_go_out_then(monkeypatch):
    """Held while its fold fails (counted in `held`, nothing sent), released whole once a fold succeeds: the hold
    is lifted and what is sent is `evaluate --as-of now`'s alerts for its history."""
    events = EVENTS["fat_loss_unchanged_ai"]
    athlete_key = events[0].athlete_id.encode()
    streams = RecordingStreams()
    table = OnePartitionTable()
    table.app = streams.app
    ctx = Clinical(streams, table, {}, SimpleNamespace(get_topic_name=lambda: "alerts"), EngineSettings())
    _place(ctx, 0, athlete_key, events)
    ctx.progress[0] = PartitionProgress(caught_up={path: True for path in PartitionProgress.expected})
    folding = AthleteTimeline.fold

    def broken_fold(self):
        raise TypeError("'<' not supported between instances of 'int' and 'tuple'")

    monkeypatch.setattr(AthleteTimeline, "fold", broken_fold)
    asyncio.run(_release(ctx, {0}))
    assert ctx.held == {athlete_key} and streams.app.producer.sent == []
    monkeypatch.setattr(AthleteTimeline, "fold", folding)
    ctx.unreleased[0] = {athlete_key}  # as the stored outbox still owes it: its next event or a restart
    asyncio.run(_release(ctx, {0}))
    assert ctx.held == set()
    sent = [Alert.model_validate_json(value) for value in streams.app.producer.sent
            if json.loads(value)["type"] == "alert"]
    assert sent and as_json(sent) == as_json(boundary.evaluate(events, as_of_s=time.time()))  # the clock run on


def test_events_a_bug_keeps_from_being_placed_wait_in_the_table_until_a_worker_without_it_places_them(monkeypatch):
    """A bug while placing (raised here for one event's id): the batch's events are kept in the athlete's pending
    part, nothing is released, and while the bug lasts every restore fails on them (the athlete stays held). A
    worker without the bug places them among the history, stores them in their periods, owes a release, and the
    alerts are evaluate's for every event."""
    events = EVENTS["fat_loss_unchanged_ai"]
    athlete_key = events[0].athlete_id.encode()
    ctx = Clinical(None, OnePartitionTable(), {}, None, EngineSettings())
    first, rest = events[: len(events) // 2], events[len(events) // 2:]
    _place(ctx, 0, athlete_key, first)
    ctx.unreleased.clear()
    placing = AthleteTimeline.add

    def add_with_a_bug(self, batch):
        if any(event.event_id == rest[0].event_id for event in batch):
            raise TypeError("'<' not supported between instances of 'int' and 'tuple'")
        return placing(self, batch)

    monkeypatch.setattr(AthleteTimeline, "add", add_with_a_bug)
    _place(ctx, 0, athlete_key, rest)
    assert part_key(athlete_key, codec.PENDING_PART) in ctx.history_table
    assert athlete_key not in ctx.records and not ctx.unreleased.get(0) and ctx.held == {athlete_key}
    with pytest.raises(HistoryUnreadable, match=r"\(TypeError\)"):
        _load(ctx, athlete_key, events[0].athlete_id)
    _place(ctx, 0, athlete_key, rest[1:2])  # later events of a held athlete wait too
    monkeypatch.setattr(AthleteTimeline, "add", placing)
    record = _load(ctx, athlete_key, events[0].athlete_id)
    assert part_key(athlete_key, codec.PENDING_PART) not in ctx.history_table
    assert ctx.unreleased[0] == {athlete_key}
    assert as_json(record.timeline.alerts().values()) == evaluated(events)
    restored = codec.read_record(events[0].athlete_id, lambda part: ctx.history_table.get(part_key(athlete_key, part)))
    assert restored.timeline.encoded == [dump_event(event) for event in events] and restored.pending == ()


def test_a_batch_stores_only_the_periods_it_touched():
    events = COHORT[1]
    record = ClinicalRecord.new(events[0].athlete_id)
    codec.event_writes(record, record.timeline.add(events[:-1]))
    writes = codec.event_writes(record, record.timeline.add(events[-1:]))
    assert [part for part, _ in writes] == [codec.period_part(codec.period_of(events[-1]))]


def test_events_at_the_first_moment_of_a_period_are_stored_in_that_period():
    # Periods start at Thursday 00:00 UTC (the epoch's weekday): a lab entered with a date only falls there.
    boundary_s = 2900 * codec.PERIOD_S
    at = datetime.fromtimestamp(boundary_s, timezone.utc)
    athlete = EVENTS["fat_loss_unchanged_ai"][0].athlete_id
    before, on, after = (parse_event({
        "type": "lab.result", "schema_version": 1, "athlete_id": athlete, "time": (at.timestamp() + offset_s),
        "analyte": analyte, "value": 25, "unit": "pg/mL" if analyte == "estradiol" else "ng/dL",
    }) for offset_s, analyte in ((-1, "estradiol"), (0, "testosterone_total"), (0, "estradiol")))
    record = ClinicalRecord.new(athlete)
    stored = dict(codec.event_writes(record, record.timeline.add([after, on, before])))
    period = codec.period_of(on)
    assert period == boundary_s // codec.PERIOD_S
    assert codec.period_events(record.timeline, period) == [dump_event(on), dump_event(after)]
    assert codec.period_events(record.timeline, period - 1) == [dump_event(before)]
    restored = codec.read_record(athlete, stored.get)
    assert restored.timeline.encoded == record.timeline.encoded


def test_partition_progress_needs_every_path_caught_up_since_its_last_event():
    progress = PartitionProgress()
    for path in TIMELINE_INPUTS:
        assert not progress.complete()
        progress.on_marker(ProgressMarker(input=path, partition=0, caught_up=True))
    assert progress.complete()
    lab_path = "aromatrack.v1.lab.result"
    progress.on_event(lab_path)  # a batch of labs is arriving: wait for its stage's next marker
    assert not progress.complete()
    progress.on_marker(ProgressMarker(input=lab_path, partition=0, caught_up=False))
    assert not progress.complete()
    progress.on_marker(ProgressMarker(input=lab_path, partition=0, caught_up=True))
    assert progress.complete()


def caught_up_everywhere() -> PartitionProgress:
    progress = PartitionProgress()
    for path in TIMELINE_INPUTS:
        progress.on_marker(ProgressMarker(input=path, partition=0, caught_up=True))
    return progress


def import_marker(import_id: str, path: str, lease_s: float) -> ImportMarker:
    return ImportMarker(import_id=import_id, input=path, partition=0, lease_s=lease_s)


def test_an_open_import_holds_a_caught_up_partition_until_it_is_closed_along_every_path():
    progress, first_path, *other_paths = caught_up_everywhere(), *sorted(TIMELINE_INPUTS)
    import_id = "a" * 32
    progress.on_marker(import_marker(import_id, first_path, 30.0))
    assert not progress.complete(now=101.0)  # the worker read what was there, but the sender is not done
    for path in [first_path, *other_paths[:-1]]:
        progress.on_marker(import_marker(import_id, path, 0.0))
        assert not progress.complete(now=102.0)  # the last path may still carry the import's events
    progress.on_marker(import_marker(import_id, other_paths[-1], 0.0))
    assert progress.complete(now=103.0)


def test_an_import_lapses_after_its_lease_with_every_path_caught_up_and_nothing_heard_of_it():
    progress, path = caught_up_everywhere(), sorted(TIMELINE_INPUTS)[0]
    progress.on_marker(import_marker("b" * 32, path, 30.0))
    assert not progress.complete(now=100.0)
    progress.on_marker(import_marker("b" * 32, path, 30.0))  # renewed: the sender is alive
    assert not progress.complete(now=125.0)
    assert not progress.complete(now=154.0)
    assert progress.complete(now=155.0)  # a sender that died: caught up on what it sent, for one lease
    assert progress.imports == {}


def test_an_import_does_not_lapse_while_a_path_lags_behind_with_its_share():
    """The FIT agent decodes the import's uploads long after the sender closed the import on the other paths."""
    progress, paths = caught_up_everywhere(), sorted(TIMELINE_INPUTS)
    fit_path = via(FIT_TOPIC, SUMMARY_TOPIC)
    progress.on_marker(import_marker("c" * 32, fit_path, 30.0))
    for path in paths:
        if path != fit_path:
            progress.on_marker(import_marker("c" * 32, path, 0.0))
    for second in range(100, 400, 2):  # five minutes of decoding: its summaries keep arriving
        progress.on_event(fit_path)
        assert not progress.complete(now=float(second))
        progress.on_marker(ProgressMarker(input=fit_path, partition=0, caught_up=True))
        assert not progress.complete(now=second + 1.0)
    assert "c" * 32 in progress.imports
    progress.on_marker(import_marker("c" * 32, fit_path, 0.0))
    assert progress.complete(now=401.0)


def test_closes_of_an_import_never_seen_open_hold_nothing_and_each_import_is_closed_on_its_own():
    progress, path = caught_up_everywhere(), sorted(TIMELINE_INPUTS)[0]
    progress.on_marker(import_marker("d" * 32, path, 0.0))  # its open came before this worker's start
    assert progress.complete(now=100.0)
    progress.on_marker(import_marker("e" * 32, path, 30.0))
    progress.on_marker(import_marker("f" * 32, path, 30.0))
    for other in TIMELINE_INPUTS:
        progress.on_marker(import_marker("e" * 32, other, 0.0))
    assert not progress.complete(now=101.0)  # the other sender's import is still open
    assert set(progress.imports) == {"f" * 32}


def test_a_partition_taken_over_mid_import_resumes_its_imports_from_the_stored_part():
    """The new holder starts after the last batch handled: a close read there must not be needed again."""
    paths = sorted(TIMELINE_INPUTS)
    progress = caught_up_everywhere()
    progress.on_marker(import_marker("a" * 32, paths[0], 30.0))
    progress.on_marker(import_marker("b" * 32, paths[0], 30.0))
    for path in paths[:-1]:
        progress.on_marker(import_marker("a" * 32, path, 0.0))
    for path in paths:
        progress.on_marker(import_marker("b" * 32, path, 0.0))
    stored = codec.encode_imports(progress)

    resumed = codec.resume_progress(stored)
    assert codec.encode_imports(resumed) == stored
    assert set(resumed.imports) == {"a" * 32} and resumed.imports["a" * 32].closed_along == set(paths[:-1])
    assert list(resumed.closed) == ["b" * 32]
    for path in paths:
        resumed.on_marker(ProgressMarker(input=path, partition=0, caught_up=True))  # the stages' heartbeats
    resumed.on_marker(import_marker("b" * 32, paths[-1], 30.0))  # read again: it does not open the closed import
    resumed.on_marker(import_marker("a" * 32, paths[-1], 30.0))  # the lagging path's renewal
    assert not resumed.complete(now=100.0)
    resumed.on_marker(import_marker("a" * 32, paths[-1], 0.0))
    assert resumed.complete(now=101.0)  # at the close, not a lease later
    assert codec.resume_progress(None).imports == {}


def test_a_partition_remembers_its_last_closed_imports_only():
    progress = caught_up_everywhere()
    import_ids = [f"{number:032x}" for number in range(CLOSED_IMPORTS_KEPT + 5)]
    for import_id in import_ids:
        for path in TIMELINE_INPUTS:
            progress.on_marker(import_marker(import_id, path, 30.0))
        for path in TIMELINE_INPUTS:
            progress.on_marker(import_marker(import_id, path, 0.0))
    assert list(codec.resume_progress(codec.encode_imports(progress)).closed) == import_ids[-CLOSED_IMPORTS_KEPT:]


def test_stage_progress_reports_changes_forwards_and_heartbeats():
    stage, scale = StageProgress(), InputPartition("aromatrack.v1.scale.reading", 1)
    first = stage.markers({scale: 10}, {scale: 4}, now=100.0)
    assert [(m.partition, m.caught_up) for m in first] == [(1, False)]
    assert stage.markers({scale: 10}, {scale: 4}, now=100.1) == []  # nothing new to say
    stage.handle(scale.topic, 1, 9)
    assert [m.caught_up for m in stage.markers({scale: 10}, {scale: 4}, now=100.2)] == [True]
    stage.handle(scale.topic, 1, 10)
    # caught up again after forwarding: the downstream path is busy until this marker
    assert [m.caught_up for m in stage.markers({scale: 11}, {}, [scale], now=100.3)] == [True]
    assert [m.caught_up for m in stage.markers({scale: 11}, {}, now=100.0 + HEARTBEAT_S)] == [True]  # heartbeat
    assert stage.markers({scale: None}, {}, now=100.1 + HEARTBEAT_S)[0].caught_up is False  # end offset unknown


def topic_state(messages):
    """What a consumer of the alerts topic holds: the last message per alert id, withdrawn ones dropped."""
    latest = {}
    for message in messages:
        latest[message.alert_id] = message
    return {alert_id: json.loads(dump_event(m)) for alert_id, m in latest.items() if m.type == "alert"}


def point_state(points):
    """What InfluxDB holds after writing `points` in order: the last fields per measurement, tags and time."""
    return {(p.measurement, tuple(sorted(p.tags.items())), p.time): dict(p.fields) for p in points}


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(sorted(HISTORIES)), st.integers(0, 2**32))
def test_random_interleavings_lateness_releases_and_crashes_end_in_evaluates_alerts_and_points(name, seed):
    """The agent's sequence per batch, simulated: place the batch, store its parts, release when the watermark
    says the input is in (fold, store the outbox with the release in flight, send, write the fold's points,
    confirm, store). Arrival is shuffled, some events come after alerts up to their time were released (late),
    the worker crashes before or in the middle of a store (the batch is delivered again to a record restored from
    what was stored) and while sending, before writing the points or before confirming a release, and releases
    settle the timeline to a few dozen events in memory (an event before those reads the history back whole).
    After every confirmed release the topic holds exactly what evaluate gives for the events sent so far; at the
    end, for the whole history, and the points written are those of one fold of the whole history."""
    events, rng = HISTORIES[name], random.Random(seed)
    athlete = events[0].athlete_id
    late = set(rng.sample(range(len(events)), k=min(len(events) // 10, 20)))
    arrival = [e for i, e in enumerate(events) if i not in late]
    rng.shuffle(arrival)
    arrival += [events[i] for i in sorted(late)]  # entered after everything else was released
    store: dict[bytes, bytes] = {}
    topic: list = []
    written: list = []  # the points written to InfluxDB, in order
    record = None
    applied: list = []
    position = redelivered = 0
    while position < len(arrival):
        batch = arrival[position : position + max(redelivered, rng.randint(1, 40))]
        redelivered = 0
        if record is not None and not codec.holds(record, batch):  # settled past the batch: read back whole
            record = None
        record = record or codec.restore(athlete, store.get) or ClinicalRecord.new(athlete)
        added = record.timeline.add(batch)
        writes = codec.placement_writes(record, added) if added else []
        crash = rng.random()
        if crash < 0.05:  # before or in the middle of the store: delivered again from the committed offset
            store.update(writes[: rng.randint(0, len(writes))])
            record, redelivered = None, len(batch)
            continue
        store.update(writes)
        position += len(batch)
        applied += batch
        if rng.random() < 0.3 or position == len(arrival):  # the watermark is complete
            points = record.timeline.fold()
            messages = record.outbox.release(record.timeline.alerts(), live)
            if rng.random() < 0.5:  # memory kept to the recent part (the agent settles long histories)
                record.timeline.settle(rng.randint(20, 80))
            store.update([codec.outbox_write(record)])
            sent = rng.randint(0, len(messages)) if rng.random() < 0.1 else len(messages)
            topic += messages[:sent]
            if sent < len(messages) or rng.random() < 0.05:  # crashed while sending, or before writing the points
                record = None
                continue
            written += points
            if rng.random() < 0.05:  # crashed before confirming
                record = None
                continue
            record.outbox.confirm()
            store.update([codec.outbox_write(record)])
            assert topic_state(topic) == evaluated(applied)
    record = codec.restore(athlete, store.get)
    written += record.timeline.fold()
    topic += record.outbox.release(record.timeline.alerts(), live)
    assert topic_state(topic) == evaluated(events)
    assert point_state(written) == point_state(AthleteTimeline.of(athlete, events).fold())


def test_markers_parse_by_kind_and_stages_relabel_them_with_the_path_they_came_along():
    sent = ImportMarker(import_id="f" * 32, partition=2, lease_s=30.0)
    assert parse_marker(dump_marker(sent)) == sent
    on_summaries = arrived_via(arrived_via(sent, FIT_TOPIC), SUMMARY_TOPIC)  # the FIT agent's, then the ingest's
    assert on_summaries.input == via(FIT_TOPIC, SUMMARY_TOPIC) and on_summaries.input in TIMELINE_INPUTS
    progress = ProgressMarker(input=FIT_TOPIC, partition=2, caught_up=True)
    assert parse_marker(dump_marker(progress)) == progress
    assert arrived_via(progress, SCALE_TOPIC).input == via(FIT_TOPIC, SCALE_TOPIC)
    for bad in (b'{"type": "import", "import_id": "x", "partition": 0, "lease_s": 1}',
                b'{"type": "import", "import_id": "' + b"f" * 32 + b'", "partition": 0, "lease_s": 3601}',
                b'{"type": "progress", "input": "a", "partition": 0}'):
        with pytest.raises(ValidationError):
            parse_marker(bad)


def test_a_stage_refuses_a_marker_that_is_not_one_or_names_another_partition():
    marker = ImportMarker(import_id="a" * 32, partition=1, lease_s=30.0)
    assert marker_found_on(dump_marker(marker), 1) == marker
    with pytest.raises(MarkerError, match="for partition 1, found on partition 2"):
        marker_found_on(dump_marker(marker), 2)
    with pytest.raises(MarkerError, match="not a valid v1 marker"):
        marker_found_on(b'{"type": "import"}', 1)
