"""The offset ranges an agent was not given (streams/delivery.py `skipped_ranges`)."""

from hypothesis import given, strategies as st

from aromatrack.streams.delivery import skipped_ranges


def test_ranges_before_and_between_the_offsets_given():
    assert skipped_ranges(5, [5, 10, 11, 13]) == [(6, 10), (12, 13)]
    assert skipped_ranges(0, [3]) == [(0, 3)]
    assert skipped_ranges(10, [3, 4, 12]) == [(10, 12)]  # offsets already handled are not a gap
    assert skipped_ranges(2, []) == []


@given(st.integers(0, 50), st.sets(st.integers(0, 100), max_size=30))
def test_the_ranges_and_the_offsets_given_cover_everything_up_to_the_last_once(expected, offsets):
    ranges = skipped_ranges(expected, offsets)
    missing = [offset for start, end in ranges for offset in range(start, end)]
    assert len(missing) == len(set(missing)) and not set(missing) & offsets
    last = max(offsets, default=expected - 1)
    assert set(missing) | {offset for offset in offsets if offset >= expected} == set(range(expected, last + 1))
