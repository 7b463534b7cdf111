"""Line protocol as the storage adapter writes it (what the real InfluxDB reads back: tests/integration/
test_line_protocol.py)."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aromatrack.schemas.series import Point
from aromatrack.streams.influx import PointsRefused, _dropped_by_partial_write, _refusal_reason, to_line, write_storable

WHEN = datetime(2026, 3, 2, 7, 0, 0, 123456, tzinfo=timezone.utc)


def test_names_and_tags_escape_commas_equals_and_spaces_and_strings_escape_quotes_and_backslashes():
    point = Point("body composition", {"device": "Body+ x,y=z", "athlete_id": "a-1", "empty": ""},
                  {"weight_kg": 80, "note": 'said "hi" \\o/', "salvaged": False, "fat mass": 17.5}, WHEN)
    assert to_line(point) == (
        'body\\ composition,athlete_id=a-1,device=Body+\\ x\\,y\\=z '
        'fat\\ mass=17.5,note="said \\"hi\\" \\\\o/",salvaged=false,weight_kg=80.0 1772434800123456000'
    )


@pytest.mark.parametrize("text", ["line\nbreak", "tab\t", "trailing\\", "back\\slash"])
def test_a_tag_line_protocol_cannot_carry_is_refused_without_quoting_it(text):
    for point in (Point("m", {"device": text}, {"x": 1.0}, WHEN), Point("m", {}, {text: 1.0}, WHEN)):
        with pytest.raises(PointsRefused) as refused:
            to_line(point)
        assert text not in str(refused.value)


def test_influxdbs_reason_for_a_refusal_is_kept_without_the_lines_it_quotes():
    # As InfluxDB 1.6 answers: a line it cannot parse is quoted whole, values and all.
    unparsable = ('{"error":"unable to parse \'body_composition,athlete_id=ath-1,device=a\\\\\\\\ weight_kg=80.0 '
                  '1577836800000000000\': invalid tag format"}')
    assert _refusal_reason(unparsable) == "unable to parse"
    conflict = ('{"error":"partial write: field type conflict: input field \\"weight_kg\\" on measurement '
                '\\"body_composition\\" is type float, already exists as type string dropped=1"}')
    assert _refusal_reason(conflict) == ('partial write: field type conflict: input field "weight_kg" on measurement '
                                         '"body_composition" is type float, already exists as type string dropped=1')
    assert _refusal_reason("") == "no reason given"


def test_a_partial_write_says_how_many_points_influxdb_left_out():
    # As InfluxDB 1.6 answers when it stored every other point of the request.
    assert _dropped_by_partial_write('{"error":"partial write: points beyond retention policy dropped=3"}') == 3
    assert _dropped_by_partial_write('{"error":"unable to parse \'m x=1 1\': bad timestamp"}') is None


def points_numbered(count: int) -> list[Point]:
    return [Point("m", {"athlete_id": "a"}, {"n": float(n)}, WHEN) for n in range(count)]


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=200).flatmap(
    lambda count: st.tuples(st.just(count), st.sets(st.integers(min_value=0, max_value=max(count - 1, 0)), max_size=count))))
def test_what_a_server_refuses_whole_requests_for_is_found_and_the_rest_is_written(case):
    """A server that refuses a request with any bad point in it and says no more (as a 2.x may): every other point
    is written, the refused ones are counted, and each costs at most 2·log2(n) requests, not one per point."""
    count, bad = case
    written: set[int] = set()
    requests = 0

    async def write(points: list[Point]) -> int:
        nonlocal requests
        requests += 1
        numbers = {int(point.fields["n"]) for point in points}
        if numbers & bad:
            raise PointsRefused("write refused (400): bad")
        written.update(numbers)
        return len(points)

    assert asyncio.run(write_storable(write, points_numbered(count))) == len(bad)
    assert written == set(range(count)) - bad
    assert requests <= 1 + 2 * len(bad) * max(1, math.ceil(math.log2(max(count, 2))))


def test_a_partial_write_is_taken_at_the_servers_word():
    calls = []

    async def write(points: list[Point]) -> int:
        calls.append(len(points))
        raise PointsRefused("write refused (400): partial write: points beyond retention policy dropped=2", 2)

    assert asyncio.run(write_storable(write, points_numbered(10))) == 2
    assert calls == [10]
