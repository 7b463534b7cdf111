"""Line protocol as the storage adapter writes it (what the real InfluxDB reads back: tests/integration/
test_line_protocol.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from aromatrack.schemas.series import Point
from aromatrack.streams.influx import PointsRefused, _refusal_reason, to_line

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
