"""Several hosts for real, on one machine: the broker (with InfluxDB), two workers and the API each on a network
namespace of its own with its own address (tests/integration/hosts.py), the test on a fifth.

A history is streamed through the API in ten slices. After the third, one worker's host is cut off (its switch
port down): the other worker takes over every partition (its /readyz says so) while the stream goes on. After
the sixth the cut-off worker is reconnected and rejoins (both hold half again). At the end the alerts should
equal `aromatrack evaluate`'s and every InfluxDB series a clean one-worker run's on loopback over the same slices
(which must itself equal evaluate's), so that nothing was lost and nothing counted twice.

Unfenced, the stateful agents' results (alerts, body-fat trend, loads, CTL) diverged in most runs here: the
cut-off worker's queued table writes reached the changelogs after the new owner's (README "Several hosts").
Fenced (streams/fencing.py), the cut-off worker's Kafka writes are aborted, its InfluxDB writes start only while
its session lease lasts and arrive soon or never, and it stops itself (fail-stop); the test restarts it after the
reconnect, as its supervisor would. Every series and alert must then equal the reference's: a divergence, a worker
that stops for any other reason, the takeover and the rejoin are all failures.

The history is JSON events only (workout summaries, no FIT files: the cohort without recordings); profiles go
straight to Kafka first, as the API has no profile route. Skipped, with the reason, where network namespaces
cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import pytest

from aromatrack.deploy import influx_access, local_stack
from aromatrack.deploy.settings import load_settings
from aromatrack.schemas import boundary, series, topics
from aromatrack.schemas.events import dump_event
from aromatrack.services.api import EVENT_ROUTES
from aromatrack.streams.admin import LagProbe, NotConsumed, wait_until_consumed
from aromatrack.streams.input_progress import HEARTBEAT_S
from aromatrack.streams.producer import EventProducer

from . import hosts as test_hosts
from .changelogs import dump_changelogs
from .conftest import Worker, eventually
from .test_clinical_stream import alerts_on_topic, topic_state
from .test_workers import CONSUMED_WITHIN_S, cohort_events, influx_dump

KAFKA_PORT, INFLUX_PORT, API_PORT, WEB_PORT = 39792, 38792, 38480, 6066
SLICES, CUT_AFTER, RECONNECT_AFTER = 10, 3, 6
ROUTE_FOR = {event_type: suffix for suffix, event_type in EVENT_ROUTES.items()}
INGEST_PARTITIONS = len(topics.INGEST_TOPICS) * topics.PARTITIONS
# Written by the ingest path from each event alone (streams/points.py), so never touched by table state; in
# the dump as "<audience>.<measurement>".
STATELESS_MEASUREMENTS = {series.BODY_COMPOSITION.measurement, series.LAB.measurement, series.DOSE.measurement,
                          series.SYMPTOMS.measurement}

pytestmark = pytest.mark.skipif(bool(test_hosts.unavailable()), reason=f"multi-host test: {test_hosts.unavailable()}")


@contextlib.contextmanager
def servers_on(host: test_hosts.Host, settings):
    """The broker and InfluxDB (the local stack's own start, users and stop) inside the host's namespace."""
    started = []
    influx_access.ensure_users_file(settings)
    try:
        for server in local_stack.servers(settings):
            if server.name not in ("kafka", "influxdb"):
                continue  # the API's store stays SQLite on its own host
            inside = dataclasses.replace(
                server, command=lambda s, command=server.command: ["ip", "netns", "exec", host.netns, *command(s)])
            local_stack.start(settings, inside)
            started.append(inside)
        influx_access.provision(settings)
        yield
    finally:
        for server in reversed(started):
            local_stack.stop(settings, server)


def running_or_fenced(worker: Worker) -> None:
    """The cut-off worker still runs, or it stopped itself because it was fenced: its transactional producer
    refused by the broker (faust's ProducerFenced) or a derived write it could not finish while sure it owned its
    partitions (streams/fencing.py). Anything else that stopped it is a failure."""
    if worker.process.poll() is None:
        return
    log = worker.log_path.read_bytes()
    assert b"ProducerFenced" in log or b"OwnershipLost" in log, f"the cut-off worker stopped; see {worker.log_path}"


async def consumed(probe: LagProbe, app_id: str, workers: dict[str, Worker]) -> None:
    """`wait_until_consumed`; when it gives up, its message also counts each worker's warnings and errors (the
    worker logs name no athlete and no value), so that a CI run's output says where to look."""
    try:
        await wait_until_consumed(probe, app_id, within_s=CONSUMED_WITHIN_S)
    except NotConsumed as exc:
        raise NotConsumed(f"{exc}; " + "; ".join(f"{name}: {worker.log_digest()}"
                                                   for name, worker in workers.items())) from exc


def cli(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "aromatrack.services.cli", *args], env=env, capture_output=True,
                          text=True, check=True, timeout=60).stdout.strip()


def readiness(host: test_hosts.Host) -> dict:
    try:
        response = httpx.get(f"http://{host.address}:{WEB_PORT}/readyz", timeout=3)
    except httpx.TransportError:
        return {}
    return response.json()


def slices(events: list, count: int) -> list[list]:
    ordered = sorted(events, key=lambda event: (event.time, event.athlete_id))
    size = -(-len(ordered) // count)
    return [ordered[start:start + size] for start in range(0, len(ordered), size)]


async def post_slice(client: httpx.AsyncClient, tokens: dict[str, str], events: list) -> None:
    """One request per athlete and event type (a batch), each answered 202 (Kafka acknowledged)."""
    batches: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for event in events:
        batches[(event.athlete_id, ROUTE_FOR[event.type])].append(json.loads(dump_event(event)))
    for (athlete, suffix), batch in batches.items():
        response = await client.post(f"/v1/athletes/{athlete}/{suffix}", json=batch,
                                     headers={"Authorization": f"Bearer {tokens[athlete]}"})
        assert response.status_code == 202, response.text


async def test_a_worker_host_cut_off_mid_stream_is_taken_over_and_rejoins_without_doubling(tmp_path):
    events = cohort_events()
    profiles = [event for event in events if event.type == "athlete.profile"]
    history = [event for event in events if event.type != "athlete.profile"]
    assert {event.type for event in history} <= set(ROUTE_FOR), "every history event has an API route"
    athletes = sorted({event.athlete_id for event in events})
    expected = {a.alert_id: json.loads(dump_event(a)) for a in boundary.evaluate(events, as_of_s=time.time())}
    assert len(expected) >= 3

    prefix = f"{os.environ.get('AROMATRACK_NETNS_PREFIX', 'aromatrack')}-{os.getpid()}"  # unique per run
    with tempfile.TemporaryDirectory(prefix="aromatrack-hosts-") as state, \
            test_hosts.Hosts(prefix, ["broker", "worker1", "worker2", "api"]) as net:
        broker = net["broker"].address
        settings = dataclasses.replace(load_settings(), kafka_bootstrap=f"{broker}:{KAFKA_PORT}",
                                       influx_url=f"http://{broker}:{INFLUX_PORT}", state_dir=Path(state))
        workers = {
            name: Worker(settings, "hosts", tmp_path / f"{name}.log", netns=net[name].netns,
                         AROMATRACK_SESSION_TIMEOUT_S="6", AROMATRACK_WEB_PORT=str(WEB_PORT),
                         AROMATRACK_PROCESSING_GUARANTEE="exactly_once",  # fenced (streams/fencing.py)
                         AROMATRACK_WEB_BIND=net[name].address)
            for name in ("worker1", "worker2")
        }
        env = {**os.environ, **settings.as_env(), "AROMATRACK_INFLUX_DB": "hosts"}
        api = None
        with servers_on(net["broker"], settings):
            try:
                for worker in workers.values():
                    worker.start(timeout_s=120)
                restarts: list[int] = []  # the exit codes of the cut-off worker's stops after it was fenced
                tokens = {athlete: cli(env, "users", "add", athlete, "--role", "athlete") for athlete in athletes}
                api = subprocess.Popen(
                    ["ip", "netns", "exec", net["api"].netns, sys.executable, "-m", "aromatrack.services.cli", "api",
                     "--host", net["api"].address, "--port", str(API_PORT), "--rate", "1000", "--burst", "1000"],
                    env=env, stdout=open(tmp_path / "api.log", "ab"), stderr=subprocess.STDOUT)

                async def api_ready() -> bool:
                    try:
                        return httpx.get(f"http://{net['api'].address}:{API_PORT}/readyz", timeout=3).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(api_ready, timeout_s=60, every_s=0.5)

                async def both_hold_half() -> bool:
                    answers = [readiness(net[name]) for name in workers]
                    return all(a.get("ready") and a["ingest_partitions"] == INGEST_PARTITIONS // 2 for a in answers)

                await eventually(both_hold_half, timeout_s=120, every_s=0.5)

                async with EventProducer(settings.kafka_bootstrap) as producer, LagProbe(settings.kafka_bootstrap) as probe, \
                        httpx.AsyncClient(base_url=f"http://{net['api'].address}:{API_PORT}", timeout=60) as client:
                    await producer.send_all(profiles)
                    await consumed(probe, settings.app_id, workers)
                    for index, part in enumerate(slices(history, SLICES), start=1):
                        await post_slice(client, tokens, part)
                        if index == CUT_AFTER:
                            net.cut("worker2")
                        if index == CUT_AFTER + 1:
                            async def worker1_holds_everything() -> bool:
                                answer = readiness(net["worker1"])
                                return bool(answer.get("ready")) and answer["ingest_partitions"] == INGEST_PARTITIONS

                            await eventually(worker1_holds_everything, timeout_s=120, every_s=0.5)
                            running_or_fenced(workers["worker2"])
                        if index == RECONNECT_AFTER:
                            net.reconnect("worker2")

                            async def rejoined() -> bool:
                                if workers["worker2"].process.poll() is not None:  # its supervisor restarts it
                                    running_or_fenced(workers["worker2"])
                                    restarts.append(workers["worker2"].process.returncode)
                                    workers["worker2"].start(timeout_s=120)
                                return await both_hold_half()

                            await eventually(rejoined, timeout_s=180, every_s=0.5)
                    await consumed(probe, settings.app_id, workers)
                await asyncio.sleep(2 * HEARTBEAT_S + 1)  # the last progress markers complete the watermark
                alerts = await alerts_on_topic(settings.kafka_bootstrap, set(athletes), expected=10**6, timeout_s=10)
                dump = await influx_dump(settings, "hosts")
                await dump_changelogs(settings.kafka_bootstrap, settings.app_id, tmp_path / "changelogs.jsonl")
                for name, worker in workers.items():
                    assert worker.process.poll() is None, f"{name} exited; see {worker.log_path}"
            finally:
                if api is not None:
                    api.terminate()
                    api.wait(30)
                for worker in workers.values():
                    if worker.process and worker.process.poll() is None:
                        worker.stop()

    reference_alerts, reference = await streamed_on_one_worker(tmp_path, profiles, history, athletes)
    # What each run held, for a failure's diagnosis.
    (tmp_path / "alerts.json").write_text(json.dumps({"hosts": topic_state(alerts), "one_worker": topic_state(
        reference_alerts), "evaluate": expected}, indent=1, sort_keys=True))
    (tmp_path / "influx.json").write_text(json.dumps({"hosts": dump, "one_worker": reference}, sort_keys=True))
    assert topic_state(reference_alerts) == expected, "one worker, no cut"
    measurements = {key: key.split(".", 1)[1] for key in reference}
    assert set(dump) == set(reference) and {"body_composition", "training_load_daily", "lab"} <= set(measurements.values())
    # The ingest path keeps no state: its series must be exact whatever happened to the workers.
    stateless = {key for key, measurement in measurements.items() if measurement in STATELESS_MEASUREMENTS}
    assert len(stateless) >= len(STATELESS_MEASUREMENTS)
    for key in stateless:
        assert dump[key] == reference[key], key
    alert_keys = {key for key, measurement in measurements.items() if measurement == "alerts"}
    diverged = [key for key in sorted(reference.keys() - stateless - alert_keys) if dump[key] != reference[key]]
    # Alert points: the latest per alert. Streamed in slices, an alert can be released and then updated with a
    # later time, and the earlier version's point stays beside the new one (reported), so which intermediate
    # points exist depends on the release timing.
    diverged += [key for key in sorted(alert_keys)
                 if latest_alert_points(dump[key]) != latest_alert_points(reference[key])]
    if topic_state(alerts) != expected:
        diverged.append("alerts (topic)")
    assert not diverged, (
        f"after the cut, the stateful agents' results diverged in {', '.join(diverged)} (see {tmp_path / 'influx.json'} "
        f"and the changelogs' records in {tmp_path / 'changelogs.jsonl'}; the cut-off worker stopped fenced and was "
        f"restarted {len(restarts)} time(s))")


async def streamed_on_one_worker(tmp_path: Path, profiles: list, history: list, athletes: list[str]):
    """The same slices, straight to Kafka, through one worker on a loopback stack of its own: the reference."""
    with local_stack.throwaway_stack(39795, 38795) as settings:
        worker = Worker(settings, "reference", tmp_path / "reference.log")
        worker.start(timeout_s=120)
        try:
            async with EventProducer(settings.kafka_bootstrap) as producer, LagProbe(settings.kafka_bootstrap) as probe:
                await producer.send_all(profiles)
                await wait_until_consumed(probe, settings.app_id, within_s=CONSUMED_WITHIN_S)
                for part in slices(history, SLICES):
                    await producer.send_all(part)
                await wait_until_consumed(probe, settings.app_id, within_s=CONSUMED_WITHIN_S)
            await asyncio.sleep(2 * HEARTBEAT_S + 1)
            alerts = await alerts_on_topic(settings.kafka_bootstrap, set(athletes), expected=10**6, timeout_s=10)
            return alerts, await influx_dump(settings, "reference")
        finally:
            worker.stop()


def latest_alert_points(points: list[dict]) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for point in sorted(points, key=lambda point: point["time"]):
        latest[point["alert_id"]] = point
    return latest
