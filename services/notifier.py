"""The notifier (`aromatrack notifier`): delivers each alert once to the athlete's clinicians.

It consumes the alerts topic in a consumer group and commits an offset only after the alert is delivered or
dead-lettered, so a crash redelivers the message; the delivery log in the store then skips every channel that
already succeeded, so a restart never sends twice. Each send is claimed in the store first, so two notifiers on one
database (a rebalance, both sending reminders) never send the same round on the same channel twice. Channels: an HTTP webhook signed by Standard Webhooks
(services/webhooks.py; never unsigned, never plain http off this host), and e-mail over SMTP; both carry the
evidence chart. Failed channels are retried with exponential backoff and dead-lettered after N attempts.
Unacknowledged alerts are re-notified after a while; acknowledging one (API) stops that. A `training_review`
alert (training load in post-TRT recovery: no lab values) goes to the athlete's coaches as well.

Updates: the engine sends new evidence for an alert as a new version with the same `alert_id`. The inbox keeps
the latest version; an update is not a new page: it goes out with the next reminder (which names the version),
and never for an acknowledged alert, which stays quiet until the engine raises a new alert.

Imports do not page: an alert marked `historical` (by the stream, which raised it long after its time: a backfill,
a bulk send, a clinic onboarding its history; `domain.engine.is_historical`) is stored in the inbox but not
delivered on its own. The notifier follows the mark and has no age rule of its own, so a notifier catching up on
a backlog after an outage still pages the alerts that were live when raised. Once an athlete's import has
settled (no historical alert for `quiet_s`), each of the athlete's
clinicians gets one summary ("N historical alerts imported for athlete X, the latest: ..."), delivered, logged
and reminded like an alert (rule `summary.historical_import`; its `alerts_summarised` evidence lists the alert
ids it covers). Live alerts are unchanged.

Withdrawals: when an event that arrived late means the whole history no longer supports an alert, the stream sends
an `alert.withdrawal` for it on the alerts topic. The inbox marks the alert withdrawn (with the reason; it leaves
the open alerts and its reminders stop), and every channel that was sent the alert gets a withdrawal notice, once
(logged as round 0). An alert never delivered (still in round 1's retries, historical, or never received) is
only marked.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import json
import logging
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Awaitable, Callable

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from aromatrack.schemas import topics
from aromatrack.schemas.events import Alert, AlertEvidence, AlertWithdrawal
from aromatrack.services import chart
from aromatrack.services.auth import Role
from aromatrack.services.health import ConsumerHealth, serve_consumer_health
from aromatrack.services.store import AsyncStore, Contact, Store
from aromatrack.services.webhooks import WebhookSecretError, is_loopback, signed_headers, webhook_url_problem
from aromatrack.streams.admin import ensure_topics
from aromatrack.streams.influx import SeriesStore

log = logging.getLogger("aromatrack.notifier")

GROUP_ID = "aromatrack-notifier"
SEND_TIMEOUT_S = 10.0  # one webhook request or SMTP conversation
CLAIM_POLL_S = 1.0  # how often a notifier looks again at a send another notifier has claimed
WITHDRAWAL_ROUND = 0  # the delivery log's round of a withdrawal notice (alerts' own rounds count from 1)


# --- delivery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpConfig:
    """Where alert e-mails go. STARTTLS is used whenever the server offers it, and required (else nothing is
    sent) off this host or with a login, since the mails carry lab values."""

    host: str
    port: int
    sender: str = "alerts@aromatrack.local"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    require_tls: bool | None = None  # None: required unless the server is on loopback without a login
    ca_file: str | None = None  # verify the server against this CA instead of the system's

    def tls_required(self) -> bool:
        if self.require_tls is not None:
            return self.require_tls
        return self.username is not None or not is_loopback(self.host)


@dataclass(frozen=True)
class Retry:
    attempts: int = 5
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delays(self) -> list[float]:
        """Sleeps between attempts: doubling from `first_delay_s`, capped."""
        return [min(self.first_delay_s * 2**n, self.max_delay_s) for n in range(self.attempts - 1)]


@dataclass(frozen=True)
class HistoricalImports:
    quiet_s: float = 30.0  # an athlete's import has settled after this long without a historical alert


SUMMARY_RULE = "summary.historical_import"


def historical_summary(athlete_id: str, alerts: list[Alert]) -> Alert:
    """One alert-shaped summary of an athlete's imported alerts (pure; the same alerts give the same id, so a
    restart before they are marked summarised re-sends nothing that was delivered)."""
    latest = max(alerts, key=lambda alert: alert.time)
    ids = sorted(alert.alert_id for alert in alerts)
    by_rule = collections.Counter(alert.rule for alert in alerts)
    return Alert(
        alert_id="summary-" + hashlib.sha256("|".join(ids).encode()).hexdigest()[:24],
        athlete_id=athlete_id,
        time=latest.time,
        kind=latest.kind,
        rule=SUMMARY_RULE,
        severity=max((alert.severity for alert in alerts), key=["info", "warning", "urgent"].index),
        summary=f"{len(alerts)} historical alerts imported for athlete {athlete_id}, the latest "
        f"({latest.time.date().isoformat()}, {latest.rule}): {latest.summary}",
        evidence=[AlertEvidence(name="alerts_summarised", value=len(alerts), event_ids=ids)]
        + [AlertEvidence(name=rule, value=count) for rule, count in sorted(by_rule.items())],
        sources=sorted({source for alert in alerts for source in alert.sources}),
        historical=True,
    )


class DeliveryError(RuntimeError):
    """One delivery attempt failed; the message says why (no alert content). A channel that cannot work as
    configured is not `retryable`: it is dead-lettered at once."""

    def __init__(self, reason: str, *, retryable: bool = True):
        super().__init__(reason)
        self.retryable = retryable


@dataclass(frozen=True)
class Message:
    """What a channel sends: the alert, its chart and which round (1 = first notice, 2+ = reminders)."""

    alert: Alert
    chart_png: bytes
    round: int

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.alert.alert_id}_{self.round}"

    def webhook_body(self) -> bytes:
        return json.dumps({
            "alert": self.alert.model_dump(mode="json"),
            "round": self.round,
            "chart_png_b64": base64.b64encode(self.chart_png).decode(),
        }, separators=(",", ":")).encode()

    def email(self, sender: str, recipient: str) -> EmailMessage:
        alert = self.alert
        mail = EmailMessage()
        reminder = "Reminder: " if self.round > 1 else ""
        if alert.version > 1:
            reminder += f"(updated, version {alert.version}) "
        mail["Subject"] = f"{reminder}[{alert.severity}] {alert.kind} for athlete {alert.athlete_id} ({alert.rule})"
        mail["From"], mail["To"] = sender, recipient
        mail["Message-ID"] = f"<{alert.alert_id}.{self.round}@aromatrack.local>"
        evidence = "\n".join(
            f"- {item.name}: {item.value}{' ' + item.unit if item.unit else ''}" for item in alert.evidence
        )
        mail.set_content(
            f"{alert.summary}\n\nRule: {alert.rule}\nTime: {alert.time.isoformat()}\nEvidence:\n{evidence}\n"
            f"Sources: {', '.join(alert.sources)}\n\nAlert id: {alert.alert_id}. Acknowledge it in Aromatrack to stop "
            "reminders. This is a flag for review, not a dose instruction."
        )
        mail.add_attachment(self.chart_png, maintype="image", subtype="png", filename=f"{alert.alert_id}.png")
        return mail


@dataclass(frozen=True)
class WithdrawalNotice:
    """What a channel that was sent an alert gets when the stream withdraws it."""

    alert: Alert  # the version in the inbox
    withdrawal: AlertWithdrawal
    round: int = WITHDRAWAL_ROUND

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.alert.alert_id}_withdrawn"

    def webhook_body(self) -> bytes:
        return json.dumps({"withdrawal": self.withdrawal.model_dump(mode="json")}, separators=(",", ":")).encode()

    def email(self, sender: str, recipient: str) -> EmailMessage:
        alert = self.alert
        mail = EmailMessage()
        mail["Subject"] = f"Withdrawn: [{alert.severity}] {alert.kind} for athlete {alert.athlete_id} ({alert.rule})"
        mail["From"], mail["To"] = sender, recipient
        mail["Message-ID"] = f"<{alert.alert_id}.withdrawn@aromatrack.local>"
        mail.set_content(
            f"The alert sent earlier is withdrawn: {self.withdrawal.reason}\n\nIt said: {alert.summary}\n"
            f"Rule: {alert.rule}\nTime: {alert.time.isoformat()}\n\nAlert id: {alert.alert_id}. Nothing is asked of "
            "you for it any more; a new alert will be sent if the data support one again."
        )
        return mail


async def post_webhook(http: httpx.AsyncClient, contact: Contact, message: Message | WithdrawalNotice) -> None:
    """POST the message signed by Standard Webhooks; its `webhook-id` names the alert and round, the same on
    every retry, so receivers can drop repeats. Never sends unsigned or in clear off this host."""
    if problem := webhook_url_problem(contact.webhook_url or ""):
        raise DeliveryError(f"webhook: {problem}", retryable=False)
    body = message.webhook_body()
    try:
        signature = signed_headers(contact.webhook_secret, message.webhook_id, int(time.time()), body)
    except WebhookSecretError as exc:  # none, or one stored before secrets were checked
        raise DeliveryError(f"webhook: {exc}", retryable=False) from None
    headers = {"Content-Type": "application/json", **signature}
    try:
        response = await http.post(contact.webhook_url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook: HTTP {response.status_code}")


async def send_email(smtp: SmtpConfig, contact: Contact, message: Message | WithdrawalNotice) -> None:
    def send() -> None:
        with smtplib.SMTP(smtp.host, smtp.port, timeout=SEND_TIMEOUT_S) as client:
            client.ehlo()
            if client.has_extn("starttls"):
                client.starttls(context=ssl.create_default_context(cafile=smtp.ca_file))
                client.ehlo()
            elif smtp.tls_required():
                raise DeliveryError("email: the server offers no STARTTLS; lab values are not sent in clear",
                                    retryable=False)
            if smtp.username is not None:
                client.login(smtp.username, smtp.password or "")
            client.send_message(message.email(smtp.sender, contact.email or ""))

    try:
        await asyncio.to_thread(send)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"email: {type(exc).__name__}") from None


class Notifier:
    def __init__(
        self,
        store: Store,
        influx: SeriesStore,
        dead_letters: AIOKafkaProducer,
        *,
        smtp: SmtpConfig | None,
        retry: Retry = Retry(),
        historical: HistoricalImports = HistoricalImports(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.store = AsyncStore(store)
        self.influx, self.dead_letters, self.smtp, self.retry = influx, dead_letters, smtp, retry
        # A claimed send older than its retries can take belongs to a notifier that died: another may take it.
        self._claim_s = sum(retry.delays()) + retry.attempts * SEND_TIMEOUT_S + 60.0
        self.historical = historical
        self._sleep = sleep
        self._http = httpx.AsyncClient(timeout=SEND_TIMEOUT_S)

    async def close(self) -> None:
        await self._http.aclose()

    async def handle(self, raw: bytes) -> None:
        """One message from the alerts topic: record it in the inbox and deliver its first notice (round 1) on the
        channels that have not had it. An update of an alert already delivered sends nothing now (see above);
        one that arrives before round 1 finished (a restart in between) completes it with the latest version.
        A withdrawal goes to `withdraw`."""
        try:
            if _message_type(raw) == "alert.withdrawal":
                await self.withdraw(AlertWithdrawal.model_validate_json(raw))
                return
            alert = Alert.model_validate_json(raw)
        except ValidationError as exc:
            await self._dead_letter(raw, f"not an alert: {exc.error_count()} validation errors")
            return
        if alert.historical:
            await self.store.record_historical(alert)
            return
        await self.store.record_alert(alert)
        latest = await self.store.alert(alert.alert_id)
        await self.deliver(latest.alert if latest is not None else alert, round_=1)

    async def deliver(self, alert: Alert, round_: int) -> None:
        """Send `alert` on every channel of every clinician, skipping channels the log says are done."""
        inbox = await self.store.alert(alert.alert_id)
        if inbox is not None and not inbox.open:
            return
        contacts = await self._contacts(alert)
        if not contacts:
            if await self._claim(alert.alert_id, "none", round_):
                await self.store.log_delivery(alert.alert_id, "none", round_, "dead", 0)
                await self._dead_letter(alert.model_dump_json().encode(), "no clinician assigned to the athlete")
            return
        message: Message | None = None
        for contact in contacts:
            for channel, send in self._channels(contact):
                key = f"{channel}:{contact.user_id}"
                if not await self._claim(alert.alert_id, key, round_):
                    continue  # delivered or dead-lettered before (a restart, another notifier): never twice
                if message is None:
                    message = Message(alert, await chart.alert_png(self.influx, alert), round_)
                await self._attempt(key, message, lambda m=message, s=send, c=contact: s(c, m))

    async def withdraw(self, withdrawal: AlertWithdrawal) -> None:
        """Mark the alert withdrawn in the inbox, and send a withdrawal notice on every channel that was sent it."""
        inbox = await self.store.withdraw(withdrawal.alert_id, withdrawal.reason)
        if inbox is None:
            log.info("alert %s withdrawn before it was received", withdrawal.alert_id)
            return
        told = {channel for channel, round_, status, _ in await self.store.deliveries(withdrawal.alert_id)
                if status == "delivered" and round_ != WITHDRAWAL_ROUND}
        notice = WithdrawalNotice(inbox.alert, withdrawal)
        for contact in await self._contacts(inbox.alert):
            for channel, send in self._channels(contact):
                key = f"{channel}:{contact.user_id}"
                if key in told and await self._claim(withdrawal.alert_id, key, WITHDRAWAL_ROUND):
                    await self._attempt(key, notice, lambda m=notice, s=send, c=contact: s(c, m))

    async def _contacts(self, alert: Alert) -> list[Contact]:
        """Who is sent `alert`: the athlete's clinicians, and for a training review its coaches too (no lab values
        in it); nobody without a clinician."""
        contacts = await self.store.clinicians_of(alert.athlete_id)
        if contacts and alert.kind == "training_review":
            contacts += await self.store.care_team_contacts(alert.athlete_id, Role.COACH)
        return contacts

    async def _claim(self, alert_id: str, channel: str, round_: int) -> bool:
        """Whether this process is to send (`Store.claim_delivery`); while another notifier is sending the same
        thing it waits for that outcome (or for that claim to go stale, its notifier having died)."""
        while (claim := await self.store.claim_delivery(alert_id, channel, round_, stale_after_s=self._claim_s)) \
                == "busy":
            await self._sleep(CLAIM_POLL_S)
        return claim == "claimed"

    def _channels(self, contact: Contact):
        if contact.webhook_url:
            yield "webhook", lambda c, m: post_webhook(self._http, c, m)
        if contact.email and self.smtp is not None:
            yield "email", lambda c, m: send_email(self.smtp, c, m)

    async def _attempt(self, key: str, message: Message | WithdrawalNotice, send: Callable[[], Awaitable[None]]) -> None:
        alert_id = message.alert.alert_id
        reason, attempts = "", 0
        for attempts, delay in enumerate([*self.retry.delays(), None], start=1):
            try:
                await send()
            except DeliveryError as exc:
                reason = str(exc)
                log.warning("alert %s %s attempt %d failed: %s", alert_id, key, attempts, reason)
                if not exc.retryable:
                    break
                if delay is not None:
                    await self._sleep(delay)
                continue
            await self.store.log_delivery(alert_id, key, message.round, "delivered", attempts)
            log.info("alert %s delivered via %s (round %d, attempt %d)", alert_id, key, message.round, attempts)
            return
        await self.store.log_delivery(alert_id, key, message.round, "dead", attempts)
        failed = message.withdrawal if isinstance(message, WithdrawalNotice) else message.alert
        await self._dead_letter(failed.model_dump_json().encode(), f"{key} failed {attempts} times: {reason}")

    async def _dead_letter(self, raw: bytes, reason: str) -> None:
        log.error("dead-lettering an alert: %s", reason)
        # Same headers as the stream worker's dead letters; reasons never carry alert content.
        await self.dead_letters.send_and_wait(
            topics.DEAD_LETTER_TOPIC,
            raw,
            headers=[("reason", reason.encode()[:2000]), ("source_topic", topics.ALERTS_TOPIC.encode())],
        )

    async def summarise_imports(self) -> int:
        """Deliver one summary per athlete whose imported alerts have settled; returns how many were sent."""
        due = await self.store.historical_due(self.historical.quiet_s)
        for athlete_id, alerts in due.items():
            summary = historical_summary(athlete_id, alerts)
            await self.store.record_alert(summary)
            await self.deliver(summary, round_=1)
            await self.store.mark_summarised([alert.alert_id for alert in alerts])
        return len(due)

    async def renotify(self, older_than_s: float) -> int:
        """Send a reminder round for each unacknowledged alert last delivered over `older_than_s` ago."""
        due = await self.store.due_for_renotification(older_than_s)
        for alert, round_ in due:
            await self.deliver(alert, round_)
        return len(due)


async def run(
    notifier: Notifier,
    bootstrap: str,
    *,
    renotify_after_s: float,
    stop: asyncio.Event | None = None,
    group_id: str = GROUP_ID,
    health: ConsumerHealth | None = None,
) -> None:
    """Consume the alerts topic until `stop` is set, committing each message after it is handled; each round
    is reported to `health` (the probes' /livez and /readyz)."""
    stop = stop or asyncio.Event()
    await ensure_topics(bootstrap)
    consumer = AIOKafkaConsumer(
        topics.ALERTS_TOPIC,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Alerts are sent in the workers' transactions: a fenced worker's aborted alerts are never delivered.
        isolation_level="read_committed",
    )
    await consumer.start()
    last_renotify = time.monotonic()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500, max_records=50)
            for partition, messages in batches.items():
                for message in messages:
                    await notifier.handle(message.value)
                    await consumer.commit({partition: message.offset + 1})
            await notifier.summarise_imports()
            if time.monotonic() - last_renotify >= min(renotify_after_s, 60):
                await notifier.renotify(renotify_after_s)
                last_renotify = time.monotonic()
            if health is not None:
                health.went_round(len(consumer.assignment()))
    finally:
        await consumer.stop()


async def serve(
    settings, *, smtp: SmtpConfig | None, retry: Retry, renotify_after_s: float, group_id: str = GROUP_ID,
    historical: HistoricalImports = HistoricalImports(), health_address: tuple[str, int] | None = None,
) -> None:
    """Run the notifier against the settings' broker, InfluxDB and store until SIGINT/SIGTERM; with a
    `health_address` (host, port), serve /livez and /readyz there."""
    import signal

    from aromatrack.deploy import influx_access

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    store = Store(settings.store_url)
    dead_letters = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await dead_letters.start()
    async with influx_access.reader_store(settings, max_attempts=2) as influx:
        notifier = Notifier(store, influx, dead_letters, smtp=smtp, retry=retry, historical=historical)
        health = ConsumerHealth()
        probes = await serve_consumer_health(health, *health_address) if health_address else None
        try:
            await run(notifier, settings.kafka_bootstrap, renotify_after_s=renotify_after_s, stop=stop,
                      group_id=group_id, health=health)
        finally:
            if probes is not None:
                await probes.cleanup()
            await notifier.close()
            await dead_letters.stop()
            store.close()


def _message_type(raw: bytes) -> str | None:
    """The `type` a message on the alerts topic says it is (None when it is not a JSON object)."""
    try:
        decoded = json.loads(raw)
    except ValueError:
        return None
    return decoded.get("type") if isinstance(decoded, dict) else None
