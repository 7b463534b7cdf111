"""Timeline messages: a stage's events of one athlete in one `timeline.batch`, each validated again on its own."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.schemas.events import MAX_JSON_DEPTH, EventError, dump_event, parse_event
from aromatrack.schemas import timeline
from aromatrack.schemas.timeline import MAX_BATCH_BYTES, batch_messages, parse_timeline_message

from .test_events import _outcome, odd_event_texts


def scale(minute: int, body_fat: float = 20.0, **extra) -> dict:
    return {"type": "scale.reading", "athlete_id": "ath-1", "time": f"2026-02-01T07:{minute:02d}:00+00:00",
            "weight_kg": 80.0, "body_fat_pct": body_fat, **extra}


def canonical(raw: dict) -> bytes:
    return dump_event(parse_event(raw))


@given(st.lists(st.integers(min_value=0, max_value=59), min_size=1, max_size=40))
def test_a_batch_gives_back_its_events_in_order(minutes: list[int]) -> None:
    events = [canonical(scale(minute, 10 + index % 30)) for index, minute in enumerate(minutes)]
    [message] = batch_messages(events)
    items = parse_timeline_message(message)
    assert [dump_event(item.event) for item in items] == events
    assert [item.canonical for item in items] == events  # the reader's own dump, kept for the clinical timeline
    assert all(item.error is None for item in items)


def _read(read, message: bytes) -> list[str] | str:
    try:
        items = read(message)
    except EventError as exc:
        return f"message refused: {exc}"
    return [dump_event(item.event).decode() if item.error is None else f"refused: {item.error}" for item in items]


@settings(max_examples=300, deadline=None)
@given(st.lists(odd_event_texts(), min_size=1, max_size=4), st.booleans())
def test_a_batch_reads_the_same_in_one_pass_as_event_by_event(texts: list[str], events_twice: bool) -> None:
    # The one pass over the bytes is taken only when certain; the event-by-event read decides everything else.
    events = b"[" + b",".join(text.encode() for text in texts) + b"]"
    if events_twice:  # a key given twice: the last one counts, as in an event
        events = b'[{"type":"nothing"}],"events":' + events
    message = b'{"type":"timeline.batch","schema_version":1,"events":' + events + b"}"
    assert _read(parse_timeline_message, message) == _read(timeline._read_event_by_event, message)
    if not events_twice:
        assert message == batch_messages([text.encode() for text in texts])[0]


def test_each_event_of_a_canonical_batch_reads_as_it_would_alone() -> None:
    texts = [json.dumps(scale(1)), json.dumps(scale(2, body_fat=140.0)), json.dumps(scale(3, note="\u00e9"))]
    [message] = batch_messages([text.encode() for text in texts])
    assert _read(parse_timeline_message, message) == [_outcome(text) for text in texts]


def test_a_single_event_is_still_a_timeline_message() -> None:
    raw = canonical(scale(1))
    [item] = parse_timeline_message(raw)
    assert item.event == parse_event(raw)


def test_batches_stay_within_their_size_and_keep_the_order() -> None:
    padding = "x" * 20_000  # events may carry extra fields, up to the contract's per-event limit
    events = [canonical(scale(minute % 60, note=padding + str(minute))) for minute in range(40)]
    messages = batch_messages(events)
    assert len(messages) > 1
    assert all(len(message) <= MAX_BATCH_BYTES for message in messages)
    parsed = [dump_event(item.event) for message in messages for item in parse_timeline_message(message)]
    assert parsed == events


def test_an_invalid_event_in_a_batch_fails_alone_with_its_reason() -> None:
    good = canonical(scale(1))
    bad = json.dumps(scale(2, body_fat=140.0)).encode()
    items = parse_timeline_message(batch_messages([good, bad, good])[0])
    assert [item.event is not None for item in items] == [True, False, True]
    assert "body_fat_pct" in str(items[1].error)
    assert json.loads(items[1].original) == json.loads(bad)


def test_each_event_of_a_batch_gets_the_depth_limit_of_an_event_sent_alone() -> None:
    nested: object = 1
    for _ in range(MAX_JSON_DEPTH - 2):
        nested = [nested]
    deep = json.dumps(scale(3, extra_field=nested)).encode()
    [alone] = parse_timeline_message(deep)
    [batched] = parse_timeline_message(batch_messages([deep])[0])
    assert alone.error is None and batched.error is None  # the batch's two levels do not count against it


@pytest.mark.parametrize("raw", [
    b'{"type":"timeline.batch","schema_version":2,"events":[]}',
    b'{"type":"timeline.batch","schema_version":1,"events":{}}',
    b'{"type":"timeline.batch","schema_version":1,"events":[],"extra":1}',
    b"not json",
])
def test_a_malformed_message_is_refused_whole(raw: bytes) -> None:
    with pytest.raises(EventError):
        parse_timeline_message(raw)
