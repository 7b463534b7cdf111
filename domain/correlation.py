"""How an athlete's E2 moves with body fat, and what that predicts between draws.

Aromatase sits mostly in fat, so E2 tends to fall as body fat falls (DOMAIN.md, seed 000). Once an athlete has
enough E2 draws paired with the body fat at each draw, spread over enough of a fat range to say anything, the
per-athlete slope (Theil-Sen, robust to one odd draw) predicts E2 from the current fat. Until then the rule of
thumb stands in: E2 scales in proportion to body fat, all else (dose, T) equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from aromatrack.domain.bodycomp import theil_sen_slope


@dataclass(frozen=True)
class CorrelationSettings:
    min_pairs: int = 4
    min_fat_spread_pct: float = 2.0  # pairs must span this many body-fat points
    max_pairs: int = 24  # older pairs are dropped (bounded memory, and the relation drifts)


@dataclass(frozen=True)
class E2Pair:
    """One uncensored E2 draw (pg/mL) with the smoothed body fat at the draw, both with their sources."""

    time_s: float
    e2_pg_ml: float
    body_fat_pct: float
    e2_event_id: str


@dataclass(frozen=True)
class E2Estimate:
    predicted_e2_pg_ml: float
    slope_pg_ml_per_pct: float | None  # None when the rule of thumb was used
    pairs: int

    @property
    def method(self) -> str:
        return "per_athlete_fit" if self.slope_pg_ml_per_pct is not None else "proportional_rule_of_thumb"


def fitted_slope(pairs: list[E2Pair], settings: CorrelationSettings) -> float | None:
    """Per-athlete E2 change per body-fat point, or None while there are too few or too narrow pairs."""
    if len(pairs) < settings.min_pairs:
        return None
    fats = [p.body_fat_pct for p in pairs]
    if max(fats) - min(fats) < settings.min_fat_spread_pct:
        return None
    return theil_sen_slope([(p.body_fat_pct, p.e2_pg_ml) for p in pairs])


def predict_e2(
    pairs: list[E2Pair], last: E2Pair, body_fat_now: float, settings: CorrelationSettings
) -> E2Estimate:
    """E2 expected at `body_fat_now`, anchored on the last draw."""
    slope = fitted_slope(pairs, settings)
    if slope is not None:
        predicted = last.e2_pg_ml + slope * (body_fat_now - last.body_fat_pct)
    else:
        predicted = last.e2_pg_ml * body_fat_now / last.body_fat_pct
    return E2Estimate(max(0.0, predicted), slope, len(pairs))
