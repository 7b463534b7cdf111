"""One athlete's whole history in event-time order, folded through the engine as `aromatrack evaluate` folds it.

Events arrive in any order (several input topics, bulk imports, labs entered weeks late). `AthleteTimeline`
keeps every event of the athlete (no tail that forgets: a history is ~500 events a year), sorted by the
engine's order key, and the fold's result for each one (alerts raised, derived points). An event that extends
the history is stepped onto the current state; one that lands inside it is inserted and the engine re-folded
from the last checkpoint before it, so the results are those of the sorted fold whatever the arrival order.
Checkpoints (the engine state before every CHECKPOINT_EVERY-th event) are in-memory copies only; the stored
form is the events themselves (`clinical_codec`), so a restore re-folds and no engine internals are stored.

Memory: `settle` drops the folded events before a checkpoint from memory, keeping that checkpoint as the base the
rest is folded on and the latest version of each alert the dropped events raised. A decade of history then costs
the memory of the recent part only; the dropped events stay in the table, and an event that would land before
the base is placed only after the caller has read the whole history back (`clinical_codec.holds`).

`alerts(as_of_s)` is every alert the history raises with the athlete's clock run on to `as_of_s` (scheduled
rechecks that fall due with no new event; `engine.advance` on a copy of the state, so a later event still folds
in order): exactly `engine.evaluate(events, as_of_s=...)` over the same events, latest version per alert id.
"""

from __future__ import annotations

import bisect
import pickle
from dataclasses import dataclass, field
from typing import Iterable, Mapping, NamedTuple

from aromatrack.domain import engine, rules
from aromatrack.domain import events as domain
from aromatrack.schemas import series
from aromatrack.schemas.boundary import domain_event, wire_alert
from aromatrack.schemas.events import Alert, EventBase, dump_event
from aromatrack.schemas.series import Point

CHECKPOINT_EVERY = 32


# Below every event's type rank (`engine.type_rank` ranks from 0), so a bound at a moment sorts before its events.
_BEFORE_ANY_RANK = (-1, -1)


class OrderKey(NamedTuple):
    """The engine's processing order: event time, then type rank, then event id (`engine.order_key`). A tuple,
    so the sorts and bisections of placing and folding compare in C (a dataclass's ordering built two tuples per
    comparison)."""

    time_s: float
    type_rank: tuple[int, int]
    event_id: str

    @classmethod
    def of(cls, event: EventBase) -> "OrderKey":
        return cls.of_domain(event, domain_event(event))

    @classmethod
    def of_domain(cls, event: EventBase, core: domain.Event) -> "OrderKey":
        """The key of `event`, whose core value (`domain_event`) is already at hand."""
        return cls(event.time.timestamp(), engine.type_rank(core), event.event_id or "")

    @classmethod
    def first_at(cls, time_s: float) -> "OrderKey":
        """A bound before every event at `time_s` or later, and after every earlier one."""
        return cls(time_s, _BEFORE_ANY_RANK, "")


@dataclass(frozen=True)
class FoldResult:
    """What one event gave when folded in its place: the alerts it raised and the derived series points."""

    alerts: tuple[Alert, ...]
    points: tuple[Point, ...]


@dataclass(frozen=True)
class Checkpoint:
    """The engine state just before the event with key `before`. Stored pickled in memory only, as a fast deep
    copy (copy.deepcopy of a state costs several engine steps)."""

    before: OrderKey
    state: bytes


def outcome_points(event: domain.Event, outcome: engine.Outcome) -> tuple[Point, ...]:
    """Derived series for one engine outcome (of `event`, the core's value): the body-fat trend and the E2
    correlation context."""
    tags = {"athlete_id": event.athlete_id}
    points = []
    if outcome.trend is not None:
        trend = outcome.trend
        points.append(series.BODY_FAT_TREND.point(event.time, tags, {
            "smoothed_pct": trend.smoothed_pct,
            "slope_pct_per_week": trend.slope_pct_per_week,
            "change_since_e2_pct": trend.change_since_e2_pct,
        }))
    if outcome.e2 is not None:
        e2 = outcome.e2
        points.append(series.E2_CORRELATION.point(event.time, tags, {
            "e2_pg_ml": e2.e2_pg_ml,
            "body_fat_pct": e2.body_fat_pct,
            "body_fat_change_pct": e2.body_fat_change_pct,
            "weekly_load": e2.weekly_load,
            "anastrozole_weekly_mg": e2.anastrozole_weekly_mg,
            "slope_pg_ml_per_pct": e2.slope_pg_ml_per_pct,
            "pairs": e2.pairs,
            "predicted_e2_pg_ml": e2.predicted_e2_pg_ml,
        }))
    return tuple(points)


class SettledHistoryError(ValueError):
    """An event placed before the part of the history kept in memory (read the whole history back first)."""


@dataclass(repr=False)  # no lab values or doses in crash logs
class AthleteTimeline:
    """`add` places events (cheap: no fold); `fold` brings the results up to date with one pass from where the
    earliest event placed since the last fold changed the history, and returns the points that changed."""

    athlete_id: str
    settings: engine.EngineSettings = field(default_factory=engine.EngineSettings)
    keys: list[OrderKey] = field(default_factory=list)
    # Each event's canonical bytes (`dump_event`), what a stored period is made of: a third of the memory of the
    # validated model, and a period rewritten whole at every batch that adds to it is a join, not a dump per event.
    encoded: list[bytes] = field(default_factory=list)
    # The core's value of each event (`domain_event`), converted once when placed rather than on every (re-)fold.
    core_events: list[domain.Event] = field(default_factory=list)
    results: dict[str, FoldResult] = field(default_factory=dict)  # event id -> its result in the last fold
    checkpoints: list[Checkpoint] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    state: engine.AthleteState | None = None  # after the events up to `last_folded`
    last_folded: OrderKey | None = None
    unfolded_from: OrderKey | None = None  # the earliest key placed since the last fold
    # After `settle`: the state before the first event kept in memory, and the alerts of the events dropped.
    base: Checkpoint | None = None
    settled_alerts: dict[str, Alert] = field(default_factory=dict)
    _alerts: dict[str, Alert] | None = None

    def __post_init__(self) -> None:
        if self.state is None:
            self.state = engine.AthleteState(self.athlete_id)

    def __len__(self) -> int:
        return len(self.keys)

    def add(
        self, events: Iterable[EventBase], canonical: Mapping[str, bytes | None] | None = None
    ) -> tuple[EventBase, ...]:
        """Place this athlete's events in event-time order; returns those newly placed (repeats of placed ids,
        whatever their age, are skipped: the first event of an id is the one placed). `canonical`: the first
        event's `dump_event` bytes of ids that have them at hand (the timeline's reader makes them), so they are
        not dumped a second time."""
        canonical = canonical or {}
        fresh: dict[str, EventBase] = {}
        for event in events:
            if event.event_id and event.event_id not in self.ids and event.event_id not in fresh:
                fresh[event.event_id] = event
        if not fresh:
            return ()
        placed = []
        for event in fresh.values():
            core = domain_event(event)
            placed.append((OrderKey.of_domain(event, core), event, core))
        placed.sort(key=lambda item: item[0])
        if self.base is not None and placed[0][0] <= self.base.before:
            raise SettledHistoryError("an event before the part of the history kept in memory")
        self.ids.update(fresh)
        for key, event, core in placed:
            if self.keys and key < self.keys[-1]:
                position = bisect.bisect_left(self.keys, key)
                self.keys.insert(position, key)
                self.encoded.insert(position, canonical.get(key.event_id) or dump_event(event))
                self.core_events.insert(position, core)
            else:
                self.keys.append(key)
                self.encoded.append(canonical.get(key.event_id) or dump_event(event))
                self.core_events.append(core)
        first = placed[0][0]
        self.unfolded_from = first if self.unfolded_from is None else min(self.unfolded_from, first)
        return tuple(event for _, event, _ in placed)

    def fold(self) -> tuple[Point, ...]:
        """Fold what changed since the last fold: on from the current state when only later events were placed,
        else from the last checkpoint before the earliest placed one. Returns the points of the events whose
        result is new or differs from the last fold's."""
        if self.unfolded_from is None:
            return ()
        if self.last_folded is not None and self.last_folded < self.unfolded_from:
            start = bisect.bisect_right(self.keys, self.last_folded)
        else:
            start = self._restore_before(self.unfolded_from)
        self.unfolded_from = None
        self._alerts = None
        points: list[Point] = []
        for index in range(start, len(self.keys)):
            key, event = self.keys[index], self.core_events[index]
            if index and index % CHECKPOINT_EVERY == 0 and (not self.checkpoints or self.checkpoints[-1].before < key):
                self.checkpoints.append(Checkpoint(key, pickle.dumps(self.state)))
            _, outcome = engine.step(self.state, event, self.settings)
            result = FoldResult(tuple(map(wire_alert, outcome.alerts)), outcome_points(event, outcome))
            if self.results.get(key.event_id) != result:
                points.extend(result.points)
                self.results[key.event_id] = result
        self.last_folded = self.keys[-1]
        return tuple(points)

    def _restore_before(self, key: OrderKey) -> int:
        """Drop the checkpoints at or after `key` and restore the state of the last one before it (the empty
        state if none); returns the index of the event that checkpoint precedes."""
        kept = bisect.bisect_left([c.before for c in self.checkpoints], key)
        del self.checkpoints[kept:]
        if not self.checkpoints:
            # The first event in memory is the base's (`settle`), or the history's first.
            self.state = pickle.loads(self.base.state) if self.base else engine.AthleteState(self.athlete_id)
            return 0
        checkpoint = self.checkpoints[-1]
        self.state = pickle.loads(checkpoint.state)
        return bisect.bisect_left(self.keys, checkpoint.before)

    def settle(self, keep: int) -> None:
        """Fold, then drop from memory the events before the last checkpoint that leaves at least `keep` events in
        memory (nothing when there is none): that checkpoint becomes the base, the dropped events' alerts are kept
        (the latest version by id) and their results and ids forgotten."""
        self.fold()
        if len(self.keys) <= keep:
            return
        limit = self.keys[-keep]
        index = bisect.bisect_right([c.before for c in self.checkpoints], limit) - 1
        if index < 0:
            return
        base = self.checkpoints[index]
        start = bisect.bisect_left(self.keys, base.before)
        for key in self.keys[:start]:
            self.settled_alerts.update((alert.alert_id, alert) for alert in self.results.pop(key.event_id).alerts)
            self.ids.discard(key.event_id)
        del self.keys[:start], self.encoded[:start], self.core_events[:start]
        self.base = base
        del self.checkpoints[: index + 1]

    def alerts(self, as_of_s: float | None = None) -> dict[str, Alert]:
        """Every alert the whole history raises, latest version by id, with the clock run on to `as_of_s` (what
        `engine.evaluate(events, as_of_s=as_of_s)` gives); folds first if events were placed since the last fold."""
        self.fold()
        if self._alerts is None:
            self._alerts = {
                **self.settled_alerts,
                **{alert.alert_id: alert for key in self.keys for alert in self.results[key.event_id].alerts},
            }
        if as_of_s is None or not self.keys:
            return self._alerts
        clock = pickle.loads(pickle.dumps(self.state))
        due = engine.advance(clock, as_of_s, self.settings)
        return {**self._alerts, **{alert.alert_id: wire_alert(alert) for alert in due}}

    def next_due_s(self, after_s: float) -> float | None:
        """When, after `after_s`, the athlete's clock next makes a scheduled recheck fall due with no new event
        (None: nothing is scheduled)."""
        self.fold()
        if self.state.last_time_s is None:
            return None
        clock = pickle.loads(pickle.dumps(self.state))
        engine.advance(clock, after_s, self.settings)
        return rules.next_due_s(engine.situation(clock, clock.last_time_s, self.settings), self.settings.rules)

    @classmethod
    def of(cls, athlete_id: str, events: Iterable[EventBase], settings: engine.EngineSettings | None = None) -> "AthleteTimeline":
        """Placed, not folded: the first `fold` returns every point."""
        timeline = cls(athlete_id, settings or engine.EngineSettings())
        timeline.add(events)
        return timeline
