"""A synthetic cohort for the demo and the benchmarks, deterministic for a given seed.

Each athlete follows an archetype (how body fat moves, how they train, what their protocol is), and the
generator emits the events their devices, labs and clinicians would: scale readings with realistic noise
(and the occasional impossible reading), workouts, lab draws on the DOMAIN.md schedule, dose changes, phase
changes and weekly symptom logs. Given the real FIT corpus (`FitRecordings`), runs and rides are sent as real
recordings re-stamped onto the session's date and time (`workout.fit`), as a watch would upload them; strength
sessions stay `workout.summary` events, as a strength app would send them.

The estradiol model is a deliberately simple stand-in for physiology, used only to make lab values
plausible (it is not the service's estimate): aromatisation scales with fat mass, so
    E2 = e2_at_reference_fat * (body_fat / reference_fat) ** 1.5 * 1 / (1 + 0.8 * anastrozole_mg_per_week)
which makes 0.5 mg 2x/week roughly halve E2, and a 25% -> 15% body-fat cut drop E2 by about half again
(seed 000's example of an unchanged dose becoming too strong).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from aromatrack.streams.fit import encode_fit
from aromatrack.streams.fit_restamp import restamper

DAY = timedelta(days=1)

# Real recordings (under corpus/fit, fetched by `make corpus`) for the endurance sessions, by sport: the smallest
# files whose length suits the session (indoor rides of 20-38 min for the 25-40 min interval rides, the two
# treadmill runs of 64 and 81 min for the 40-80 min runs), so the full demo's ~2,460 recordings average ~50 kB and
# the demo stays short (a FIT file's cost grows with its size: BENCHMARKS.md, "FIT decoding").
FIT_RECORDINGS = {
    "cycling": (
        "pyfitness/Luciano/Indoor/Luciano_indoor_climb_196m_distance_11.92km_power5_376.fit",
        "pyfitness/Luciano/Indoor/Luciano_indoor_climb_196m_distance_11.837km_power5_364.fit",
        "pyfitness/Luciano/Indoor/Luciano_indoor_climb_57m_distance_14.031km_power5_365.fit",
        "pyfitness/Luciano/Indoor/Luciano_indoor_climb_4m_distance_20.227km_power5_376.fit",
        "pyfitness/indoor/Zwift_Zwift_Fast_Fridays_Bologna_Time_Trial_E_.fit",
        "pyfitness/Luciano/Indoor/Luciano_indoor_climb_511m_distance_12.368km_power5_365.fit",
        "pyfitness/Luciano/Indoor/Luciano_indoor_climb_77m_distance_24.954km_power5_378.fit",
        "pyfitness/Luciano/Indoor/Luciano_indoor_climb_107m_distance_26.785km_power5_402.fit",
    ),
    "running": ("polar-running-index/treadmill_12km.FIT", "polar-running-index/treadmill_15km.FIT"),
}

ARCHETYPES = (
    # name, share of the cohort, body fat start -> end, training modality, AI mg per dose, doses per week
    ("hiit_cut", 0.25, (25.5, 16.5), "hiit", 0.5, 2),
    ("resistance_recomp", 0.20, (24.0, 19.5), "resistance", 0.5, 2),
    ("steady_cardio", 0.15, (23.0, 20.5), "steady_state", 0.25, 2),
    ("stable_control", 0.25, (19.0, 19.0), "mixed", 0.25, 2),
    ("high_e2", 0.10, (27.0, 28.0), "mixed", 0.0, 0),
    ("post_trt_recovery", 0.05, (21.0, 19.0), "resistance", 0.0, 0),
)

LOW_E2_SYMPTOMS = ("joint_pain", "fatigue", "low_libido", "brain_fog")
HIGH_E2_SYMPTOMS = ("water_retention", "nipple_sensitivity", "mood_swings")


@dataclass(frozen=True)
class Athlete:
    athlete_id: str
    archetype: str
    fat_start: float
    fat_end: float
    modality: str
    ai_mg: float
    ai_per_week: int
    weight_start: float
    hr_rest: int
    hr_max: int
    ftp_w: int | None
    e2_reference: float
    coach_id: str
    clinician_id: str
    e2_unit: str
    lab_method: str


@dataclass(frozen=True)
class FitRecordings:
    """`FIT_RECORDINGS` by sport: each file's name and its re-stamper (start instant -> FIT bytes)."""

    by_sport: dict[str, tuple[tuple[str, Callable[[datetime], bytes]], ...]]

    @classmethod
    def load(cls, corpus: Path) -> "FitRecordings":
        missing = [name for names in FIT_RECORDINGS.values() for name in names if not (corpus / name).is_file()]
        if missing:
            raise FileNotFoundError(f"FIT corpus file missing: {corpus / missing[0]}; run `make corpus`")
        return cls({
            sport: tuple((Path(name).name, restamper((corpus / name).read_bytes())) for name in names)
            for sport, names in FIT_RECORDINGS.items()
        })


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def make_athletes(count: int, rng: random.Random, coaches: int = 5, clinicians: int = 3) -> list[Athlete]:
    """Assign archetypes by their shares (in order, so small cohorts still get every kind)."""
    names = [a[0] for a in ARCHETYPES for _ in range(max(1, round(a[1] * count)))]
    athletes = []
    for index in range(count):
        name, _, (fat0, fat1), modality, ai_mg, ai_per_week = next(a for a in ARCHETYPES if a[0] == names[index % len(names)])
        jitter = rng.uniform(-1.5, 1.5)
        athletes.append(
            Athlete(
                athlete_id=f"ath-{index + 1:04d}",
                archetype=name,
                fat_start=fat0 + jitter,
                fat_end=fat1 + jitter,
                modality=modality,
                ai_mg=ai_mg,
                ai_per_week=ai_per_week,
                weight_start=rng.uniform(78, 102),
                hr_rest=rng.randint(46, 64),
                hr_max=rng.randint(176, 196),
                ftp_w=rng.choice([None, rng.randint(220, 330)]),
                e2_reference=rng.uniform(50, 62),
                coach_id=f"coach-{index % coaches + 1}",
                clinician_id=f"clinician-{index % clinicians + 1}",
                e2_unit="pmol/L" if index % 4 == 3 else "pg/mL",
                lab_method="immunoassay" if index % 5 == 4 else "lc_msms",
            )
        )
    return athletes


def true_e2(athlete: Athlete, body_fat: float, ai_weekly_mg: float) -> float:
    """The synthetic physiology above (pg/mL)."""
    return athlete.e2_reference * (body_fat / 22.0) ** 1.5 / (1 + 0.8 * ai_weekly_mg)


def _fat_at(athlete: Athlete, day: int, days: int) -> float:
    """Fat falls fastest early for HIIT, steadily otherwise (seed 000's modality table)."""
    progress = day / max(days - 1, 1)
    if athlete.modality == "hiit":
        progress = 1 - (1 - progress) ** 2
    return athlete.fat_start + (athlete.fat_end - athlete.fat_start) * progress


class _Timeline:
    """Collects one athlete's events, each with the envelope filled in."""

    def __init__(self, athlete: Athlete):
        self.athlete = athlete
        self.events: list[dict[str, Any]] = []

    def add(self, event_type: str, moment: datetime, **payload: Any) -> None:
        self.events.append({"type": event_type, "athlete_id": self.athlete.athlete_id, "time": _iso(moment), **payload})


def athlete_events(athlete: Athlete, start: datetime, days: int, rng: random.Random, picker: random.Random,
                   recordings: FitRecordings | None = None) -> list[dict[str, Any]]:
    """One athlete's events; with `recordings`, endurance sessions are real files chosen by `picker`.

    The picker is a random stream of its own, so the other events are the same with or without recordings.
    """
    timeline = _Timeline(athlete)
    a = athlete
    timeline.add(
        "athlete.profile", start, sex="male", birth_year=rng.randint(1970, 2000), hr_rest_bpm=a.hr_rest,
        hr_max_bpm=a.hr_max, coach_id=a.coach_id, clinician_id=a.clinician_id,
        **({"ftp_w": a.ftp_w} if a.ftp_w else {}),
    )
    recovering = a.archetype == "post_trt_recovery"
    # Some recomp athletes start TRT two weeks into the window (a TRT-start recheck follows).
    trt_start = start + (14 * DAY if a.archetype == "resistance_recomp" and int(a.athlete_id[-1]) % 2 else 0 * DAY)
    timeline.add("protocol.phase", trt_start, phase="post_trt_recovery" if recovering else "trt")
    if recovering:
        timeline.add("dose.change", trt_start, drug="clomiphene", dose_mg=25, times_per_week=3)
    else:
        timeline.add("dose.change", trt_start, drug="testosterone_cypionate", dose_mg=rng.choice([100, 120, 140]), times_per_week=1)
    ai_weekly = a.ai_mg * a.ai_per_week
    if ai_weekly:
        timeline.add("dose.change", trt_start, drug="anastrozole", dose_mg=a.ai_mg, times_per_week=a.ai_per_week)
    # A clinician steps the AI down for some fat-loss athletes four months in (a dose-change recheck follows).
    dose_step_day = 120 if a.archetype == "hiit_cut" and int(a.athlete_id[-1]) % 2 == 0 else None

    # A baseline draw, then every 12 weeks (DOMAIN.md: 3-4 months while body composition changes), and
    # five weeks after a dose change.
    lab_days = sorted({3, *range(84, days, 84), *([dose_step_day + 35] if dose_step_day else [])} & set(range(days)))
    lean_mass = a.weight_start * (1 - a.fat_start / 100)
    for day in range(days):
        morning = start + day * DAY + timedelta(hours=6, minutes=rng.randint(30, 90))
        fat = _fat_at(a, day, days)
        if dose_step_day is not None and day == dose_step_day:
            ai_weekly = 0.25 * 2
            timeline.add("dose.change", morning + timedelta(hours=3), drug="anastrozole", dose_mg=0.25, times_per_week=2)
        if rng.random() < 0.85:
            measured_fat = fat + rng.gauss(0, 0.35)
            weight = lean_mass / (1 - fat / 100) + rng.gauss(0, 0.3)
            if rng.random() < 1 / 300:
                weight = weight / 100  # a unit glitch: an impossible reading the service must reject
            timeline.add(
                "scale.reading", morning, weight_kg=round(weight, 2), body_fat_pct=round(measured_fat, 1),
                muscle_mass_kg=round(lean_mass * 0.93, 1), hydration_pct=round(rng.uniform(52, 60), 1),
                device="smart-scale",
            )
        _add_workout(timeline, a, start + day * DAY, rng, picker, recordings)
        if day in lab_days:
            _draw_labs(timeline, a, morning + timedelta(hours=1), true_e2(a, fat, ai_weekly), rng)
        if day % 7 == 5:
            _log_symptoms(timeline, morning + timedelta(hours=14), true_e2(a, fat, ai_weekly), rng)
    return timeline.events


def _add_workout(timeline: _Timeline, a: Athlete, day_start: datetime, rng: random.Random, picker: random.Random,
                 recordings: FitRecordings | None) -> None:
    weekday = day_start.weekday()
    plan = {
        "hiit": {0: "hiit", 2: "hiit", 4: "hiit", 5: "resistance"},
        "resistance": {0: "resistance", 1: "resistance", 3: "resistance", 4: "resistance"},
        "steady_state": {1: "steady_state", 3: "steady_state", 5: "steady_state", 6: "steady_state"},
        "mixed": {1: "resistance", 3: "steady_state", 5: "hiit"},
    }[a.modality]
    session = plan.get(weekday)
    if session is None or rng.random() < 0.1:
        return
    begin = day_start + timedelta(hours=17, minutes=rng.randint(0, 60))
    reserve = a.hr_max - a.hr_rest
    if session == "resistance":
        payload = {"sport": "training", "sub_sport": "strength_training", "duration_s": rng.randint(45, 75) * 60,
                   "avg_hr_bpm": round(a.hr_rest + reserve * rng.uniform(0.35, 0.5)), "rpe": rng.randint(6, 8)}
    elif session == "hiit":
        payload = {"sport": "cycling", "sub_sport": "indoor_cycling", "duration_s": rng.randint(25, 40) * 60,
                   "avg_hr_bpm": round(a.hr_rest + reserve * rng.uniform(0.75, 0.85)),
                   "max_hr_bpm": round(a.hr_max * rng.uniform(0.95, 0.99)), "rpe": rng.randint(8, 9)}
    else:
        payload = {"sport": "running", "duration_s": rng.randint(40, 80) * 60,
                   "avg_hr_bpm": round(a.hr_rest + reserve * rng.uniform(0.6, 0.7)),
                   "max_hr_bpm": round(a.hr_rest + reserve * 0.8), "distance_m": rng.randint(7000, 14000),
                   "rpe": rng.randint(4, 6)}
    if recordings is not None and payload["sport"] in recordings.by_sport:
        name, recording_at = picker.choice(recordings.by_sport[payload["sport"]])
        timeline.add("workout.fit", begin, fit_b64=encode_fit(recording_at(begin)), filename=name)
    else:
        timeline.add("workout.summary", begin, **payload)


def _draw_labs(timeline: _Timeline, a: Athlete, moment: datetime, e2: float, rng: random.Random) -> None:
    measured = e2 * rng.gauss(1.0, 0.08)
    if a.lab_method == "immunoassay" and measured * 1.15 < 24:
        timeline.add("lab.result", moment, analyte="estradiol", value=24, unit="pg/mL", comparator="<", method="immunoassay")
    else:
        value = measured * (1.15 if a.lab_method == "immunoassay" else 1.0)
        if a.e2_unit == "pmol/L":
            timeline.add("lab.result", moment, analyte="estradiol", value=round(value * 3.671, 0), unit="pmol/L",
                         method=a.lab_method, reference_low=73, reference_high=147)
        else:
            timeline.add("lab.result", moment, analyte="estradiol", value=round(value, 1), unit="pg/mL",
                         method=a.lab_method, reference_low=20, reference_high=40)
    total_t = rng.uniform(550, 900)
    if a.e2_unit == "pmol/L":
        timeline.add("lab.result", moment, analyte="testosterone_total", value=round(total_t * 0.03467, 1),
                     unit="nmol/L", reference_low=9.2, reference_high=31.2)
    else:
        timeline.add("lab.result", moment, analyte="testosterone_total", value=round(total_t), unit="ng/dL",
                     reference_low=264, reference_high=916)
    _draw_monitoring_panel(timeline, a, moment)


# The monitoring panel: the range each athlete's own level is drawn from, the within-athlete variation (biological
# and analytical, as a coefficient of variation) of a draw around that level, the unit and the lab's range.
PANEL = (
    ("hematocrit", 43.0, 53.0, 0.03, "%", (38.3, 54.0)),
    ("shbg", 18.0, 45.0, 0.08, "nmol/L", (10.0, 57.0)),
    ("testosterone_free", 90.0, 220.0, 0.10, "pg/mL", (47.0, 244.0)),
    ("hdl", 35.0, 60.0, 0.05, "mg/dL", (40.0, 100.0)),
    ("ldl", 80.0, 150.0, 0.05, "mg/dL", (0.0, 130.0)),
)


def _draw_monitoring_panel(timeline: _Timeline, a: Athlete, moment: datetime) -> None:
    """The rest of a TRT monitoring draw (hematocrit, SHBG, free T, lipids) that clinicians read beside E2: each
    analyte varies around the athlete's own level, as real repeat draws do (independent values at every draw
    made changes of 30-40 % between two draws of one athlete, which the lipid rules rightly flagged).

    Its own random streams, so adding it left every other value of a seeded cohort unchanged.
    """
    rng = random.Random(f"{a.athlete_id}:{moment.isoformat()}:panel")
    for analyte, low, high, variation, unit, reference in PANEL:
        level = random.Random(f"{a.athlete_id}:{analyte}:level").uniform(low, high)
        timeline.add("lab.result", moment, analyte=analyte, value=round(level * (1 + rng.gauss(0, variation)), 1),
                     unit=unit, reference_low=reference[0], reference_high=reference[1])


def _log_symptoms(timeline: _Timeline, moment: datetime, e2: float, rng: random.Random) -> None:
    symptoms: list[str] = []
    if e2 < 20:
        symptoms = rng.sample(LOW_E2_SYMPTOMS, k=rng.randint(1, 3))
    elif e2 > 45:
        symptoms = rng.sample(HIGH_E2_SYMPTOMS, k=rng.randint(1, 2))
    joint = max(0.0, min(10.0, (3 if "joint_pain" in symptoms else 8) + rng.gauss(0, 1)))
    timeline.add("symptom.log", moment, energy=round(rng.uniform(4, 9), 1), joint_comfort=round(joint, 1),
                 symptoms=symptoms)


def generate(athletes: int = 50, days: int = 182, seed: int = 7, start: datetime | None = None,
             recordings: FitRecordings | None = None) -> list[dict[str, Any]]:
    """The cohort's events in time order (ties broken by athlete), as JSON-ready dicts.

    Without `recordings` every workout is a `workout.summary` (the benchmarks and board tests need no corpus).
    """
    rng = random.Random(seed)
    begin = start or datetime(2026, 1, 5, tzinfo=timezone.utc)
    events = [
        event
        for athlete in make_athletes(athletes, rng)
        for event in athlete_events(
            athlete, begin, days, random.Random(f"{seed}:{athlete.athlete_id}"),
            random.Random(f"{seed}:{athlete.athlete_id}:fit"), recordings,
        )
    ]
    events.sort(key=lambda e: (e["time"], e["athlete_id"]))
    return events
