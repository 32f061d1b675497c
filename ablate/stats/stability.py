"""Is the share itself still moving at the end of training? The convergence of the estimand.

Single runs at a fixed learning-rate floor fluctuate from epoch to epoch forever, so asking
whether each run stops moving (stats.convergence) measures noise that more seeds never remove.
The package reports a share, a ratio of arm means over seeds, and that is what is judged here:
per design, the share s(e) from the arm means of the test errors at epoch e, at the window's
start (each run's last evaluation at or before stats.window_start) and at the end (its last
evaluation), and the change d = s(end) - s(start) with a delta-method interval.

Delta method: s = (m_plain - m_repeat) / (m_plain - m_gcnn) has gradient (1 - s, -1, s) / D in the
arm means; a run's start and end errors are paired, arms independent, so

    Var d = sum_arm [g1^2 var(end) + g0^2 var(start) - 2 g1 g0 cov(start, end)] / n_arm

with g0, g1 the gradient at the start and end means, and Welch-Satterthwaite degrees of freedom
over the arms' terms. A design is shown stable when the interval lies within +-STABLE_TOLERANCE;
otherwise "drift" when the interval excludes 0 (the share moved), else "too few seeds" (the
interval is too wide to tell).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.stats.convergence import WINDOW, window_start
from ablate.stats.decompose import share_interval
from ablate.stats.ratio import welch_df
from ablate.stats.table import DECOMPOSED, Cell, cells, prepare

STABLE_TOLERANCE = 0.05  # a share shown stable moves by less than 5 points over the window (95% CI)
VERDICTS = ("stable", "drift", "too few seeds", "unknown")


def errors_at(history: pd.DataFrame, runs: pd.DataFrame, window: float = WINDOW) -> pd.DataFrame:
    """Per run of `runs` (run_key, epochs): its test error at the window's start (its last evaluated
    epoch at or before window_start(epochs)) and at its last evaluated epoch, with both epochs;
    NaN where the history has no such evaluation."""
    evaluated = history.dropna(subset=["test_error"])[["run_key", "epoch", "test_error"]]
    by_run = {key: h.sort_values("epoch") for key, h in evaluated.groupby("run_key")}
    rows = []
    for key, epochs in zip(runs["run_key"], runs["epochs"]):
        h = by_run.get(key)
        row = {
            "run_key": key,
            "start_epoch": math.nan,
            "start": math.nan,
            "end_epoch": math.nan,
            "end": math.nan,
        }
        if h is not None and len(h):
            before = h[h["epoch"] <= window_start(int(epochs), window)]
            row.update(end_epoch=int(h["epoch"].iloc[-1]), end=float(h["test_error"].iloc[-1]))
            if len(before) and row["end_epoch"] > int(before["epoch"].iloc[-1]):
                row.update(
                    start_epoch=int(before["epoch"].iloc[-1]), start=float(before["test_error"].iloc[-1])
                )
        rows.append(row)
    return pd.DataFrame(rows, columns=["run_key", "start_epoch", "start", "end_epoch", "end"])


def _gradient(means: dict[str, float]) -> dict[str, float]:
    """d share / d arm mean at `means` (plain, repeat, gcnn)."""
    den = means["plain"] - means["gcnn"]
    share = (means["plain"] - means["repeat"]) / den
    return {"plain": (1 - share) / den, "repeat": -1 / den, "gcnn": share / den}


def change_interval(start: dict[str, np.ndarray], end: dict[str, np.ndarray], confidence: float) -> dict:
    """The share at start and end and the change d with its delta-method interval, from each arm's
    paired (start, end) errors (equal lengths per arm, at least 2)."""
    m0 = {a: float(start[a].mean()) for a in DECOMPOSED}
    m1 = {a: float(end[a].mean()) for a in DECOMPOSED}
    if m0["plain"] == m0["gcnn"] or m1["plain"] == m1["gcnn"]:
        return {
            "share_start": math.nan,
            "share_end": math.nan,
            "change": math.nan,
            "lo": math.nan,
            "hi": math.nan,
        }
    g0, g1 = _gradient(m0), _gradient(m1)
    parts, dfs = [], []
    for a in DECOMPOSED:
        cov = np.cov(start[a], end[a], ddof=1)
        parts.append(
            (g1[a] ** 2 * cov[1, 1] + g0[a] ** 2 * cov[0, 0] - 2 * g1[a] * g0[a] * cov[0, 1]) / len(end[a])
        )
        dfs.append(len(end[a]) - 1.0)
    s0 = (m0["plain"] - m0["repeat"]) / (m0["plain"] - m0["gcnn"])
    s1 = (m1["plain"] - m1["repeat"]) / (m1["plain"] - m1["gcnn"])
    half = float(sps.t.ppf(1 - (1 - confidence) / 2, welch_df(parts, dfs))) * math.sqrt(max(sum(parts), 0.0))
    return {"share_start": s0, "share_end": s1, "change": s1 - s0, "lo": s1 - s0 - half, "hi": s1 - s0 + half}


def verdict(lo: float, hi: float, tolerance: float = STABLE_TOLERANCE) -> str:
    """'stable' (the interval within +-tolerance), 'drift' (it excludes 0), 'too few seeds' (it is
    too wide to tell), 'unknown' (no interval)."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "unknown"
    if -tolerance <= lo and hi <= tolerance:
        return "stable"
    return "drift" if lo > 0 or hi < 0 else "too few seeds"


def share_stability(
    history: pd.DataFrame, runs: pd.DataFrame, window: float = WINDOW, tolerance: float = STABLE_TOLERANCE,
    confidence: float = 0.95,
) -> pd.DataFrame:  # fmt: skip
    """Per design (as stats.decompose's rows): the repetition share at the window's start and at
    the end of training from each arm's mean test error there (`share_start`, `share_end`, `change`
    with its delta-method `lo`, `hi`), the runs that have both (`n`: fewest of an arm), the epochs
    (`start_epoch`, `end_epoch`: the most common), and `verdict` (see module docstring;
    `tolerance` in fractions). Fractions throughout."""
    prepared = prepare(runs)
    at = errors_at(history, prepared[prepared["ok"]], window).set_index("run_key")
    rows = []
    for cell in cells(prepared, paired=False, min_seeds=1):
        mine = _paired_errors(cell, prepared, at)
        n = min(len(v[0]) for v in mine.values())
        row = {**cell.design.columns, "n": n}
        if n >= 2:
            row |= change_interval(
                {a: v[0] for a, v in mine.items()}, {a: v[1] for a, v in mine.items()}, confidence
            )
        epochs = at.loc[at.index.isin(prepared.loc[prepared["ok"], "run_key"])]
        row |= {
            "start_epoch": epochs["start_epoch"].mode().max(),
            "end_epoch": epochs["end_epoch"].mode().max(),
        }
        row["verdict"] = verdict(row.get("lo", math.nan), row.get("hi", math.nan), tolerance)
        rows.append(row)
    return pd.DataFrame(rows)


def _paired_errors(cell: Cell, prepared: pd.DataFrame, at: pd.DataFrame) -> dict[str, tuple]:
    """Per decomposition arm of the cell: its ok runs' (start errors, end errors) where both exist."""
    out = {}
    mine = prepared[cell.design.rows(prepared) & prepared["ok"]]
    for arm in DECOMPOSED:
        keys = mine.loc[mine["arm"] == arm, "run_key"]
        both = at.loc[at.index.isin(keys), ["start", "end"]].dropna()
        out[arm] = (both["start"].to_numpy(dtype=float), both["end"].to_numpy(dtype=float))
    return out


def share_trajectory(
    history: pd.DataFrame, runs: pd.DataFrame, window: float = 2 * WINDOW, confidence: float = 0.95
) -> pd.DataFrame:
    """Per design and evaluated epoch of the last `window` of training (twice the stability
    window: the window and as long before it): the repetition share from the arms' mean test
    errors at that epoch with its delta-method interval (arms independent; `share`, `lo`, `hi`,
    fractions), for the report's trajectory figures."""
    prepared = prepare(runs)
    ok = prepared[prepared["ok"]]
    evaluated = history.dropna(subset=["test_error"])[["run_key", "epoch", "test_error"]]
    end = int(evaluated["epoch"].max()) if len(evaluated) else 0
    last = sorted(e for e in evaluated["epoch"].unique() if e >= window_start(end, window))
    rows = []
    for cell in cells(prepared, paired=False, min_seeds=2):
        mine = ok[cell.design.rows(ok)]
        for epoch in last:
            at = evaluated[evaluated["epoch"] == epoch].merge(mine[["run_key", "arm"]], on="run_key")
            errors = {a: at.loc[at["arm"] == a, "test_error"].to_numpy(dtype=float) for a in DECOMPOSED}
            if min(len(e) for e in errors.values()) < 2:
                continue
            s = share_interval(errors["plain"], errors["repeat"], errors["gcnn"], confidence)
            rows.append({**cell.design.columns, "epoch": int(epoch), "share": s["share_rep_point"],
                         "lo": s["share_rep_lo_delta"], "hi": s["share_rep_hi_delta"]})  # fmt: skip
    return pd.DataFrame(rows)


def run_fluctuation(history: pd.DataFrame, runs: pd.DataFrame, window: float = WINDOW) -> float:
    """How much single runs move from one evaluation to the next over the last `window` of their
    epochs: the median over ok runs of the mean absolute change between consecutive evaluated
    epochs (a fraction; NaN without such evaluations). Noise, not a verdict."""
    prepared = prepare(runs)
    ok = prepared[prepared["ok"]].set_index("run_key")["epochs"]
    evaluated = history.dropna(subset=["test_error"])
    moves = []
    for key, h in evaluated[evaluated["run_key"].isin(ok.index)].groupby("run_key"):
        tail = h[h["epoch"] >= window_start(int(ok[key]), window)].sort_values("epoch")["test_error"]
        if len(tail) > 1:
            moves.append(float(np.abs(np.diff(tail.to_numpy(dtype=float))).mean()))
    return float(np.median(moves)) if moves else math.nan
