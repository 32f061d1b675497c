"""Runs trained twice: a cell's runs retrained under other code (`python -m ablate.run --retrain`)
against their first training (the rows kept in superseded/), seed by seed.

Each retrained run is paired with its superseded row by run key (the same data, model, training
settings and seed; only the code, and perhaps the CPU, differ). Per cell (CELL_KEY and group):
the mean paired change new - old in test error with a t interval, a paired t-test and a
Wilcoxon signed-rank test of no change (Holm over the cells, each test its own family), and
how many pairs are bit-identical. Identical training numerics give identical errors; a change
in rounding alone spreads the pairs symmetrically about 0 (training is chaotic: one ulp early
becomes points by the end), a change in the method moves their mean.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.stats.exchangeability import CELL
from ablate.stats.multiple import holm
from ablate.stats.table import prepare

CONFIDENCE = 0.95  # of the interval on the mean paired change
# errors closer than this are one count of test images (a fraction k / n_test, n_test < 10^6)
# that two versions wrote with different float rounding
SAME = 1e-9

PAIR_COLUMNS = ["run_key", *CELL, "seed", "old", "new", "old_code", "new_code"]


def retrained_pairs(runs: pd.DataFrame, superseded: pd.DataFrame) -> pd.DataFrame:
    """One row per ok run of `runs` with an ok superseded row of the same run key (the latest one,
    where a run was retrained more than once): its cell, seed, `old` and `new` test errors
    (fractions) and both code fingerprints. Empty when nothing was retrained."""
    if superseded is None or superseded.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    current = prepare(runs)
    current = current[current["ok"]]
    first = superseded[superseded["status"] == "ok"].drop_duplicates("run_key", keep="last")
    first = first[["run_key", "test_error", "code_fingerprint"]].rename(
        columns={"test_error": "old", "code_fingerprint": "old_code"}
    )
    paired = current.merge(first, on="run_key", how="inner")
    paired = paired.rename(columns={"test_error": "new", "code_fingerprint": "new_code"})
    for column in ("old_code", "new_code"):
        paired[column] = paired[column].fillna("").astype(str)
    return paired[PAIR_COLUMNS].sort_values([*CELL, "seed"]).reset_index(drop=True)


def _tests(diff: np.ndarray) -> tuple[float, float]:
    """(paired t-test p, Wilcoxon signed-rank p) of no change; NaN where every pair is equal."""
    if len(diff) < 2 or not np.any(diff != 0):
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a Wilcoxon with ties or zeros warns; its p stands
        t = float(sps.ttest_1samp(diff, 0.0).pvalue) if np.ptp(diff) > 0 else 0.0
        w = float(sps.wilcoxon(diff).pvalue)
    return t, w


def retrained_comparison(pairs: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per cell of retrained_pairs: `n` pairs, `identical` (bit-identical errors), mean `old` and
    `new`, the mean change `diff` (new - old, fraction) with its t interval (`lo`, `hi`), the paired
    t-test's `p_t` and the Wilcoxon signed-rank `p_w` with their Holm adjustments over the cells."""
    columns = [
        *CELL,
        "n",
        "identical",
        "old",
        "new",
        "diff",
        "lo",
        "hi",
        "p_t",
        "p_w",
        "p_t_holm",
        "p_w_holm",
    ]
    rows = []
    for keys, cell in pairs.groupby(CELL, sort=True):
        diff = (cell["new"] - cell["old"]).to_numpy(dtype=float, copy=True)
        diff[np.abs(diff) < SAME] = 0.0  # the same count of test images, written with other rounding
        n = len(diff)
        half = sps.t.ppf(0.5 + confidence / 2, n - 1) * diff.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
        p_t, p_w = _tests(diff)
        rows.append(
            dict(zip(CELL, keys), n=n, identical=int((diff == 0).sum()), old=cell["old"].mean(),
                 new=cell["new"].mean(), diff=diff.mean(), lo=diff.mean() - half, hi=diff.mean() + half,
                 p_t=p_t, p_w=p_w)
        )  # fmt: skip
    out = pd.DataFrame(rows, columns=columns[:-2])
    out["p_t_holm"], out["p_w_holm"] = holm(out["p_t"]), holm(out["p_w"])
    return out[columns]


def with_first_training(runs: pd.DataFrame, superseded: pd.DataFrame) -> pd.DataFrame:
    """`runs` with each retrained run's row replaced by its superseded row (the latest one): the
    study as first trained, for a sensitivity line beside the retrained study's numbers."""
    if superseded is None or superseded.empty:
        return runs
    first = superseded.drop_duplicates("run_key", keep="last")
    first = first[first["run_key"].isin(runs["run_key"])]
    kept = runs[~runs["run_key"].isin(first["run_key"])]
    return pd.concat([kept, first[[c for c in runs.columns if c in first.columns]]], ignore_index=True)
