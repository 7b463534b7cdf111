"""The API's probes without servers: unready until startup has opened the broker producer and InfluxDB client."""

from __future__ import annotations

from fastapi.testclient import TestClient

from aromatrack.services.api import Services, create_app
from aromatrack.services.health import ConsumerHealth
from aromatrack.services.store import Store


def test_the_api_is_unready_until_its_broker_and_influxdb_clients_are_open(tmp_path) -> None:
    services = Services(Store(tmp_path / "api.sqlite3"))
    client = TestClient(create_app(services))
    assert client.get("/livez").json() == {"alive": True}
    assert client.get("/readyz").status_code == 503
    services.sink, services.influx = object(), object()
    assert client.get("/readyz").json() == {"ready": True}


def test_the_notifier_is_ready_only_while_its_loop_goes_round_holding_partitions() -> None:
    health = ConsumerHealth(stall_after_s=60)
    assert health.alive and not health.ready  # started, not in its group yet
    health.went_round(partitions=4)
    assert health.ready
    health.last_round -= 61  # a delivery or the broker client stuck for a minute
    assert not health.alive and not health.ready


def test_a_worker_is_ready_only_holding_partitions_in_both_groups_in_a_current_session_and_not_stopping() -> None:
    """Held athletes are counted, not a reason to be unready: the worker does its share for every other one."""
    from aromatrack.streams.health import Readiness

    ready = dict(agent_partitions=8, ingest_partitions=12, rebalancing=False, recovering=False, stopping=False,
                 session_current=True, held_athletes=0)
    assert Readiness(**ready).ready and Readiness(**{**ready, "held_athletes": 2}).ready
    for unready in (
        Readiness(**{**ready, "agent_partitions": 0}),  # beyond the partitions
        Readiness(**{**ready, "ingest_partitions": 0}),  # ingest not joined
        Readiness(**{**ready, "rebalancing": True}),
        Readiness(**{**ready, "recovering": True}),  # tables not rebuilt
        Readiness(**{**ready, "stopping": True}),  # crashed or fenced, rejoined for a moment on its way out
        Readiness(**{**ready, "session_current": False}),  # cut off: what it lists may be another worker's by now
    ):
        assert not unready.ready, unready
