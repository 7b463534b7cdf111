"""Clinical agent per event, without servers: CPU of the agent's own work and the bytes it writes to the changelog.

The shape a paced replay gives: a synthetic cohort (10 athletes x 24 weeks by default), each week arriving topic
by topic in random topic order, in batches (2 and 25 events of one athlete). Each batch runs the agent's steps (`apply_events`, compaction,
holding alerts) and stores the record in parts (`stored_changes`: a journal entry per event, a base per
compaction). The obvious alternative, measured in the same run on the same records: pickling the whole record
on every batch (what the worker did before), as one changelog message per athlete and batch.

    .venv/bin/python benchmarks/bench_clinical_record.py [--athletes 10] [--days 168] [--batch 2 25]
"""

from __future__ import annotations

import argparse
import pickle
import random
import time

from aromatrack.domain import engine
from aromatrack.schemas.events import EventBase, EventError, parse_event
from aromatrack.services import cohort
from aromatrack.streams import clinical


def skewed_arrival(events: list[EventBase], rng: random.Random) -> list[EventBase]:
    """Each week's events topic by topic, the topics in random order."""
    start, arrival = events[0].time, []
    for week in range((events[-1].time - start).days // 7 + 1):
        window = [e for e in events if week * 7 <= (e.time - start).days < week * 7 + 7]
        kinds = sorted({e.type for e in window})
        rng.shuffle(kinds)
        arrival += [e for kind in kinds for e in window if e.type == kind]
    return arrival


def whole_record(record: clinical.ClinicalRecord) -> bytes:
    """The alternative: every stored field of the record in one pickle (the in-memory caches left out)."""
    fields = ("athlete_id", "snapshot", "current", "tail", "tail_ids", "held", "emitted")
    return pickle.dumps({name: getattr(record, name) for name in fields})


def measure(by_athlete: dict[str, list[EventBase]], batch: int) -> None:
    rng = random.Random(11)
    parts_cpu = whole_cpu = 0.0
    parts_bytes = parts_messages = whole_bytes = whole_messages = events = 0
    for athlete, timeline in by_athlete.items():
        arrival = skewed_arrival(sorted(timeline, key=engine.order_key), rng)
        record = clinical.ClinicalRecord(athlete, engine.AthleteState(athlete), engine.AthleteState(athlete))
        for start in range(0, len(arrival), batch):
            began = time.process_time()
            outcomes = clinical.apply_events(record, arrival[start : start + batch], 0.0)
            clinical._compact(record)
            clinical.hold_new_alerts(record, outcomes, 0.0)
            writes = clinical.stored_changes(record)
            parts_cpu += time.process_time() - began
            parts_bytes += sum(len(part) + len(value or b"") for part, value in writes)
            parts_messages += len(writes)
            began = time.process_time()
            whole = whole_record(record)
            whole_cpu += time.process_time() - began
            whole_bytes += len(whole)
            whole_messages += 1
        events += len(arrival)
    print(f"{events} events, {len(by_athlete)} athletes, batches of {batch} events of one athlete")
    print(f"  agent steps + stored in parts: {parts_cpu / events * 1000:.3f} ms CPU/event, "
          f"{parts_bytes / events:,.0f} changelog bytes/event in {parts_messages / events:.2f} messages/event")
    print(f"  whole record pickled per batch: +{whole_cpu / events * 1000:.3f} ms CPU/event for the pickle, "
          f"{whole_bytes / events:,.0f} changelog bytes/event in {whole_messages / events:.2f} messages/event")
    print(f"  changelog bytes, whole record / parts: {whole_bytes / parts_bytes:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--athletes", type=int, default=10)
    parser.add_argument("--days", type=int, default=168)
    parser.add_argument("--batch", type=int, nargs="+", default=[2, 25],
                        help="events of one athlete per batch (a paced replay of 50 athletes averages ~1.4)")
    args = parser.parse_args()
    by_athlete: dict[str, list[EventBase]] = {}
    for raw in cohort.generate(athletes=args.athletes, days=args.days, seed=11):
        try:
            event = parse_event(raw)
        except EventError:
            continue  # the cohort's deliberate impossible readings
        by_athlete.setdefault(event.athlete_id, []).append(event)
    for batch in args.batch:
        measure(by_athlete, batch)


if __name__ == "__main__":
    main()
