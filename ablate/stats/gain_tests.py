"""One-sided tests that a gain is positive: Welch's (or the paired) t-test and an exact or Monte
Carlo permutation test, skipped where even its smallest attainable p cannot reach the level."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as sps


def smallest_perm_p(n_worse: int, n_better: int, paired: bool) -> float:
    """The smallest one-sided p-value an exact permutation test can give at these sizes."""
    return 0.5**n_worse if paired else 1 / math.comb(n_worse + n_better, n_worse)


def gain_tests(
    worse: np.ndarray, better: np.ndarray, paired: bool, n_perm: int, seed: int, confidence: float
):
    """One-sided p-values that mean(worse) > mean(better): (t-test, permutation test or NaN when
    skipped or unable to reject at 1 - confidence, smallest attainable permutation p)."""
    smallest = smallest_perm_p(len(worse), len(better), paired)
    if np.ptp(worse) == 0 and np.ptp(better) == 0:
        return math.nan, math.nan, smallest  # no spread at all: no test means anything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # one constant arm: scipy warns, the test holds
        if paired:
            t_p = sps.ttest_rel(worse, better, alternative="greater").pvalue
        else:
            t_p = sps.ttest_ind(worse, better, equal_var=False, alternative="greater").pvalue
    if n_perm <= 0 or smallest >= 1 - confidence - 1e-12:  # it could never reject
        return float(t_p), math.nan, smallest

    def mean_diff(a, b, axis=-1):
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    perm = sps.permutation_test(
        (worse, better),
        mean_diff,
        vectorized=True,
        n_resamples=n_perm,
        permutation_type="samples" if paired else "independent",
        alternative="greater",
        random_state=seed,
    )
    return float(t_p), float(perm.pvalue), smallest
