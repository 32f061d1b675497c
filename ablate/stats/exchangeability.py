"""Seed exchangeability: a cell's test errors should not trend with the seed's number.

Seeds are exchangeable by design (each run derives its generators from its seed), so a trend of
test error with the seed number, or with the order in which runs finished, points at drift of
the machine, the code or the data between runs. Per cell (budget, arm, N of C_N, repeat
control): Spearman's rho of test error on the seed number (and on the finishing order), its
permutation p-value (exact over all n! orders up to EXACT_UP_TO runs, Monte Carlo beyond),
Holm-adjusted over the study's cells, flagged below 1 - `confidence`.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.errors import expect_one_of
from ablate.models.arms import CELL_KEY
from ablate.stats.multiple import holm
from ablate.stats.table import prepare

TREND_ORDERS = ("seed", "finished_at")  # what the errors are ranked against
CELL = [*CELL_KEY, "group"]
EXACT_UP_TO = 10  # runs per cell up to which the permutation p-value is exact (10! orders)
RESAMPLES = 9_999  # Monte Carlo orders beyond that (seeded: the same table gives the same p)


def smallest_p(n: int) -> float:
    """The smallest two-sided permutation p-value Spearman's rho of n distinct ranks can reach:
    2 / n! exactly (1/12 at n = 4, 1/60 at n = 5), 1 / (RESAMPLES + 1) beyond EXACT_UP_TO."""
    return 2 / math.factorial(n) if n <= EXACT_UP_TO else 1 / (RESAMPLES + 1)


CONFIDENCE = 0.95  # a flag is a Holm-adjusted p below 1 - CONFIDENCE
MIN_RUNS = next(
    n for n in range(2, 20) if smallest_p(n) <= 1 - CONFIDENCE
)  # 5: at 4 runs no order reaches 5%


@functools.cache
def _all_orders(n: int) -> np.ndarray:
    """Every permutation of range(n), (n!, n) int8, built by inserting k at each position."""
    orders = np.zeros((1, 0), dtype=np.int8)
    for k in range(n):
        orders = np.concatenate([np.insert(orders, pos, k, axis=1) for pos in range(k + 1)])
    return orders


def spearman_p(
    x: np.ndarray, y: np.ndarray, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """(rho, two-sided p) of Spearman's rank correlation of (n,) x and y under the permutation
    null (every order of x equally likely): exact over all n! orders for n <= EXACT_UP_TO,
    else (1 + #{|rho*| >= |rho|}) / (1 + resamples) over seeded random orders. Ties get mid-ranks;
    constant x or y: (NaN, NaN)."""
    rx, ry = sps.rankdata(x), sps.rankdata(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    if scale == 0:
        return math.nan, math.nan
    observed = float(rx @ ry)
    n = len(rx)
    if n <= EXACT_UP_TO:
        orders, extreme = _all_orders(n), 0
        for start in range(0, len(orders), 500_000):  # (chunk, n) at a time: 40 MB at most
            extreme += int((np.abs(rx[orders[start : start + 500_000]] @ ry) >= abs(observed) - 1e-9).sum())
        p = extreme / len(orders)
    else:
        orders = np.argsort(np.random.default_rng(seed).random((resamples, n)), axis=1)
        p = (1 + int((np.abs(rx[orders] @ ry) >= abs(observed) - 1e-9).sum())) / (1 + resamples)
    return observed / scale, float(p)


def seed_trends(
    runs: pd.DataFrame, by: str = "seed", confidence: float = CONFIDENCE, min_runs: int = MIN_RUNS
) -> pd.DataFrame:
    """One row per cell with at least `min_runs` ok runs (MIN_RUNS: the fewest whose smallest
    attainable p reaches 5%): n, rho (Spearman of test error on `by`: the seed number, or the
    finishing order from `finished_at`), p (two-sided permutation p, spearman_p), p_holm (Holm
    over the cells) and `flagged` (p_holm < 1 - confidence); plus the cell's `code_fingerprints` (distinct
    values of that column, when the table has it)."""
    expect_one_of("by", by, TREND_ORDERS)
    table = prepare(runs)
    table = table[table["ok"]]
    if by == "finished_at":  # a runs table of your own may not say when its runs finished
        when = pd.to_datetime(
            table["finished_at"].replace("", None), utc=True, format="ISO8601", errors="coerce"
        )
        table = table.assign(finished_at=when).dropna(subset=["finished_at"])
    rows = []
    for keys, cell in table.groupby(CELL, sort=True):
        if len(cell) < min_runs:
            continue
        x, y = cell[by].rank(method="average").to_numpy(), cell["test_error"].to_numpy(dtype=float)
        rho, p = spearman_p(x, y)
        fingerprints = sorted(set(cell["code_fingerprint"].fillna(""))) if "code_fingerprint" in cell else []
        rows.append(
            dict(zip(CELL, keys), n=len(cell), rho=float(rho), p=float(p), code_fingerprints=fingerprints)
        )
    out = pd.DataFrame(rows, columns=[*CELL, "n", "rho", "p", "code_fingerprints"])
    out["p_holm"] = holm(out["p"])
    out["flagged"] = out["p_holm"] < 1 - confidence
    out["by"], out["confidence"] = by, confidence
    return out


def code_heterogeneity(runs: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Whether a cell's test errors differ between the code versions that made its runs: per cell
    whose ok runs span at least two code fingerprints with at least two runs each, a Kruskal-Wallis
    test across the fingerprints (`p`), Holm over the tested cells (`p_holm`), `flagged` below
    1 - confidence; `fingerprints` lists the cell's fingerprints with their seeds. Fingerprint and seed are
    confounded when seeds were run in chunks: a flag says the runs should not be pooled unchecked."""
    columns = [*CELL, "n", "fingerprints", "p", "p_holm", "flagged"]
    table = prepare(runs)
    if "code_fingerprint" not in table:
        return pd.DataFrame(columns=columns)
    table = table[table["ok"]].assign(code_fingerprint=table["code_fingerprint"].fillna(""))
    rows = []
    for keys, cell in table.groupby(CELL, sort=True):
        groups = {fp: g for fp, g in cell.groupby("code_fingerprint") if fp and len(g) >= 2}
        if len(groups) < 2:
            continue
        errors = [g["test_error"].to_numpy(dtype=float) for g in groups.values()]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # identical errors in every group: no test (NaN)
            p = float(sps.kruskal(*errors).pvalue) if np.ptp(np.concatenate(errors)) > 0 else math.nan
        seeds = {fp: sorted(int(s) for s in g["seed"]) for fp, g in groups.items()}
        rows.append(dict(zip(CELL, keys), n=len(cell), fingerprints=seeds, p=p))
    out = pd.DataFrame(rows, columns=[*CELL, "n", "fingerprints", "p"])
    out["p_holm"] = holm(out["p"])
    out["flagged"] = out["p_holm"] < 1 - confidence
    return out[columns]
