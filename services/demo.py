"""`aromatrack demo`: the main job end to end on the local stack, with a synthetic cohort.

Starts the local servers, the stream workers (two by default: one per core) and the alert notifier, registers
the cohort's clinicians
with a local webhook receiver (which verifies every signature), writes the cohort to a JSON-lines file
(so it can be replayed with `aromatrack evaluate`), produces it to Kafka with a progress bar, waits until
the worker has consumed everything and the alerts are delivered, and reports what was stored,
dead-lettered, alerted and delivered. It leaves the API running and prints the address of the clinicians'
inbox with a fresh token for one demo clinician. Re-running is safe: the same seed gives the same events
with the same ids, which the pipeline deduplicates.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aromatrack.deploy import influx_access, local_stack
from aromatrack.deploy.settings import Settings
from aromatrack.schemas import series, topics
from aromatrack.schemas.series import Audience, database_name
from aromatrack.schemas.events import EventError, parse_event
from aromatrack.services import cohort
from aromatrack.services.auth import Role
from aromatrack.services.notifier import SUMMARY_RULE
from aromatrack.services.webhooks import new_webhook_secret, verify
from aromatrack.services.store import Store
from aromatrack.streams.admin import LagProbe, NotConsumed, records_to_end, wait_until_consumed
from aromatrack.streams.input_progress import HEARTBEAT_S
from aromatrack.streams.influx import rows
from aromatrack.streams.producer import EventProducer

console = Console()
# The longest the demo waits for the workers to commit the history: a stuck worker must not hang it.
CONSUMED_WITHIN_S = 600
CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "fit"  # `make corpus`; runs and rides come from it


@dataclass
class DemoReport:
    sent: collections.Counter = field(default_factory=collections.Counter)
    refused_at_entry: int = 0
    dead_letters: collections.Counter = field(default_factory=collections.Counter)
    stored_points: dict[str, int] = field(default_factory=dict)
    alerts_by_rule: collections.Counter = field(default_factory=collections.Counter)
    alert_ids: set[str] = field(default_factory=set)
    withdrawn: int = 0  # alerts sent, then withdrawn by input that arrived after them
    delivered: int = 0
    delivered_before: int = 0
    summaries: int = 0  # import summaries delivered
    summarised: int = 0  # historical alerts they covered
    bad_signatures: int = 0
    seconds: float = 0.0


class WebhookReceiver:
    """A clinician's endpoint on loopback: verifies each signature, keeps the alert ids and the charts."""

    def __init__(self, secret: str, chart_dir: Path):
        self.secret = secret
        self.chart_dir = chart_dir
        self.alert_ids: set[str] = set()  # alerts delivered one by one
        self.summaries: set[str] = set()
        self.summarised: set[str] = set()  # historical alerts covered by a summary
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not verify(receiver.secret, body, self.headers):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                else:
                    receiver.accept(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def accept(self, payload: dict) -> None:
        alert_id = payload["alert"]["alert_id"]
        if payload["alert"]["rule"] == SUMMARY_RULE:
            self.summaries.add(alert_id)
            covered = next(e for e in payload["alert"]["evidence"] if e["name"] == "alerts_summarised")
            self.summarised.update(covered["event_ids"])
        else:
            self.alert_ids.add(alert_id)
        self.chart_dir.mkdir(parents=True, exist_ok=True)
        (self.chart_dir / f"{alert_id}.png").write_bytes(base64.b64decode(payload["chart_png_b64"]))

    def close(self) -> None:
        self.server.shutdown()


@dataclass(frozen=True)
class InboxAccess:
    """Where a demo clinician signs in to the web inbox, with a token issued for this run."""

    url: str
    clinician: str
    token: str
    open_alerts: int


def open_inbox(settings: Settings, events: list[dict]) -> InboxAccess | None:
    """Start `aromatrack api` (left running, like the stack's servers) and issue a token for the cohort's
    clinician with the most open alerts; None, saying why, if the API cannot start."""
    try:
        console.print(local_stack.start(settings, local_stack.api_server(settings)))
    except local_stack.StackError as exc:
        console.print(f"[yellow]the inbox is not available: {exc}[/yellow]")
        return None
    store = Store(settings.store_url)
    try:
        clinicians = sorted({e["clinician_id"] for e in events if e["type"] == "athlete.profile"})
        open_alerts = {c: sum(len(store.alerts_for(a, open_only=True)) for a in store.athletes_of(c))
                       for c in clinicians}
        clinician = max(clinicians, key=lambda c: (open_alerts[c], c))
        server = local_stack.api_server(settings)
        return InboxAccess(f"http://{server.host}:{server.port}/inbox", clinician, store.issue_token(clinician),
                           open_alerts[clinician])
    finally:
        store.close()


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )


@dataclass(frozen=True)
class Launched:
    """A background `aromatrack` process of the demo and its log."""

    name: str
    process: subprocess.Popen
    log_path: Path
    started_at: float


def launch(settings: Settings, name: str, args: list[str], **env: str) -> Launched:
    """Start `aromatrack ARGS` in the background (with `env` added to the settings'), logging to the state dir."""
    log_path = settings.state_dir / f"demo-{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "aromatrack.services.cli", *args],
        stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **settings.as_env(), **env},
    )
    return Launched(name, process, log_path, time.monotonic())


def wait_started(launched: Launched, ready_marker: bytes) -> subprocess.Popen:
    """Wait until the process logs `ready_marker` (90 s from its launch at most)."""
    deadline = launched.started_at + 90
    with console.status(f"starting the {launched.name}..."):
        while ready_marker not in launched.log_path.read_bytes():
            if launched.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {launched.name} did not start; see {launched.log_path}")
            time.sleep(0.3)
    return launched.process


def servers_and_workers(settings: Settings, workers: int) -> tuple[list[str], list[Launched]]:
    """The local servers, then the workers launched, each with its own data directory (one worker is one core:
    the uploads' decoding and the folds share the partitions). No PostgreSQL: the demo's API and notifier share
    the embedded SQLite store."""
    lines = local_stack.up(settings, with_store=False)
    return lines, [
        launch(settings, "worker" if index == 0 else f"worker-{index + 1}", ["worker", "--loglevel", "info"],
               AROMATRACK_WORKER_DIR=str(settings.worker_dir if index == 0 else settings.state_dir / f"faust-{index + 1}"))
        for index in range(workers)
    ]


def register_clinicians(settings: Settings, events: list[dict], receiver: WebhookReceiver) -> None:
    """Clinician users with the receiver as their webhook, on their athletes' care teams (idempotent)."""
    store = Store(settings.store_url)
    try:
        profiles = [e for e in events if e["type"] == "athlete.profile"]
        for clinician in sorted({p["clinician_id"] for p in profiles}):
            store.add_user(clinician, Role.CLINICIAN, webhook_url=receiver.url, webhook_secret=receiver.secret)
        for profile in profiles:
            store.add_user(profile["athlete_id"], Role.ATHLETE)
            store.assign(profile["athlete_id"], profile["clinician_id"])
    finally:
        store.close()


def delivered_earlier(settings: Settings, alert_ids: set[str], received_now: set[str]) -> set[str]:
    """Alerts the notifier's delivery log shows as sent, or summarised, other than those received in this run."""
    store = Store(settings.store_url)
    try:
        pending = alert_ids - received_now
        return {a for a in pending if any(d[2] == "delivered" for d in store.deliveries(a))} | store.summarised(pending)
    finally:
        store.close()


async def wait_until_delivered(settings: Settings, receiver: WebhookReceiver, report: DemoReport,
                               timeout_s: float = 300) -> None:
    """Every alert is delivered once, or summarised with its athlete's imported history: in this run, or (on a
    re-run) already in an earlier one."""
    with _progress() as progress:
        task = progress.add_task("delivering alerts", total=max(len(report.alert_ids), 1))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            received = receiver.alert_ids | receiver.summarised
            earlier = delivered_earlier(settings, report.alert_ids, received)
            progress.update(task, completed=len(received | earlier))
            if report.alert_ids <= received | earlier:
                break
            await asyncio.sleep(0.5)
    report.delivered, report.delivered_before = len(receiver.alert_ids), len(earlier)
    report.summaries, report.summarised = len(receiver.summaries), len(receiver.summarised)
    report.bad_signatures = receiver.bad_signatures


async def produce(settings: Settings, events: list[dict], report: DemoReport) -> None:
    """Validate and send every event at once, as a bulk import would, and wait until the worker consumed them
    (the clinical agent releases alerts once every input is in, so no pacing is needed).

    The cohort's few impossible readings stand for a device feed that writes to Kafka without
    validating: they are counted and sent raw, so the worker's dead-letter path shows in the report.
    """
    valid = []
    async with EventProducer(settings.kafka_bootstrap) as producer:
        for raw in events:
            try:
                valid.append(parse_event(raw))
            except EventError:
                report.refused_at_entry += 1
                await producer.send_raw(
                    topics.topic_for(raw["type"]), json.dumps(raw).encode(), raw["athlete_id"].encode()
                )
    report.sent.update(event.type for event in valid)
    with _progress() as progress:
        task = progress.add_task("sending the history", total=len(valid))
        async with EventProducer(settings.kafka_bootstrap) as producer, producer.bulk_import():
            for start in range(0, len(valid), 1000):
                await producer.send_all(valid[start : start + 1000])
                progress.update(task, advance=len(valid[start : start + 1000]))
    with console.status("waiting for the workers to consume the history"):
        async with LagProbe(settings.kafka_bootstrap) as probe:
            try:
                await wait_until_consumed(probe, settings.app_id, within_s=CONSUMED_WITHIN_S)
            except NotConsumed as exc:  # a stuck worker shows in the report rather than hangs the demo
                console.print(f"[yellow]the workers did not consume the whole history: {exc}; "
                              "the report is of what they did (see the worker logs)[/yellow]")
    with console.status("waiting for the workers to release the alerts"):
        await wait_until_released(settings)


async def wait_until_released(settings: Settings, timeout_s: float = 300.0, every_s: float = HEARTBEAT_S / 2) -> bool:
    """Until every stored weigh-in has its body-fat trend point (asked every `every_s`): a release sends an
    athlete's alerts before it writes those points, and an import is released whole, once its last input is in,
    which takes a worker seconds to fold after it consumed the last message (the release is not a consumer lag).
    Gives up after `timeout_s` (returns False), so a broken worker shows in the report rather than hangs the demo."""
    deadline = time.monotonic() + timeout_s
    async with influx_access.reader_store(settings) as influx:
        coaching = influx.client(Audience.COACHING)

        async def points(measurement: str, field_name: str) -> int:
            counted = rows(await coaching.query(f'SELECT count("{field_name}") FROM "{measurement}"'))
            return int(counted[0]["count"]) if counted else 0

        while time.monotonic() < deadline:
            weigh_ins = await points(series.BODY_COMPOSITION.measurement, "body_fat_pct")
            if await points(series.BODY_FAT_TREND.measurement, "smoothed_pct") >= weigh_ins:
                return True
            await asyncio.sleep(every_s)
    return False


async def read_topic(settings: Settings, topic: str) -> list:
    """Every committed record of `topic` up to its end when the read starts (`admin.records_to_end`)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        isolation_level="read_committed",  # what the workers' transactions committed (streams/fencing.py)
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, index) for index in range(topics.PARTITIONS)]
        consumer.assign(partitions)
        return await records_to_end(consumer, partitions)
    finally:
        await consumer.stop()


async def collect(settings: Settings, report: DemoReport) -> None:
    for record in await read_topic(settings, topics.DEAD_LETTER_TOPIC):
        headers = dict(record.headers)
        report.dead_letters[headers.get("source_topic", b"?").decode()] += 1
    unique_alerts = {}
    withdrawn = set()
    for record in await read_topic(settings, topics.ALERTS_TOPIC):  # one athlete's messages in their order
        message = json.loads(record.value)
        if message.get("type") == "alert.withdrawal":
            unique_alerts.pop(message["alert_id"], None)
            withdrawn.add(message["alert_id"])
        else:
            unique_alerts[message["alert_id"]] = message["rule"]
            withdrawn.discard(message["alert_id"])
    report.withdrawn = len(withdrawn)
    report.alerts_by_rule.update(unique_alerts.values())
    report.alert_ids = set(unique_alerts)
    async with influx_access.reader_store(settings) as influx:
        for audience in Audience:
            database = influx.client(audience)
            for item in await database.query("SHOW MEASUREMENTS"):
                for (measurement,) in item["values"]:
                    counted = rows(await database.query(f'SELECT count(*) FROM "{measurement}"'))
                    points = int(max(v for k, v in counted[0].items() if k != "time"))
                    report.stored_points[f"{database.config.database}.{measurement}"] = points


def print_report(settings: Settings, report: DemoReport, cohort_file: Path, inbox: InboxAccess | None) -> None:
    table = Table(title="ingested (events sent to Kafka)")
    table.add_column("event type")
    table.add_column("events", justify="right")
    for event_type, count in sorted(report.sent.items()):
        table.add_row(event_type, str(count))
    table.add_row("invalid, sent raw as an unvalidated feed would", str(report.refused_at_entry))
    console.print(table)

    stored = Table(title="InfluxDB (points per database and measurement)")
    stored.add_column("measurement")
    stored.add_column("points", justify="right")
    for measurement, count in sorted(report.stored_points.items()):
        stored.add_row(measurement, str(count))
    console.print(stored)

    alerts = Table(title="alerts raised (unique, by rule)")
    alerts.add_column("rule")
    alerts.add_column("alerts", justify="right")
    for rule, count in report.alerts_by_rule.most_common():
        alerts.add_row(rule, str(count))
    console.print(alerts)
    if report.withdrawn:
        console.print(f"withdrawn: {report.withdrawn} alerts released on the part of the history received so far, "
                      "then withdrawn when the rest arrived (README, Known limits)")
    dead = ", ".join(f"{n} from {t}" for t, n in report.dead_letters.items()) or "none"
    console.print(f"dead-lettered: {dead}")
    console.print(
        f"delivered to the clinicians' webhook: {report.delivered} of {len(report.alert_ids)} alerts one by one and "
        f"{report.summarised} as imported history in {report.summaries} summaries (one per athlete) in this run"
        f" ({report.delivered_before} already delivered by an earlier run, not sent again); every signature "
        f"verified ({report.bad_signatures} bad); charts in {settings.state_dir / 'demo-charts'}"
    )
    console.print(f"done in {report.seconds:.1f}s\n")
    console.print("[bold]Where to look[/bold]")
    console.print(f"- the cohort as JSON lines: {cohort_file}")
    console.print(f"- what-if review of one history: aromatrack evaluate {cohort_file} --json")
    console.print(
        f"- InfluxQL (as the coaching reader; passwords in {influx_access.users_file(settings)}): "
        f"curl -G -u {influx_access.Role.COACHING_READER.username} {settings.influx_url}/query "
        f"--data-urlencode db={database_name(settings.influx_database, Audience.COACHING)} "
        "--data-urlencode \"q=SELECT mean(body_fat_pct) FROM body_composition GROUP BY athlete_id\""
    )
    console.print("- Grafana boards: grafana/ (run `docker compose up` where Docker is available)")
    if inbox is not None:
        docs = inbox.url.removesuffix("/inbox") + "/docs"
        console.print(f"- the clinicians' alert inbox: open {inbox.url} in a browser and sign in as {inbox.clinician}"
                      f" ({inbox.open_alerts} open alerts) with this token, issued for this run:")
        console.print(f"    {inbox.token}", soft_wrap=True, highlight=False)
        console.print(f"- the API and its docs: {docs}")
    console.print("- the local servers and the API keep running; `make stack-down` stops them")


def run(settings: Settings, athletes: int, days: int, seed: int, workers: int = 2) -> DemoReport:
    began = time.monotonic()
    try:
        recordings = cohort.FitRecordings.load(CORPUS)
    except FileNotFoundError as exc:
        raise RuntimeError(str(exc)) from None
    # The servers and the workers start (a JVM's and faust's start-up, mostly waiting) while the cohort is
    # generated (CPU): side by side instead of one after the other, about 20 s sooner on 2 cores.
    with ThreadPoolExecutor(max_workers=1) as pool:
        starting = pool.submit(servers_and_workers, settings, workers)
        try:
            with console.status("generating the cohort (runs and rides re-stamped from real FIT files)..."):
                events = cohort.generate(athletes=athletes, days=days, seed=seed, recordings=recordings)
        except BaseException:
            with contextlib.suppress(Exception):
                for launched in starting.result()[1]:
                    launched.process.terminate()  # the workers must not outlive a failed demo
            raise
        lines, launched_workers = starting.result()
    for line in lines:
        console.print(line)
    cohort_file = settings.state_dir / f"demo-cohort-seed{seed}.jsonl"
    cohort_file.write_text("".join(json.dumps(event) + "\n" for event in events))
    console.print(f"cohort: {athletes} athletes x {days} days, seed {seed}: {len(events)} events -> {cohort_file}")

    receiver = WebhookReceiver(new_webhook_secret(), settings.state_dir / "demo-charts")
    register_clinicians(settings, events, receiver)
    processes = [launched.process for launched in launched_workers]
    report = DemoReport()
    try:
        for launched in launched_workers:
            wait_started(launched, b"[^Worker]: Ready")
        asyncio.run(produce(settings, events, report))
        # The demo streams months of history at once; the notifier starts once it is stored, so each
        # alert's chart shows the whole story (live, data is stored before its alert fires anyway). Every
        # alert is on the topic by then, so the import summaries need not wait the default 30 s for more.
        processes.append(launch(settings, "notifier", ["notifier", "--summary-quiet", "3"]).process)
        asyncio.run(collect(settings, report))
        asyncio.run(wait_until_delivered(settings, receiver, report))
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        receiver.close()
    inbox = open_inbox(settings, events)
    report.seconds = time.monotonic() - began
    print_report(settings, report, cohort_file, inbox)
    return report
