"""Inference for a share of the G-CNN's gain, a ratio of mean differences s = N / D with
D = gain_total = e_plain - e_gcnn and N the gain of one step: the repetition share's N =
e_plain - e_repeat, the sharing-structure share's e_repeat - e_wrong, the symmetry share's
e_wrong - e_gcnn (stats.table.SHARES), each N written as a sum of arm means with coefficients.

`ratio_moments` gives N, D, their (co)variances and degrees of freedom from one budget's
samples or summed over several budgets; the intervals and the identifiability rule take those.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ablate.stats.table import Cell


@dataclass(frozen=True)
class RatioMoments:
    """N and D (summed over cells), Var N, Var D, Cov(N, D), and the degrees of freedom of the
    t quantile for N - s D at s = N / D."""

    num: float
    den: float
    var_num: float
    var_den: float
    cov: float
    df: float

    @property
    def share(self) -> float:
        return self.num / self.den if self.den != 0 else math.nan


def sample_var(x: np.ndarray) -> float:
    """Sample variance (ddof 1), exactly 0 when all values are equal (no rounding residue)."""
    return float(np.var(x, ddof=1)) if np.ptp(x) > 0 else 0.0


def welch_df(parts: list[float], dfs: list[float]) -> float:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance terms."""
    denom = sum(part**2 / df for part, df in zip(parts, dfs) if part > 0)
    return sum(parts) ** 2 / denom if denom > 0 else math.inf


DENOMINATOR = ("plain", "gcnn")  # every share's D: the G-CNN's total gain over the plain CNN


def coefficients(numerator: tuple[str, str]) -> tuple[dict[str, float], dict[str, float]]:
    """N's and D's coefficient per arm: N = mean(worse) - mean(better) for numerator = (worse,
    better), D = mean(plain) - mean(gcnn); arms with coefficient 0 are left out."""
    c_num = {numerator[0]: 1.0}
    c_num[numerator[1]] = c_num.get(numerator[1], 0.0) - 1.0
    return {a: c for a, c in c_num.items() if c}, {DENOMINATOR[0]: 1.0, DENOMINATOR[1]: -1.0}


def share_weights(numerator: tuple[str, str], share: float) -> dict[str, float]:
    """Per arm, the coefficient of N - s D (the statistic whose variance sets the share's
    interval): for the repetition share 1 - s (plain), -1 (repeat), s (gcnn)."""
    c_num, c_den = coefficients(numerator)
    arms = dict.fromkeys([DENOMINATOR[0], *c_num, DENOMINATOR[1]])
    return {a: c_num.get(a, 0.0) - share * c_den.get(a, 0.0) for a in arms}


def ratio_moments(
    cells: list[Cell], paired: bool, numerator: tuple[str, str] = ("plain", "repeat")
) -> RatioMoments:
    """Moments of N and D from one cell, or summed over cells (the pooled share). N is the gain of
    `numerator` = (worse, better) arm: ("plain", "repeat") the repetition share, ("repeat",
    "wrong") the sharing-structure share, ("wrong", "gcnn") the symmetry share, ("plain",
    "augmented") the share of the G-CNN's gain that augmentation recovers.

    Unpaired: arms independent, Var(mean) = s^2 / n per arm; an arm in N and D (e_plain in the
    repetition share's) gives Cov(N, D) = its coefficients' product times Var(mean); df
    Welch-Satterthwaite over every (cell, arm) term of N - s D (share_weights). Paired (one
    cell): per-seed differences, their sample covariance / n, df n - 1.
    """
    c_num, c_den = coefficients(numerator)
    if paired:
        (cell,) = cells
        num = sum(c * cell.y[a] for a, c in c_num.items())
        den = sum(c * cell.y[a] for a, c in c_den.items())
        n = len(den)
        cov = float(np.cov(num, den, ddof=1)[0, 1])
        var_num, var_den = sample_var(num) / n, sample_var(den) / n
        return RatioMoments(float(num.mean()), float(den.mean()), var_num, var_den, cov / n, n - 1.0)
    num = sum(sum(c * float(cell.y[a].mean()) for a, c in c_num.items()) for cell in cells)
    den = sum(float(cell.y["plain"].mean() - cell.y["gcnn"].mean()) for cell in cells)
    share = num / den if den else 0.0
    weights = share_weights(numerator, share)
    var = {(i, a): sample_var(c.y[a]) / len(c.y[a]) for i, c in enumerate(cells) for a in weights}
    parts = [weights[a] ** 2 * v for (_, a), v in var.items()]
    dfs = [len(cells[i].y[a]) - 1.0 for (i, a) in var]
    var_num = sum(c_num.get(a, 0.0) ** 2 * v for (_, a), v in var.items())
    var_den = sum(c_den.get(a, 0.0) ** 2 * v for (_, a), v in var.items())
    cov = sum(c_num.get(a, 0.0) * c_den.get(a, 0.0) * v for (_, a), v in var.items())
    return RatioMoments(num, den, var_num, var_den, cov, welch_df(parts, dfs))


def quantile(m: RatioMoments, confidence: float) -> float:
    """Two-sided t quantile for the share's intervals."""
    return float(sps.t.ppf(1 - (1 - confidence) / 2, m.df))


def identifiable(m: RatioMoments, confidence: float) -> bool:
    """The share is reported only when D is clearly non-zero: D^2 / Var D > q^2. This is exactly
    when Fieller's set is one bounded interval, so the two never disagree."""
    return m.var_den > 0 and m.den**2 > quantile(m, confidence) ** 2 * m.var_den


def delta_interval(
    num: float, den: float, var_num: float, var_den: float, cov: float, q: float
) -> tuple[float, float]:
    """Delta-method interval of num / den (first-order Taylor, covariance included); (nan, nan)
    when den is 0, where the ratio is undefined."""
    if den == 0:
        return math.nan, math.nan
    share = num / den
    var = (var_num - 2 * share * cov + share**2 * var_den) / den**2
    half = q * math.sqrt(max(var, 0.0))
    return share - half, share + half


def fieller_interval(
    num: float, den: float, var_num: float, var_den: float, cov: float, q: float
) -> tuple[float, float, str]:
    """Fieller's confidence set for num / den: {t : (num - t den)^2 <= q^2 Var(num - t den)}.

    Returns (lo, hi, kind): kind "bounded" is [lo, hi]; "two rays" is (-inf, lo] U [hi, inf),
    which happens when the denominator is not clearly non-zero; "unbounded" is the whole line.
    """
    q2 = q**2
    a = den**2 - q2 * var_den
    b = -2 * (num * den - q2 * cov)
    c = num**2 - q2 * var_num
    disc = b * b - 4 * a * c
    if a > 0:
        root = math.sqrt(max(disc, 0.0))
        return (-b - root) / (2 * a), (-b + root) / (2 * a), "bounded"
    if disc > 0 and a < 0:
        lo, hi = sorted(((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)))
        return lo, hi, "two rays"
    return -math.inf, math.inf, "unbounded"


def _share_statistic(plain, repeat, gcnn, axis=-1):
    p = np.mean(plain, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p - np.mean(repeat, axis=axis)) / (p - np.mean(gcnn, axis=axis))


def bootstrap_interval(
    samples: dict[str, np.ndarray], paired: bool, confidence: float, n_boot: int, seed: int
) -> tuple[float, float, str]:
    """Bootstrap interval of the share, resampling seeds within each arm (jointly when paired).

    BCa, falling back to the percentile method when BCa is degenerate; returns (lo, hi, method).
    It under-covers at few seeds (about 0.8 at 3 seeds per arm): decompose skips it below 10.
    """
    data = (samples["plain"], samples["repeat"], samples["gcnn"])
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a degenerate BCa warns; treat that as failure
            try:
                result = sps.bootstrap(
                    data,
                    _share_statistic,
                    n_resamples=n_boot,
                    paired=paired,
                    confidence_level=confidence,
                    method=method,
                    vectorized=True,
                    random_state=seed,
                )
            except (Warning, ValueError, FloatingPointError):
                continue
        lo, hi = result.confidence_interval
        if np.isfinite(lo) and np.isfinite(hi):
            return float(lo), float(hi), method
    return math.nan, math.nan, "failed"


def share_half_width(
    sd: dict[str, float], share: float, den: float, n: int, confidence: float, numerator=("plain", "repeat")
) -> float:
    """Predicted delta-method half-width of the share with n seeds per arm (unpaired):

        half(n) = t_{(1+c)/2, df(n)} * sqrt(A / n) / |D|,  A = sum_arm w_arm^2 sd_arm^2

    with w the share_weights (repetition share: A = (1 - s)^2 sd_p^2 + sd_r^2 + s^2 sd_g^2) and
    df(n) the Welch-Satterthwaite df of A's terms (each with n - 1 df). sd: per arm standard
    deviation on the analysis scale; den: the total gain D.
    """
    parts = [w**2 * sd[a] ** 2 for a, w in share_weights(numerator, share).items()]
    df = welch_df([p / n for p in parts], [n - 1.0] * len(parts))
    return float(sps.t.ppf((1 + confidence) / 2, df)) * math.sqrt(sum(parts) / n) / abs(den)


def seeds_for_half_width(
    sd: dict[str, float], share: float, den: float, half_width: float, confidence: float, most: int = 100_000,
    numerator=("plain", "repeat"),
) -> int:  # fmt: skip
    """Smallest n >= 2 seeds per arm whose predicted half-width (share_half_width) is <= half_width."""
    if den == 0 or not all(np.isfinite(list(sd.values()))):
        return -1

    def half(n: int) -> float:
        return share_half_width(sd, share, den, n, confidence, numerator)

    lo, hi = 2, 2
    while half(hi) > half_width:
        if hi >= most:
            return -1
        lo, hi = hi, min(2 * hi, most)
    while lo < hi:  # the half-width falls with n: bisect for the first n that is narrow enough
        mid = (lo + hi) // 2
        if half(mid) > half_width:
            lo = mid + 1
        else:
            hi = mid
    return hi
