"""Seed exchangeability: a cell's test errors should not trend with the seed's number.

Seeds are exchangeable by design (each run derives its generators from its seed), so a trend of
test error with the seed number, or with the order in which runs finished, points at drift of
the machine, the code or the data between runs. Per cell (budget, arm, N of C_N, repeat
control): Spearman's rho of test error on the seed number (and on the finishing order), p-values
Holm-adjusted over the study's cells, flagged at `alpha`.
"""

from __future__ import annotations

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
MIN_RUNS = 4  # Spearman's rho of fewer runs cannot reach 5% (its smallest two-sided p is 1/12)


def seed_trends(runs: pd.DataFrame, by: str = "seed", alpha: float = 0.05) -> pd.DataFrame:
    """One row per cell with at least MIN_RUNS ok runs: n, rho (Spearman of test error on `by`:
    the seed number, or the finishing order from `finished_at`), p (two-sided), p_holm (Holm over
    the cells) and `flagged` (p_holm < alpha); plus the cell's `code_fingerprints` (distinct values
    of that column, when the table has it)."""
    expect_one_of("by", by, TREND_ORDERS)
    table = prepare(runs)
    table = table[table["ok"]]
    if by == "finished_at":
        table = table.assign(finished_at=pd.to_datetime(table["finished_at"], utc=True, format="ISO8601"))
    rows = []
    for keys, cell in table.groupby(CELL, sort=True):
        if len(cell) < MIN_RUNS:
            continue
        x, y = cell[by].rank(method="average").to_numpy(), cell["test_error"].to_numpy(dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant errors: rho is undefined (NaN), not an error
            rho, p = sps.spearmanr(x, y)
        fingerprints = sorted(set(cell["code_fingerprint"].fillna(""))) if "code_fingerprint" in cell else []
        rows.append(
            dict(zip(CELL, keys), n=len(cell), rho=float(rho), p=float(p), code_fingerprints=fingerprints)
        )
    out = pd.DataFrame(rows, columns=[*CELL, "n", "rho", "p", "code_fingerprints"])
    out["p_holm"] = math.nan
    tested = np.isfinite(out["p"].to_numpy(dtype=float))
    if tested.any():
        out.loc[tested, "p_holm"] = holm(out.loc[tested, "p"].to_numpy(dtype=float))
    out["flagged"] = out["p_holm"] < alpha
    out["by"], out["alpha"] = by, alpha
    return out
