"""What the training histories say: is a cell's test error still moving at the end of training
(the convergence check), and each run's best-epoch test error.

A share measured before convergence partly measures how fast each arm learns. For each run, the
change in test error over the last `window` of its epochs (from history.csv); per cell (budget,
arm, N, repeat control) the mean *absolute* change over its ok runs (moves in opposite directions
do not cancel) and its one-sided upper 95% t bound. A cell is shown converged when that bound is
below `threshold`; otherwise (or with one run, which has no bound) it is not shown converged.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.models.arms import CELL_KEY
from ablate.stats.table import prepare

WINDOW = 0.2  # the last 20% of a run's epochs
THRESHOLD = 0.005  # 0.5 percentage points of test error
CONFIDENCE = 0.95  # the one-sided level of the bound on the mean absolute change


def window_start(epochs: int, window: float = WINDOW) -> int:
    """The epoch the convergence window starts from: epochs minus the last `window` of them (at
    least one), e.g. 24 of 30."""
    return int(epochs) - max(1, math.ceil(window * int(epochs) - 1e-9))


def run_changes(history: pd.DataFrame, runs: pd.DataFrame, window: float = WINDOW) -> pd.DataFrame:
    """Per run: `start_epoch` (its last evaluated epoch at or before (1 - window) x epochs),
    `end_epoch` (its last evaluated epoch) and `change` = test error at end - at start (fraction;
    negative while still improving; NaN when no evaluation falls at or before the window's start)."""
    if not 0 < window < 1:
        raise ValueError(f"window: expected a fraction in (0, 1), found {window!r}")
    evaluated = history.dropna(subset=["test_error"])[["run_key", "epoch", "test_error"]]
    by_run = {key: h.sort_values("epoch") for key, h in evaluated.groupby("run_key")}
    rows = []
    for key, epochs in zip(runs["run_key"], runs["epochs"]):
        h = by_run.get(key)
        start = window_start(epochs, window)
        change, first, last = math.nan, math.nan, math.nan
        if h is not None and len(h):
            before = h[h["epoch"] <= start]
            last = int(h["epoch"].iloc[-1])
            if len(before) and last > int(before["epoch"].iloc[-1]):
                first = int(before["epoch"].iloc[-1])
                change = float(h["test_error"].iloc[-1] - before["test_error"].iloc[-1])
        rows.append({"run_key": key, "start_epoch": first, "end_epoch": last, "change": change})
    return pd.DataFrame(rows, columns=["run_key", "start_epoch", "end_epoch", "change"])


def convergence(
    history: pd.DataFrame, runs: pd.DataFrame, window: float = WINDOW, threshold: float = THRESHOLD
) -> pd.DataFrame:
    """Per cell (models.arms.CELL_KEY, as stats.table.prepare spells it; plus `variant` when the
    runs carry one): n (ok runs with a measured change), mean_change, sd_change, mean_abs_change,
    upper_abs_change (mean_abs_change + t(0.95, n - 1) sd / sqrt(n); NaN for one run), `moved`
    (runs whose |change| exceeds threshold; fractions throughout), `converged` (upper_abs_change <
    threshold), `unconverged` (measured but not shown converged) and `unknown` (no run's change
    could be measured)."""
    table = prepare(runs)
    table = table[table["ok"]].merge(run_changes(history, table, window), on="run_key", how="left")
    table["abs_change"] = table["change"].abs()
    table["moved"] = table["abs_change"] > threshold
    keys = [*CELL_KEY, "group"] + (["variant"] if "variant" in table else [])
    grouped = table.groupby(keys, sort=True)
    out = pd.DataFrame(
        {
            "n": grouped["change"].count(),
            "mean_change": grouped["change"].mean(),
            "sd_change": grouped["change"].std(ddof=1),
            "mean_abs_change": grouped["abs_change"].mean(),
            "sd_abs_change": grouped["abs_change"].std(ddof=1),
            "moved": grouped["moved"].sum(),
        }
    ).reset_index()
    n = out["n"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(n > 1, sps.t.ppf(CONFIDENCE, np.maximum(n - 1, 1)), np.nan)
        out["upper_abs_change"] = out["mean_abs_change"] + q * out["sd_abs_change"] / np.sqrt(n)
    out["unknown"] = out["n"] == 0
    out["converged"] = out["upper_abs_change"] < threshold
    out["unconverged"] = ~out["unknown"] & ~out["converged"]
    out["threshold"], out["window"] = threshold, window
    return out


def best_epoch(history: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table with `test_error` replaced by each run's lowest evaluated test error over
    its epochs, and `best_epoch` added. Choosing that epoch looks at the test set, so it is an
    optimistic number (the seed paper's figure was most likely read from its per-epoch test log);
    runs without history keep their final error."""
    evaluated = history.dropna(subset=["test_error"])
    best = evaluated.loc[
        evaluated.groupby("run_key")["test_error"].idxmin(), ["run_key", "epoch", "test_error"]
    ]
    best = best.rename(columns={"epoch": "best_epoch", "test_error": "best_error"})
    out = runs.merge(best, on="run_key", how="left")
    out["test_error"] = out["best_error"].fillna(out["test_error"])
    return out.drop(columns="best_error")
