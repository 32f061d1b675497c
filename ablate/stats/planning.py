"""Seeds planned to a precision: how many seeds per arm the repetition share's interval of a
given half-width needs, how uncertain that number is, and the two-stage (Stein-type) plan that
`python -m ablate.run --precision` trains to.

At n seeds per arm (unpaired) the delta-method half-width of the share is

    half(n) = t_{(1+c)/2, df(n)} sqrt(A / n) / |D|,  A = (1 - s)^2 sd_plain^2 + sd_repeat^2 + s^2 sd_gcnn^2

(ratio.share_half_width). A pilot of n0 seeds estimates A with nu Welch-Satterthwaite degrees of
freedom, and nu A_hat / A is close to chi-square(nu): A's interval, and with it the seeds', follow.
The two-stage plan asks for the seeds at A's one-sided `assurance` upper bound, so that the final
interval (on every seed) reaches the half-width in about that fraction of studies; the final
interval is the ordinary one, whose coverage the plan does not spoil (simulate_two_stage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.stats.ratio import seeds_for_half_width, share_half_width, share_weights, welch_df
from ablate.stats.table import DECOMPOSED, SHARES, Cell, cells, prepare

PILOT_MIN = 5  # fewer seeds give a spread with under 4 degrees of freedom: no plan from them
ASSURANCE = 0.85  # the plan's chance of reaching the asked half-width (measured ~87%: simulate_two_stage)


class PilotTooSmall(ValueError):
    """A pilot with fewer than PILOT_MIN ok seeds of an arm: no plan is made from it."""


@dataclass(frozen=True)
class PilotEstimate:
    """What a cell's seeds say for planning: per-arm spreads (analysis scale), the share s, the
    total gain D, the fewest seeds of an arm n and the df nu of A's estimate."""

    sd: dict[str, float]
    share: float
    den: float
    n: int
    nu: float
    numerator: tuple[str, str] = SHARES["rep"]  # which share: stats.table.SHARES

    def seeds(self, half_width: float, confidence: float, variance_factor: float = 1.0) -> int:
        """Seeds per arm for `half_width` with A scaled by variance_factor (-1: no gain, or none
        up to ratio.seeds_for_half_width's limit)."""
        if not np.isfinite(self.share):
            return -1
        sd = {arm: s * math.sqrt(variance_factor) for arm, s in self.sd.items()}
        return seeds_for_half_width(
            sd, self.share, self.den, half_width, confidence, numerator=self.numerator
        )

    def plan(
        self, half_width: float, pilot: int, max_seeds: int, confidence: float, assurance: float
    ) -> tuple[int, int]:
        """The two-stage plan: (seeds asked at A's one-sided `assurance` bound, -1 when none is
        predicted; the seeds to train, that within [pilot, max_seeds], max_seeds for -1)."""
        asked = self.seeds(half_width, confidence, self.variance_factor(1 - assurance))
        return asked, max_seeds if asked < 0 else min(max(asked, pilot), max_seeds)

    def variance_factor(self, quantile: float) -> float:
        """nu / chi2_{quantile}(nu): the multiplier that takes A_hat to A's `quantile` bound."""
        return self.nu / float(sps.chi2.ppf(quantile, self.nu)) if np.isfinite(self.nu) else 1.0


def pilot_estimate(y: dict[str, np.ndarray], share: str = "rep") -> PilotEstimate:
    """The planning numbers of one unpaired cell from its arms' samples y (Cell.y: analysis
    scale, at least 2 per arm) for one share of stats.table.SHARES ("rep", "struct", "sym")."""
    numerator = SHARES[share]
    arms = list(share_weights(numerator, 0.0))
    sd = {arm: float(np.std(y[arm], ddof=1)) for arm in arms}
    den = float(y["plain"].mean() - y["gcnn"].mean())
    s = float(y[numerator[0]].mean() - y[numerator[1]].mean()) / den if den else math.nan
    size = {arm: len(y[arm]) for arm in arms}
    weights = share_weights(numerator, s if np.isfinite(s) else 0.0)
    nu = welch_df([weights[a] ** 2 * sd[a] ** 2 for a in arms], [size[a] - 1.0 for a in arms])
    return PilotEstimate(sd, s, den, min(size.values()), nu, numerator)


def _pilot_cells(runs: pd.DataFrame, scale: str, what: str, share: str = "rep") -> list[Cell]:
    """The runs' cells, PilotTooSmall naming the first with fewer than PILOT_MIN ok seeds of an
    arm of `share` (ValueError when a cell lacks one of its arms, e.g. the wrong arm)."""
    found = cells(prepare(runs, scale), paired=False)
    arms = share_weights(SHARES[share], 0.0)
    for cell in found:
        lacking = [a for a in arms if a not in cell.y]
        if lacking:
            raise ValueError(f"{what}: {cell.design.label} has no {lacking[0]} arm for the {share} share")
        arm, n = min(((a, cell.n[a]) for a in arms), key=lambda item: item[1])
        if n < PILOT_MIN:
            raise PilotTooSmall(
                f"{what}: {cell.design.label}, arm {arm} has {n} ok seeds; a plan needs a pilot of at "
                f"least {PILOT_MIN} per arm"
            )
    return found


def seeds_needed(
    runs: pd.DataFrame, half_width: float = 0.10, confidence: float = 0.95, scale: str = "points"
) -> pd.DataFrame:
    """Per budget (and design), the seeds per arm for which the share's delta-method interval would
    have the given half-width (unpaired design), from the observed spreads and gains, with a
    `confidence` interval of that number from the spreads' uncertainty (A's chi-square interval;
    the gain and share are taken as observed). PilotTooSmall when an arm has under PILOT_MIN seeds.

    Columns: budget, group_order, repeat_structure, share_rep (observed), n_now (fewest seeds of an
    arm), half_width_now (the formula at n_now), seeds_needed, seeds_low, seeds_high (-1 when the
    total gain is zero or a spread unknown).
    """
    rows = []
    for cell in _pilot_cells(runs, scale, "seeds_needed"):
        est = pilot_estimate(cell.y)
        tail = (1 - confidence) / 2
        now = share_half_width(est.sd, est.share, est.den, est.n, confidence) if est.den else math.nan
        rows.append(
            {
                **cell.design.columns,
                "share_rep": est.share,
                "n_now": est.n,
                "half_width_now": now,
                "seeds_needed": est.seeds(half_width, confidence),
                "seeds_low": est.seeds(half_width, confidence, est.variance_factor(1 - tail)),
                "seeds_high": est.seeds(half_width, confidence, est.variance_factor(tail)),
            }
        )
    return pd.DataFrame(rows)


def plan_seeds(
    runs: pd.DataFrame,
    half_width: float,
    pilot: int,
    max_seeds: int,
    confidence: float = 0.95,
    assurance: float = ASSURANCE,
    share: str = "rep",
) -> pd.DataFrame:
    """The two-stage plan: per design, from the ok runs of seeds 0 .. pilot - 1 only (so the plan
    does not change as later seeds finish), the seeds per arm at A's one-sided `assurance` upper
    bound. PilotTooSmall when an arm of the pilot has under PILOT_MIN ok seeds.

    Columns: the design columns, n_pilot, share_<share> (the pilot's), asked (-1: the pilot shows
    no gain, so no number of seeds is predicted) and seeds (asked within [pilot, max_seeds];
    max_seeds when asked is -1). `share`: which share of stats.table.SHARES the plan is for.
    """
    rows = []
    for cell in _pilot_cells(runs[runs["seed"] < pilot], "points", "pilot", share):
        est = pilot_estimate(cell.y, share)
        asked, seeds = est.plan(half_width, pilot, max_seeds, confidence, assurance)
        row = {**cell.design.columns, "n_pilot": est.n, f"share_{share}": est.share}
        rows.append(row | {"asked": asked, "seeds": seeds})
    return pd.DataFrame(rows)


def _final_half_width(y: dict[str, np.ndarray], confidence: float) -> tuple[float, float]:
    """(share, delta half-width) of equal-size unpaired samples: stats.decompose's delta interval."""
    p, r, g = (y[a] for a in DECOMPOSED)
    den = p.mean() - g.mean()
    share = (p.mean() - r.mean()) / den
    sd = {arm: float(np.std(y[arm], ddof=1)) for arm in DECOMPOSED}
    return float(share), share_half_width(sd, share, den, len(p), confidence)


def simulate_two_stage(
    means: dict[str, float],
    sds: dict[str, float],
    half_width: float,
    pilot: int,
    max_seeds: int,
    studies: int = 1000,
    seed: int = 0,
    rule: str = "two-stage",
    round_seeds: int = 5,
    confidence: float = 0.95,
    assurance: float = ASSURANCE,
) -> dict[str, float]:
    """Coverage of the final delta interval and the fraction of studies reaching `half_width`, for
    normal errors with the given per-arm means and spreads (points). rule "two-stage": the pilot's
    plan (PilotEstimate at the `assurance` bound), then the interval on every seed; "sequential":
    after the pilot, add `round_seeds` at a time until the interval is narrow enough (or
    max_seeds). Returns coverage, reached, median_seeds and capped (fraction at max_seeds)."""
    rng = np.random.default_rng(seed)
    true = (means["plain"] - means["repeat"]) / (means["plain"] - means["gcnn"])
    covered = reached = capped = 0
    used = []
    for _ in range(studies):
        y = {arm: rng.normal(means[arm], sds[arm], pilot) for arm in DECOMPOSED}
        if rule == "two-stage":
            est = pilot_estimate(y)
            _, n = est.plan(half_width, pilot, max_seeds, confidence, assurance)
            y = {arm: np.concatenate([y[arm], rng.normal(means[arm], sds[arm], n - pilot)]) for arm in y}
            share, half = _final_half_width(y, confidence)
        else:
            share, half = _final_half_width(y, confidence)
            while half > half_width and len(y["plain"]) < max_seeds:
                more = min(round_seeds, max_seeds - len(y["plain"]))
                y = {arm: np.concatenate([y[arm], rng.normal(means[arm], sds[arm], more)]) for arm in y}
                share, half = _final_half_width(y, confidence)
        n = len(y["plain"])
        used.append(n)
        covered += abs(share - true) <= half
        reached += half <= half_width
        capped += n >= max_seeds
    return {
        "coverage": covered / studies,
        "reached": reached / studies,
        "median_seeds": float(np.median(used)),
        "capped": capped / studies,
    }
