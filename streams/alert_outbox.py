"""The alert outbox of one athlete: what has been sent, and what to send so the clinician holds exactly what the
whole history supports.

Alerts are not sent as the engine raises them: an event that arrives late (another topic read first, a lab
entered weeks later) can change the alerts after it. The clinical agent releases an athlete's outbox once the
input it depends on has been consumed (`input_progress`); `release` compares the alerts the history raises now
with those sent and returns the messages that close the gap: new alerts, alerts whose content changed (same
id, the corrected body) and withdrawals of sent alerts the history no longer raises. Released twice with no
change in between, it returns nothing.

Imports do not page: each alert version is marked `historical` (`engine.is_historical`) as raised at the release
that first sends it, and keeps that mark: a version sent live stays live however long it stands, and one sent
again after a crash is sent as it was marked. Digests are of the unmarked alert the history raises.

Crashes: a release's messages are stored as `in_flight` before they are sent and cleared (`confirm`) once the
broker has them. An outbox restored with messages in flight sends them again (in their current version: the
alert, or its withdrawal if the history no longer raises it), so a crash anywhere between the store and the
confirmation can repeat a message (consumers drop repeats by alert id and content) but never lose one, and an
alert the outbox did not know it had sent can still be withdrawn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Iterable, Mapping, Union

from aromatrack.schemas.events import Alert, AlertWithdrawal, dump_event

WITHDRAWN_REASON = "a later-arriving event changed the history; the history no longer supports this alert"

OutboxMessage = Union[Alert, AlertWithdrawal]


@dataclass(frozen=True)
class SentAlert:
    """What the outbox keeps of a sent alert: enough to notice a changed body and to withdraw it."""

    digest: str
    time: datetime
    kind: str
    rule: str
    historical: bool = False  # as marked at the release that first sent this version


def digest(alert: Alert) -> str:
    return hashlib.sha256(dump_event(alert)).hexdigest()[:24]


@dataclass
class Outbox:
    """`sent`: alert id -> the last version sent. `in_flight`: the messages of a release not yet confirmed (what
    they were about, by alert id). `unreleased`: the history changed since the last confirmed release (stored, so
    alerts held when a worker stops are released after its restart)."""

    athlete_id: str
    sent: dict[str, SentAlert] = field(default_factory=dict)
    unreleased: bool = False
    in_flight: dict[str, SentAlert] = field(default_factory=dict)

    def release(self, current: Mapping[str, Alert], is_historical: Callable[[Alert], bool]) -> list[OutboxMessage]:
        """The messages that make the sent alerts equal `current`, with those of an unconfirmed release again
        (withdrawals first, then alerts by time and rule); they are in flight until `confirm`. A version not sent
        before is marked by `is_historical` (raised now); one sent before keeps its mark."""
        gone = {alert_id: sent for alert_id, sent in {**self.in_flight, **self.sent}.items() if alert_id not in current}
        withdrawals: list[OutboxMessage] = [
            AlertWithdrawal(
                alert_id=alert_id, athlete_id=self.athlete_id, time=sent.time, kind=sent.kind, rule=sent.rule,
                reason=WITHDRAWN_REASON,
            )
            for alert_id, sent in sorted(gone.items(), key=lambda item: (item[1].time, item[0]))
        ]
        changed = sorted(
            (alert for alert_id, alert in current.items()
             if alert_id in self.in_flight or alert_id not in self.sent or self.sent[alert_id].digest != digest(alert)),
            key=lambda alert: (alert.time, alert.rule, alert.alert_id),
        )
        for alert_id in gone:
            self.sent.pop(alert_id, None)
        marked = []
        for alert in changed:
            body, before = digest(alert), self.sent.get(alert.alert_id)
            historical = before.historical if before is not None and before.digest == body else is_historical(alert)
            self.sent[alert.alert_id] = SentAlert(body, alert.time, alert.kind, alert.rule, historical)
            marked.append(alert.model_copy(update={"historical": historical}))
        self.in_flight = {**gone, **{alert.alert_id: self.sent[alert.alert_id] for alert in changed}}
        return withdrawals + marked

    def confirm(self) -> None:
        """The released messages are on the broker."""
        self.in_flight = {}
        self.unreleased = False


@dataclass(frozen=True)
class AlertPointIdentity:
    """What identifies an alert's point in InfluxDB besides its severity tag: athlete, kind, rule and time."""

    athlete_id: str
    kind: str
    rule: str
    time: datetime

    @classmethod
    def of(cls, message: OutboxMessage) -> "AlertPointIdentity":
        return cls(message.athlete_id, message.kind, message.rule, message.time)


def stale_alert_points(previous: Mapping[str, SentAlert], sent: Iterable[OutboxMessage]) -> list[AlertPointIdentity]:
    """The points a release leaves stale: a withdrawn alert's, and an updated alert's earlier version's (its time
    or severity may have changed, and either makes a new point beside the old one). `previous`: the outbox's sent
    alerts before the release."""
    stale = []
    for message in sent:
        before = previous.get(message.alert_id)
        if isinstance(message, AlertWithdrawal):
            stale.append(AlertPointIdentity.of(message))
        elif before is not None:
            stale.append(AlertPointIdentity(message.athlete_id, before.kind, before.rule, before.time))
    return stale


def standing_alerts_sharing(
    stale: Iterable[AlertPointIdentity], current: Mapping[str, Alert], sent: Mapping[str, SentAlert],
    released: Iterable[OutboxMessage],
) -> list[Alert]:
    """The standing alerts whose point the removal of the `stale` points takes with it, as marked when sent, for
    their points to be written again: two alert ids can share athlete, kind, rule and time (a version raised on
    part of the input, anchored on other events, and the one the whole input raises), and a point's removal
    names those, not the id. `current`: the alerts the history raises; `sent`: the outbox after the release (which
    holds every current alert); `released`: its messages (their points are written anyway)."""
    removed = set(stale)
    written = {message.alert_id for message in released}
    return [
        alert.model_copy(update={"historical": sent[alert_id].historical})
        for alert_id, alert in current.items()
        if alert_id not in written and AlertPointIdentity.of(alert) in removed
    ]
