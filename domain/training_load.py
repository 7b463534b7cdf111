"""Training load and modality: pure functions from workout numbers to load, and from daily load to fitness.

Public API (stable; other modules import these names):

- `WorkoutInput(sport, duration_s, sub_sport=None, avg_hr_bpm=None, max_hr_bpm=None, avg_power_w=None,
  normalized_power_w=None, rpe=None, hr_samples=(), power_samples=())` -- a workout's numbers, plain input.
- `Athlete(hr_rest_bpm=60, hr_max_bpm=190, ftp_w=None, sex="male", time_zone=None)` -- the athlete numbers the
  formulas need, and the IANA time zone whose calendar their days and weeks follow.
- `local_time(moment, time_zone)` -- an instant on the athlete's own clock: in the profile's IANA zone, else in
  the offset the event itself carries. Days and Monday weeks of the load model are the athlete's local ones, so
  an evening session in California is not counted on the next (UTC) day, nor a Monday run in Sydney in the
  previous week.
- `profile_numbers(profile)`, `with_profile(history, time_s, profile)`, `athlete_at(history, time_s)` -- an
  athlete's profiles over time, and the `Athlete` in effect at a workout's time.
- `workout_load(workout, athlete) -> WorkoutLoad` with `trimp`, `hrtss`, `power_tss`, `srpe_load`, `load`
  (the one number CTL/ATL use, in TSS units), `source` (which formula gave `load`), and `modality`.
- `classify_modality(sport, sub_sport=None, intensity=None) -> "resistance" | "hiit" | "steady_state" | "other"`.
- `intensity_profile(hr_samples, athlete) -> IntensityProfile` -- share of time hard/easy and the number of
  hard intervals, from ~1 Hz heart-rate samples.
- `normalized_power(power_samples) -> float | None` -- Coggan NP from 1 Hz power.
- `daily_load_model(daily_loads, start=None, end=None) -> list[DailyLoad]` -- per (local) day `load`, `ctl`,
  `atl`, `tsb`, `acwr`, with rest days filled in as zero load.
- `fitness_before(daily_loads, start, day, carry) -> (ctl, atl)` -- the same model's figures at the end of the day
  before `day`, without its days (what a stream carries over when it forgets old days).
- `rest_days(daily_loads, today, start=None, carry=(0, 0)) -> list[DailyLoad]` -- the model carried from the
  last load through today, so fatigue falls and form rises on rest days (at most MODEL_TAIL_DAYS).
- `weekly_modality_mix(sessions) -> list[WeeklyModality]` -- per ISO week (Monday of the sessions' own local
  dates) and modality: load, minutes, share.
- `summary_load(summary, athlete) -> SummaryLoad` -- a workout summary's (`events.WorkoutSummary`) load, modality
  and TRIMP: as it carries them, else computed. The one place the clinical engine and the workouts agent get a
  workout's load.
- `LoadHistory(daily, sessions, carry, counted)` and `add_session(history, session, workout_id) -> LoadUpdate`
  (or `add_sessions(history, [NewSession(session, workout_id), ...])`, modelled once) --
  the bounded per-athlete history a stream keeps: the last DAILY_MEMORY_DAYS of daily loads, the CTL/ATL carried
  over from the days before them (`CarriedFitness`), the last SESSION_MEMORY_DAYS of sessions and the ids of the
  workouts counted in the kept days; adding a session gives the new history, the model from the session's day
  to the newest day, and the session's week of the mix. Adding a workout id already counted changes nothing
  (`within_kept_days` says for which days the history alone can tell).

Formulas and references:

- Banister TRIMP (Banister 1991, "Modeling elite athletic performance", in Physiological Testing of the
  High-Performance Athlete; Morton, Fitz-Clarke & Banister 1990, J Appl Physiol 69:1171):
  TRIMP = minutes x HRr x 0.64 x e^(1.92 x HRr) for men (0.86 and 1.67 for women), where
  HRr = (HR - HR_rest) / (HR_max - HR_rest) is the heart-rate-reserve fraction. With samples, the sum runs
  over each sample's duration, which weights hard intervals properly; otherwise the session average is used.
- hrTSS (TrainingPeaks, "Estimating Training Stress Score (TSS)", after Coggan): the workout's TRIMP divided
  by the TRIMP of one hour at lactate threshold heart rate, x 100. LTHR is estimated as 85 % of heart-rate
  reserve (Karvonen 1957 zones) when not known.
- Power TSS (Allen & Coggan, "Training and Racing with a Power Meter", 2010):
  TSS = seconds x NP x IF / (FTP x 3600) x 100, IF = NP / FTP; NP = fourth root of the mean of the fourth
  power of the 30-second rolling average power. Without samples, the average power stands in for NP.
- Session-RPE load (Foster et al. 2001, J Strength Cond Res 15:109): CR-10 RPE x minutes (arbitrary units).
  For CTL it is put on the TSS scale by taking one hour at RPE 7 ("very hard", near threshold) as 100 TSS.
- CTL/ATL (Banister impulse-response fitness/fatigue; Coggan's Performance Manager): exponentially weighted
  averages of daily load with time constants 42 and 7 days, X_t = X_{t-1} + (load_t - X_{t-1}) x (1 - e^(-1/tau)).
  TSB (form) = CTL - ATL of the previous day, the TrainingPeaks convention (form going into today).
- Carry-over: the model from `start` with CTL/ATL = the model's values at the end of the day before `start`
  equals the model over the whole history from `start` on (each day depends on the previous day only), so old
  daily loads can be forgotten once folded into `CarriedFitness`.
- ACWR (Hulin et al. 2016, Br J Sports Med 50:231; EWMA form after Williams et al. 2017, Br J Sports Med
  51:209): ATL / CTL, None while CTL is zero.
- Modality: resistance from sport/sub_sport (strength training); HIIT from sub_sport or from the intensity
  distribution (at least 4 hard bouts above 85 % HRR, at least 15 % of the time hard, and at least 25 % easy
  below 70 % HRR: polarised within the session, per Buchheit & Laursen 2013, Sports Med 43:313); steady-state
  cardio for endurance sports otherwise; anything else is "other".
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # events builds on this module's types; the summary is only read here
    from aromatrack.domain.events import WorkoutSummary

Modality = Literal["resistance", "hiit", "steady_state", "other"]
MODALITIES: tuple[Modality, ...] = ("resistance", "hiit", "steady_state", "other")

CTL_DAYS = 42
ATL_DAYS = 7
MODEL_TAIL_DAYS = 180  # rest days carried after the last load: by then CTL is below 2 % of its value (e^(-180/42))
LTHR_RESERVE_FRACTION = 0.85
HARD_RESERVE_FRACTION = 0.85
EASY_RESERVE_FRACTION = 0.70
HIIT_MIN_HARD_BOUTS = 4
HIIT_MIN_HARD_SHARE = 0.15
HIIT_MIN_EASY_SHARE = 0.25
SRPE_TSS_PER_AU = 100 / (7 * 60)
NP_WINDOW_S = 30
DAILY_MEMORY_DAYS = 200  # daily loads a LoadHistory keeps; older ones live on as its carried CTL/ATL
SESSION_MEMORY_DAYS = 70  # sessions a LoadHistory keeps for the weekly modality mix

_RESISTANCE_SPORTS = {"strength_training", "resistance", "weight_training", "weightlifting", "crossfit"}
_RESISTANCE_SUB_SPORTS = {"strength_training", "weight_training"}
_HIIT_NAMES = {"hiit", "interval_training", "tabata", "amrap", "emom", "high_intensity_interval_training"}
_CARDIO_SPORTS = {
    "running",
    "cycling",
    "swimming",
    "rowing",
    "walking",
    "hiking",
    "cross_country_skiing",
    "e_biking",
    "transition",
    "multisport",
    "paddling",
    "stand_up_paddleboarding",
    "inline_skating",
    "elliptical",
    "stair_climbing",
    "mountaineering",
    "snowshoeing",
}
_CARDIO_EQUIPMENT_SUB_SPORTS = {
    "treadmill",
    "elliptical",
    "stair_climbing",
    "indoor_rowing",
    "indoor_cycling",
    "spin",
    "virtual_activity",
    "indoor_running",
}


@dataclass(frozen=True)
class Athlete:
    """The athlete numbers the formulas need; defaults are population values for when no profile is known."""

    hr_rest_bpm: float = 60.0
    hr_max_bpm: float = 190.0
    ftp_w: float | None = None
    sex: Literal["male", "female"] = "male"
    lthr_bpm: float | None = None
    time_zone: str | None = None

    def __post_init__(self) -> None:
        if self.time_zone is not None:
            zone(self.time_zone)
        if not self.hr_rest_bpm < self.hr_max_bpm:
            raise ValueError(f"hr_rest_bpm ({self.hr_rest_bpm:g}) must be below hr_max_bpm ({self.hr_max_bpm:g})")
        if self.ftp_w is not None and self.ftp_w <= 0:
            raise ValueError(f"ftp_w must be positive, got {self.ftp_w:g}")

    @property
    def threshold_hr_bpm(self) -> float:
        return self.lthr_bpm or self.hr_rest_bpm + LTHR_RESERVE_FRACTION * (self.hr_max_bpm - self.hr_rest_bpm)

    def reserve_fraction(self, hr_bpm: float) -> float:
        """Heart-rate-reserve fraction, clamped to [0, 1] so a spike or a low reading cannot go off the scale."""
        fraction = (hr_bpm - self.hr_rest_bpm) / (self.hr_max_bpm - self.hr_rest_bpm)
        return min(1.0, max(0.0, fraction))


PROFILE_FIELDS = ("hr_rest_bpm", "hr_max_bpm", "ftp_w", "sex", "time_zone")
PROFILE_HISTORY_LIMIT = 32  # profiles kept per athlete; they change a few times a year


def profile_numbers(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The `Athlete` numbers an `athlete.profile` event carries (its dict or model dump)."""
    return {name: profile.get(name) for name in PROFILE_FIELDS}


def with_profile(history: Sequence[Sequence[Any]], time_s: float, profile: Mapping[str, Any]) -> list[list[Any]]:
    """A profile history (`[time_s, numbers]` pairs in time order, the latest PROFILE_HISTORY_LIMIT kept) with one
    profile's numbers added. A profile at a time already present replaces it, so a redelivered event changes
    nothing."""
    kept = [list(entry) for entry in history if entry[0] != time_s]
    bisect.insort(kept, [time_s, profile_numbers(profile)], key=lambda entry: entry[0])
    return kept[-PROFILE_HISTORY_LIMIT:]


def athlete_at(history: Sequence[Sequence[Any]], time_s: float) -> Athlete:
    """The numbers in effect at `time_s`: the latest profile at or before it (as the clinical engine, which
    applies a profile before a workout of the same instant, sees them); population defaults before the first."""
    index = bisect.bisect_right([entry[0] for entry in history], time_s)
    return Athlete(**history[index - 1][1]) if index else Athlete()


@dataclass(frozen=True)
class WorkoutInput:
    """What load needs from one workout: the `workout.summary` fields plus optional ~1 Hz samples."""

    sport: str
    duration_s: float
    sub_sport: str | None = None
    avg_hr_bpm: float | None = None
    max_hr_bpm: float | None = None
    avg_power_w: float | None = None
    normalized_power_w: float | None = None
    rpe: float | None = None
    hr_samples: Sequence[float] = ()
    power_samples: Sequence[float] = ()


@dataclass(frozen=True)
class IntensityProfile:
    hard_share: float
    easy_share: float
    hard_bouts: int


@dataclass(frozen=True)
class WorkoutLoad:
    trimp: float | None
    hrtss: float | None
    power_tss: float | None
    srpe_load: float | None
    load: float
    source: Literal["power_tss", "hrtss", "srpe", "none"]
    modality: Modality


@dataclass(frozen=True)
class DailyLoad:
    day: date
    load: float
    ctl: float
    atl: float
    tsb: float
    acwr: float | None


@dataclass(frozen=True)
class Session:
    """One workout as the weekly mix needs it."""

    start: datetime
    modality: Modality
    load: float
    minutes: float


@dataclass(frozen=True)
class WeeklyModality:
    week_start: date
    modality: Modality
    load: float
    minutes: float
    share: float


def _trimp_weight(fraction: float, sex: str) -> float:
    a, b = (0.86, 1.67) if sex == "female" else (0.64, 1.92)
    return fraction * a * math.exp(b * fraction)


def banister_trimp(workout: WorkoutInput, athlete: Athlete) -> float | None:
    """Banister TRIMP; summed over samples (spread evenly over the duration) when present, else from the average."""
    if workout.hr_samples:
        seconds_per_sample = workout.duration_s / len(workout.hr_samples)
        # Weighted once per distinct heart rate (a few hundred), not once per sample (thousands per workout).
        counts = Counter(workout.hr_samples)
        weights = sum(_trimp_weight(athlete.reserve_fraction(hr), athlete.sex) * n for hr, n in counts.items())
        return weights * seconds_per_sample / 60
    if workout.avg_hr_bpm is None:
        return None
    return workout.duration_s / 60 * _trimp_weight(athlete.reserve_fraction(workout.avg_hr_bpm), athlete.sex)


def hr_tss(trimp: float | None, athlete: Athlete) -> float | None:
    """TRIMP relative to one hour at threshold heart rate, x 100."""
    if trimp is None:
        return None
    hour_at_threshold = 60 * _trimp_weight(athlete.reserve_fraction(athlete.threshold_hr_bpm), athlete.sex)
    return 100 * trimp / hour_at_threshold


def normalized_power(power_samples: Sequence[float]) -> float | None:
    """Coggan normalized power from 1 Hz samples; None for rides shorter than the 30 s window."""
    if len(power_samples) < NP_WINDOW_S:
        return None
    window_sum = sum(power_samples[:NP_WINDOW_S])
    fourth_powers = (window_sum / NP_WINDOW_S) ** 4
    for index in range(NP_WINDOW_S, len(power_samples)):
        window_sum += power_samples[index] - power_samples[index - NP_WINDOW_S]
        fourth_powers += (window_sum / NP_WINDOW_S) ** 4
    return (fourth_powers / (len(power_samples) - NP_WINDOW_S + 1)) ** 0.25


def power_tss(workout: WorkoutInput, athlete: Athlete) -> float | None:
    """Coggan TSS; needs FTP and power (NP, else NP from samples, else average power)."""
    np_w = workout.normalized_power_w or normalized_power(workout.power_samples) or workout.avg_power_w
    if athlete.ftp_w is None or not np_w:
        return None
    intensity_factor = np_w / athlete.ftp_w
    return workout.duration_s * np_w * intensity_factor / (athlete.ftp_w * 3600) * 100


def srpe_load(workout: WorkoutInput) -> float | None:
    """Foster session-RPE load: CR-10 RPE x minutes."""
    return None if workout.rpe is None else workout.rpe * workout.duration_s / 60


def intensity_profile(hr_samples: Sequence[float], athlete: Athlete) -> IntensityProfile | None:
    """Share of samples hard (> 85 % HRR) and easy (< 70 % HRR), and how many separate hard bouts there were."""
    if not hr_samples:
        return None
    fractions = {hr: athlete.reserve_fraction(hr) for hr in set(hr_samples)}  # per distinct heart rate
    hard = easy = bouts = 0
    in_bout = False
    for fraction in map(fractions.__getitem__, hr_samples):
        if fraction > HARD_RESERVE_FRACTION:
            hard += 1
            bouts += not in_bout
            in_bout = True
        else:
            easy += fraction < EASY_RESERVE_FRACTION
            # A bout ends only when the athlete drops to easy, so a dip just under the line stays one bout.
            in_bout = in_bout and fraction >= EASY_RESERVE_FRACTION
    return IntensityProfile(hard / len(hr_samples), easy / len(hr_samples), bouts)


def _norm(name: str | None) -> str:
    return (name or "").strip().lower().replace(" ", "_").replace("-", "_")


def classify_modality(sport: str, sub_sport: str | None = None, intensity: IntensityProfile | None = None) -> Modality:
    """Resistance and HIIT by name first, then HIIT by the intensity pattern, then endurance sports as steady state."""
    sport_name, sub_name = _norm(sport), _norm(sub_sport)
    if sport_name in _RESISTANCE_SPORTS or sub_name in _RESISTANCE_SUB_SPORTS:
        return "resistance"
    if sport_name in _HIIT_NAMES or sub_name in _HIIT_NAMES:
        return "hiit"
    if (
        intensity is not None
        and intensity.hard_bouts >= HIIT_MIN_HARD_BOUTS
        and intensity.hard_share >= HIIT_MIN_HARD_SHARE
        and intensity.easy_share >= HIIT_MIN_EASY_SHARE
    ):
        return "hiit"
    if sport_name in _CARDIO_SPORTS or sub_name in _CARDIO_EQUIPMENT_SUB_SPORTS:
        return "steady_state"
    return "other"


def workout_load(workout: WorkoutInput, athlete: Athlete = Athlete()) -> WorkoutLoad:
    """Every load measure for one workout; `load` prefers power TSS, then hrTSS, then sRPE on the TSS scale."""
    trimp = banister_trimp(workout, athlete)
    hrtss = hr_tss(trimp, athlete)
    ptss = power_tss(workout, athlete)
    srpe = srpe_load(workout)
    if ptss is not None:
        load, source = ptss, "power_tss"
    elif hrtss is not None:
        load, source = hrtss, "hrtss"
    elif srpe is not None:
        load, source = srpe * SRPE_TSS_PER_AU, "srpe"
    else:
        load, source = 0.0, "none"
    modality = classify_modality(workout.sport, workout.sub_sport, intensity_profile(workout.hr_samples, athlete))
    return WorkoutLoad(trimp, hrtss, ptss, srpe, load, source, modality)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone of that name; ValueError names an unknown one (never a silent fall-back to UTC)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. 'Europe/Berlin')") from None


def local_time(moment: datetime, time_zone: str | None) -> datetime:
    """The instant on the athlete's clock: in `time_zone` when the profile names one, else as the event carries
    it (its own UTC offset, e.g. a FIT file's local time). The day and week a workout counts in are this one's."""
    if moment.tzinfo is None:
        raise ValueError("moment must be timezone-aware")
    return moment.astimezone(zone(time_zone)) if time_zone else moment


def _decay(days: int) -> float:
    return 1 - math.exp(-1 / days)


_CTL_DECAY, _ATL_DECAY = _decay(CTL_DAYS), _decay(ATL_DAYS)


def daily_load_model(
    daily_loads: Mapping[date, float],
    start: date | None = None,
    end: date | None = None,
    carry: tuple[float, float] = (0.0, 0.0),
    emit_from: date | None = None,
) -> list[DailyLoad]:
    """CTL/ATL/TSB/ACWR for every day from `start` (default: first load) to `end` (default: last load).

    The model starts from `carry` (CTL, ATL) on `start`, zero fitness by default; loads before `start` are
    ignored, so pass the full history, or the CTL/ATL of the day before `start` as `carry` (what lets a
    stream forget old days and still compute exactly the same model). With `emit_from`, the days before it are
    folded into the figures but not returned (a stream that needs only the days a batch changed).
    """
    if not daily_loads and (start is None or end is None):
        return []
    first = start or min(daily_loads)
    last = end or max(daily_loads)
    one_day = timedelta(days=1)
    day = first if emit_from is None else max(first, min(emit_from, last + one_day))
    ctl, atl = fitness_before(daily_loads, first, day, carry)
    days = []
    while day <= last:
        load = daily_loads.get(day, 0.0)
        tsb = ctl - atl
        ctl += (load - ctl) * _CTL_DECAY
        atl += (load - atl) * _ATL_DECAY
        days.append(DailyLoad(day, load, ctl, atl, tsb, atl / ctl if ctl > 0 else None))
        day += one_day
    return days


def fitness_before(daily_loads: Mapping[date, float], start: date, day: date, carry: tuple[float, float]) -> tuple[float, float]:
    """(CTL, ATL) at the end of the day before `day`: the model of `daily_load_model` run from `carry` on `start`,
    without its days (the same arithmetic, so the same figures)."""
    ctl, atl = carry
    one_day = timedelta(days=1)
    while start < day:
        load = daily_loads.get(start, 0.0)
        ctl += (load - ctl) * _CTL_DECAY
        atl += (load - atl) * _ATL_DECAY
        start += one_day
    return ctl, atl


def rest_days(
    daily_loads: Mapping[date, float],
    today: date,
    start: date | None = None,
    carry: tuple[float, float] = (0.0, 0.0),
) -> list[DailyLoad]:
    """The model's days after the last load through `today`, each a rest day (zero load), at most
    MODEL_TAIL_DAYS of them; empty when the last load is today's or later. Same arguments as `daily_load_model`,
    so the rest days continue exactly the model the loads give."""
    if not daily_loads:
        return []
    last = max(daily_loads)
    end = min(today, last + timedelta(days=MODEL_TAIL_DAYS))
    if end <= last:
        return []
    return [day for day in daily_load_model(daily_loads, start=start, end=end, carry=carry) if day.day > last]


def week_start(moment: datetime | date) -> date:
    """Monday of the ISO week, in the moment's own time zone (callers pass `local_time`)."""
    day = moment.date() if isinstance(moment, datetime) else moment
    return day - timedelta(days=day.weekday())


def weekly_modality_mix(sessions: Iterable[Session]) -> list[WeeklyModality]:
    """Per ISO week and modality: summed load and minutes, and the modality's share of that week's load."""
    totals: dict[tuple[date, Modality], list[float]] = {}
    for session in sessions:
        entry = totals.setdefault((week_start(session.start), session.modality), [0.0, 0.0])
        entry[0] += session.load
        entry[1] += session.minutes
    week_load: dict[date, float] = {}
    for (week, _), (load, _) in totals.items():
        week_load[week] = week_load.get(week, 0.0) + load
    return [
        WeeklyModality(week, modality, load, minutes, load / week_load[week] if week_load[week] > 0 else 0.0)
        for (week, modality), (load, minutes) in sorted(totals.items())
    ]


@dataclass(frozen=True)
class SummaryLoad:
    """What the load model needs of one workout summary."""

    load: float  # TSS scale, rounded to 3 decimals as summaries carry it
    modality: Modality
    trimp: float | None


def summary_load(summary: WorkoutSummary, athlete: Athlete = Athlete()) -> SummaryLoad:
    """A workout summary's load, modality and TRIMP. A summary that carries a `load` and one of MODALITIES (made
    from a FIT file's samples, which the summary no longer holds) keeps them; otherwise they are computed from its
    workout's numbers with the athlete's."""
    if summary.load is not None and summary.modality in MODALITIES:
        return SummaryLoad(summary.load, summary.modality, summary.trimp)
    computed = workout_load(summary.workout, athlete)
    return SummaryLoad(round(computed.load, 3), computed.modality, computed.trimp)


@dataclass(frozen=True)
class CarriedFitness:
    """CTL and ATL at the end of the day before `day`: what the forgotten days before `day` leave to the model."""

    day: date
    ctl: float
    atl: float


@dataclass(frozen=True)
class LoadHistory:
    """An athlete's training as a stream keeps it, bounded as history grows: daily loads (the athlete's local
    days, as the sessions' `local_time` starts give them) from the first kept day on, the fitness carried over from the days before it, and the recent sessions."""

    daily: Mapping[date, float] = field(default_factory=dict)
    sessions: tuple[Session, ...] = ()
    carry: CarriedFitness | None = None
    # Workout id -> the kept day it was counted on. The history itself knows what it counted, so a workout
    # delivered again (a stream's retry after a crash) is never counted twice, whatever else was stored with it.
    counted: Mapping[str, date] = field(default_factory=dict)
    counted_since: date | None = None  # `counted` lists every workout from this day on (None: every kept day)


def within_kept_days(history: LoadHistory, day: date) -> bool:
    """Whether `history.counted` alone tells if a workout on `day` was counted: it counts on its own kept day.
    An older one counts on the first kept day, and its id may have been forgotten with the days (and a history
    stored before ids were kept knows only the workouts after `counted_since`)."""
    firsts = [first for first in (history.carry.day if history.carry else None, history.counted_since) if first]
    return all(day >= first for first in firsts)


@dataclass(frozen=True)
class LoadUpdate:
    """The history after one session, the model from the session's day (or the first kept day) to the newest
    day, and the session's week of the modality mix: the days and week whose figures changed."""

    history: LoadHistory
    days: list[DailyLoad]
    week: list[WeeklyModality]


@dataclass(frozen=True)
class NewSession:
    """A session to add, with the id of the workout it comes from (None: no repeat is ever recognised)."""

    session: Session
    workout_id: str | None = None


def add_session(history: LoadHistory, session: Session, workout_id: str | None = None) -> LoadUpdate:
    """Add one session: `add_sessions` with one."""
    return add_sessions(history, [NewSession(session, workout_id)])


def add_sessions(history: LoadHistory, new: Sequence[NewSession]) -> LoadUpdate:
    """Add sessions and model once (a stream's batch: one model per athlete instead of one per workout, which
    was most of a backfill's CPU). A session older than the kept days counts on the first kept day (its own day
    is folded into the carried fitness already). Days more than DAILY_MEMORY_DAYS before the newest are folded
    into the carry and sessions more than SESSION_MEMORY_DAYS before it dropped, so the model stays exactly what
    `daily_load_model` gives over the whole history. A workout id already counted (before or earlier in `new`) is
    skipped. The update's days run from the earliest added session's day (or the first rest day between the
    previous newest day and a newer session, which the model now reaches) to the newest day; its weeks are those
    of the added sessions."""
    first_kept = history.carry.day if history.carry else None
    daily, counted, sessions = dict(history.daily), dict(history.counted), list(history.sessions)
    added_days: list[date] = []
    for item in new:
        if item.workout_id is not None and item.workout_id in counted:
            continue
        day = max(item.session.start.date(), first_kept) if first_kept else item.session.start.date()
        daily[day] = daily.get(day, 0.0) + item.session.load
        if item.workout_id is not None:
            counted[item.workout_id] = day
        sessions.append(item.session)
        added_days.append(day)
    if not added_days:
        return LoadUpdate(history, [], [])
    first_changed = min(added_days)
    if history.daily:
        first_changed = min(first_changed, max(history.daily) + timedelta(days=1))
    cut = max(daily) - timedelta(days=DAILY_MEMORY_DAYS)
    carry = (history.carry.ctl, history.carry.atl) if history.carry else (0.0, 0.0)
    # Only the changed days are needed as DailyLoads (the new carry is the model's figures before the cut, below).
    model = daily_load_model(daily, start=first_kept, carry=carry, emit_from=first_changed)
    newest = max(kept.start.date() for kept in sessions)
    kept_sessions = tuple(kept for kept in sessions if kept.start.date() > newest - timedelta(days=SESSION_MEMORY_DAYS))
    updated = _forget_old_days(
        LoadHistory(daily, kept_sessions, history.carry, counted, history.counted_since), first_kept or min(daily), cut, carry)
    weeks = {week_start(day) for day in added_days}
    first_week = min(weeks)  # sessions before it are in no week of `weeks` (a cheaper test than `week_start`)
    return LoadUpdate(
        updated,
        model,
        # Over every session, before the oldest are dropped: a batch can span more than SESSION_MEMORY_DAYS.
        [mix for mix in weekly_modality_mix(
            s for s in sessions if s.start.date() >= first_week and week_start(s.start) in weeks) if mix.week_start in weeks],
    )


def _forget_old_days(history: LoadHistory, first_day: date, cut: date, carry: tuple[float, float]) -> LoadHistory:
    """Days before `cut` folded into the carry: the model's figures at the end of the day before it (the model run
    from `carry` on `first_day`)."""
    if first_day >= cut:
        return history
    ctl, atl = fitness_before(history.daily, first_day, cut, carry)
    daily = {day: load for day, load in history.daily.items() if day >= cut}
    counted = {workout: day for workout, day in history.counted.items() if day >= cut}
    carry = CarriedFitness(cut, ctl, atl)
    return LoadHistory(daily, history.sessions, carry, counted, history.counted_since)
