"""The faust settings each processing guarantee gives the worker's app (streams/fencing.py)."""

from aromatrack.streams.fencing import CommittedTableManager, faust_settings


def test_at_least_once_keeps_fausts_defaults():
    assert faust_settings("at_least_once") == {"processing_guarantee": "at_least_once"}


def test_exactly_once_drops_the_standbys_and_recovers_to_the_committed_ends():
    assert faust_settings("exactly_once") == {"processing_guarantee": "exactly_once", "table_standby_replicas": 0,
                                              "TableManager": CommittedTableManager}
