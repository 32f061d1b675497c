"""What the training histories say: is a cell's test error still moving at the end of training
(the convergence check), and each run's best-epoch test error.

A share measured before convergence partly measures how fast each arm learns. For each run, the
change in test error over the last `window` of its epochs (from history.csv); per cell (budget,
arm, N, repeat structure) the mean change over its ok runs, flagged when its size exceeds
`threshold` (in either direction: still falling, or rising again).
"""

from __future__ import annotations

import math

import pandas as pd

from ablate.models.arms import CELL_KEY, GROUPED_ARMS, Design, Group
from ablate.stats.table import prepare

WINDOW = 0.2  # the last 20% of a run's epochs
THRESHOLD = 0.005  # 0.5 percentage points of test error


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
    runs carry one): n (ok runs with a measured change), mean_change, sd_change (fractions),
    `unconverged` (|mean_change| > threshold) and `unknown` (no run's change could be measured)."""
    table = prepare(runs)
    table = table[table["ok"]].merge(run_changes(history, table, window), on="run_key", how="left")
    keys = [*CELL_KEY, "group"] + (["variant"] if "variant" in table else [])
    grouped = table.groupby(keys, sort=True)["change"]
    out = pd.DataFrame(
        {"n": grouped.count(), "mean_change": grouped.mean(), "sd_change": grouped.std(ddof=1)}
    ).reset_index()
    out["unknown"] = out["n"] == 0
    out["unconverged"] = ~out["unknown"] & (out["mean_change"].abs() > threshold)
    out["threshold"], out["window"] = threshold, window
    return out


def unconverged_cells(conv: pd.DataFrame, budget=None) -> list[str]:
    """Labels ('budget 5,000 repeat (matched)') of the flagged cells, optionally of one budget."""
    flagged = conv[conv["unconverged"]]
    if budget is not None:
        flagged = flagged[flagged["budget"] == budget]
    labels = []
    for r in flagged.itertuples():
        group = f" {Group(r.group, r.group_order).label}" if r.arm in GROUPED_ARMS else ""
        what = getattr(r, "variant", None) or r.arm + group
        labels.append(f"{Design(r.budget).label} {what} ({100 * r.mean_change:+.1f} pts)")
    return labels


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
