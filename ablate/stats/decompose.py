"""The per-budget decomposition of the G-CNN's gain.

For each budget the G-CNN's gain over the plain CNN splits as

    gain_total = e_plain - e_gcnn = (e_plain - e_repeat) + (e_repeat - e_gcnn)
                                  =       gain_rep       +       gain_eq

and the repetition share is s = gain_rep / gain_total (equivariance share 1 - s). Gains, tests
and shares are on the analysis scale (`scale`); per-arm errors are always fractions.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.models.arms import Design
from ablate.stats.controls import control_columns, holm_controls
from ablate.stats.gain_tests import gain_tests
from ablate.stats.multiple import holm
from ablate.stats.ratio import (
    bootstrap_interval,
    delta_interval,
    fieller_interval,
    identifiable,
    quantile,
    ratio_moments,
)
from ablate.stats.table import DECOMPOSED, GAINS, Cell, arm_stats, cells, prepare

MIN_BOOT_SEEDS = 10  # below this the bootstrap interval under-covers (0.75-0.90 at 3-5 seeds)
SHARE_DERIVED = ("share_rep", "fieller_kind", "boot_method")  # prefixes blanked when not identifiable


def _share_columns(cell: Cell, paired: bool, confidence: float, n_boot: int, seed: int) -> dict:
    """Share, its delta / Fieller / bootstrap intervals and the identifiability flag of one cell."""
    m = ratio_moments([cell], paired)
    q = quantile(m, confidence)
    row: dict = {"share_rep_point": m.share, "share_df": m.df, "identifiable": identifiable(m, confidence)}
    row["share_rep"] = m.share
    lo, hi = delta_interval(m.num, m.den, m.var_num, m.var_den, m.cov, q)
    if hi - lo <= 0:  # no spread: never a zero-width interval
        lo, hi = math.nan, math.nan
    row["share_rep_lo_delta"], row["share_rep_hi_delta"] = lo, hi
    lo, hi, kind = fieller_interval(m.num, m.den, m.var_num, m.var_den, m.cov, q)
    row["share_rep_lo_fieller"], row["share_rep_hi_fieller"], row["fieller_kind"] = lo, hi, kind
    fewest = min(cell.n.values())
    if n_boot <= 0:
        boot = (math.nan, math.nan, "skipped")
    elif fewest < MIN_BOOT_SEEDS:
        boot = (math.nan, math.nan, f"skipped: fewer than {MIN_BOOT_SEEDS} seeds per arm")
    else:
        boot = bootstrap_interval(cell.y, paired, confidence, n_boot, seed)
    row["share_rep_lo_boot"], row["share_rep_hi_boot"], row["boot_method"] = boot
    if not row["identifiable"]:  # blank every share-derived column; share_rep_point keeps the ratio
        blank = [k for k in row if k.startswith(SHARE_DERIVED) and k != "share_rep_point"]
        row.update({k: None if isinstance(row[k], str) else math.nan for k in blank})
    row["share_eq"] = 1 - row["share_rep"]
    return row


def _augmentation_columns(cell: Cell, paired: bool, confidence: float) -> dict:
    """gain_aug = e_plain - e_augmented with its one-sided test, and share_aug: the share of the
    G-CNN's gain that augmentation recovers, gain_aug / gain_total, with its delta interval."""
    t_p, _, _ = gain_tests(cell.y["plain"], cell.y["augmented"], paired, 0, 0, confidence)
    m = ratio_moments([cell], paired, numerator=("plain", "augmented"))
    row = {"gain_aug": m.num, "p_aug_raw": t_p, "share_aug": math.nan, "share_aug_lo": math.nan}
    row["share_aug_hi"] = math.nan
    if identifiable(m, confidence):
        lo, hi = delta_interval(m.num, m.den, m.var_num, m.var_den, m.cov, quantile(m, confidence))
        row.update(share_aug=m.share, share_aug_lo=lo, share_aug_hi=hi)
    return row


def share_interval(
    plain, repeat, gcnn, confidence: float = 0.95, paired: bool = False, n_boot: int = 0, seed: int = 0
) -> dict:
    """The repetition share of three arrays of per-seed test errors and its intervals, as
    `decompose` gives them for one design, without a runs table: your own training loop's errors.

    plain, repeat, gcnn: (n_plain,), (n_repeat,), (n_gcnn,) test errors (fractions or points: the
    share is a ratio, the gains are in the arrays' unit), at least 2 each; paired=True needs equal
    lengths, position i being seed i in every arm. Returns share_rep (gain_rep / gain_total),
    share_rep_lo_delta / _hi_delta (delta method), share_rep_lo_fieller / _hi_fieller and
    fieller_kind, share_rep_lo_boot / _hi_boot and boot_method (n_boot resamples; skipped at 0 or
    below MIN_BOOT_SEEDS), share_df, identifiable (when False every share column is NaN and
    share_rep_point keeps the ratio), share_eq, and gain_total, gain_rep, gain_eq, n_plain,
    n_repeat, n_gcnn. ValueError naming the arm for fewer than 2 values or a non-finite one."""
    arrays = {"plain": plain, "repeat": repeat, "gcnn": gcnn}
    y = {}
    for arm, values in arrays.items():
        x = np.asarray(values, dtype=float).ravel()
        if len(x) < 2 or not np.isfinite(x).all():
            raise ValueError(
                f"share_interval: {arm}: expected at least 2 finite test errors, found {values!r}"
            )
        y[arm] = x
    if paired and len({len(x) for x in y.values()}) > 1:
        raise ValueError(
            f"share_interval: paired arms need equal lengths, found {[len(x) for x in y.values()]}"
        )
    seeds = {arm: np.arange(len(x)) for arm, x in y.items()}
    cell = Cell(Design(None), y, y, dict.fromkeys(y, 0), seeds)
    row = _share_columns(cell, paired, confidence, n_boot, seed)
    means = {arm: float(x.mean()) for arm, x in y.items()}
    for gain, (worse, better) in GAINS.items():
        row[f"gain_{gain}"] = means[worse] - means[better]
    return row | {f"n_{arm}": len(x) for arm, x in y.items()}


def decompose(
    runs: pd.DataFrame,
    paired: bool = False,
    confidence: float = 0.95,
    n_boot: int = 2000,
    n_perm: int = 5000,
    seed: int = 0,
    scale: str = "points",
) -> pd.DataFrame:
    """One row per budget: arm errors, gains, one-sided tests (Holm-adjusted) and share intervals.

        runs: columns arm, budget, seed, test_error (fraction), status; only status "ok" runs count
        (`dropped_<arm>` counts the others). scale: "points" (error fractions), "log" (gains are log
        error ratios: relative error reductions) or "logit". paired=True pairs arms by seed and uses
        only seeds ok in all three arms, everywhere (`n_pairs`; a StatsWarning names dropped seeds).
        p-values (`p_total`, `p_rep`, `p_eq`) are Welch (or paired) t-tests, Holm over all budgets and
        gains; `p_*_perm` permutation tests, NaN where even the smallest attainable p
        (`p_perm_min`) cannot reach 1 - confidence. One row per design: budget, `group_order` (N of C_N;
        the plain arm is shared across N) and `repeat_structure`. With an augmented arm: `gain_aug`,
        `p_aug` (its own Holm family) and `share_aug` (with `_lo`, `_hi`). With a wrong-group or wide
    arm: stats.controls' columns (the sharing-structure and symmetry shares). `identifiable`:
        D^2 / Var D > q^2 (Fieller bounded); otherwise every share column is blank and
        `share_rep_point` keeps the ratio. Bootstrap: only with >= 10 seeds per arm. `degenerate`: some
        arm has no spread (tests of two such arms and zero-width intervals are blank). n_perm = 0 skips
        the permutation tests, n_boot = 0 the bootstrap.
    """
    groups = cells(prepare(runs, scale), paired)
    rows = []
    for index, cell in enumerate(groups):
        row: dict = cell.design.columns
        row.update(scale=scale, paired=paired)
        if paired:
            row["n_pairs"] = cell.n["plain"]
        row.update(_arm_columns(cell, confidence))
        row.update(_gain_columns(cell, paired, confidence, n_perm, seed + index))
        row["rel_gain"] = (row["err_plain"] - row["err_gcnn"]) / row["err_plain"]
        row.update(_share_columns(cell, paired, confidence, n_boot, seed + index))
        if "augmented" in cell.y:
            row.update(_augmentation_columns(cell, paired, confidence))
        row.update(control_columns(cell, paired, confidence, row["identifiable"]))
        rows.append(row)
    if any("p_aug_raw" in row for row in rows):  # its own Holm family: the three gains stay as they are
        adjusted = holm([row.get("p_aug_raw", math.nan) for row in rows])
        for row, value in zip(rows, adjusted):
            row["p_aug"] = float(value)
    holm_controls(rows)
    for suffix in ("", "_perm"):
        _holm_family(rows, suffix)
    return pd.DataFrame(rows)


def _arm_columns(cell: Cell, confidence: float) -> dict:
    """err_<arm> (mean), sd, se, n, its t-interval (_lo, _hi) and dropped_<arm> per arm of a cell,
    and `degenerate` (some decomposition arm has no spread)."""
    row = {}
    for arm in cell.y:
        s = arm_stats(cell.errors[arm], confidence)
        row.update({f"err_{arm}": s["mean"], f"sd_{arm}": s["sd"], f"se_{arm}": s["se"], f"n_{arm}": s["n"]})
        row.update({f"err_{arm}_lo": s["lo"], f"err_{arm}_hi": s["hi"], f"dropped_{arm}": cell.dropped[arm]})
    row["degenerate"] = any(np.ptp(cell.y[arm]) == 0 for arm in DECOMPOSED)
    return row


def _gain_columns(cell: Cell, paired: bool, confidence: float, n_perm: int, seed: int) -> dict:
    """gain_<gain> on the analysis scale with its raw t-test and permutation p-values, and the
    smallest attainable permutation p (p_perm_min, the least favourable gain)."""
    means = {arm: float(cell.y[arm].mean()) for arm in DECOMPOSED}
    row = {"p_perm_min": 0.0}
    for gain, (worse, better) in GAINS.items():
        row[f"gain_{gain}"] = means[worse] - means[better]
        t_p, perm_p, smallest = gain_tests(cell.y[worse], cell.y[better], paired, n_perm, seed, confidence)
        row[f"p_{gain}_raw"], row[f"p_{gain}_perm_raw"] = t_p, perm_p
        row["p_perm_min"] = max(row["p_perm_min"], smallest)
    return row


def _holm_family(rows: list[dict], suffix: str) -> None:
    """p_<gain><suffix>: Holm over every design's three gains, each distinct test counted once
    (the designs of one budget and group share the plain and G-CNN arms, so their total-gain test
    is one test, not one per repeat control)."""
    tests: dict[tuple, float] = {}  # a test's identity -> its raw p
    where = []  # per row and gain, the identity of its test
    for index, row in enumerate(rows):
        keys = []
        for gain in GAINS:
            p = row[f"p_{gain}{suffix}_raw"]
            shared = gain == "total"
            key = (gain, row["budget"], row["group_order"], p) if shared else (gain, index)
            tests[key] = p
            keys.append(key)
        where.append(keys)
    adjusted = dict(zip(tests, holm(list(tests.values()))))
    for row, keys in zip(rows, where):
        row.update({f"p_{gain}{suffix}": float(adjusted.get(k, math.nan)) for gain, k in zip(GAINS, keys)})


def selection_interval(rows: pd.DataFrame, confidence: float = 0.95) -> tuple[float, float, int]:
    """(lo, hi, K): the delta interval of the largest of the K identifiable shares in `rows`
    (decompose rows), widened to Sidak's simultaneous level confidence^(1/K) for the family, so it
    covers the selected design's true share with at least `confidence` whichever design the
    maximum picks (Sidak's inequality holds for any correlation of the K estimates, e.g. a shared
    plain arm). The per-design intervals in the table stay unadjusted. K = 1: the plain interval."""
    best = largest_share(rows, confidence)
    if best is None:
        return math.nan, math.nan, 0
    return best["share_rep_lo_adjusted"], best["share_rep_hi_adjusted"], best["n_budgets"]


def largest_share(table: pd.DataFrame, confidence: float = 0.95) -> dict | None:
    """The identifiable row with the largest repetition share (the paper's "up to X%"), with
    `n_budgets` (K: how many identifiable rows it was selected from) and its selection-adjusted
    interval (`share_rep_lo_adjusted`, `share_rep_hi_adjusted`: see selection_interval); None when
    there is none. The maximum of K noisy shares is biased upward: report it with K stated."""
    shown = table.loc[table["identifiable"].astype(bool)]
    if shown.empty:
        return None
    best, k = shown.loc[shown["share_rep"].astype(float).idxmax()].to_dict(), len(shown)
    q = float(sps.t.ppf(1 - (1 - confidence) / 2, best["share_df"]))
    q_k = float(sps.t.ppf(1 - (1 - confidence ** (1 / k)) / 2, best["share_df"]))
    half = (best["share_rep_hi_delta"] - best["share_rep_lo_delta"]) / 2 * q_k / q
    adjusted = {
        "share_rep_lo_adjusted": best["share_rep"] - half,
        "share_rep_hi_adjusted": best["share_rep"] + half,
    }
    return {**best, **adjusted, "n_budgets": k, "n_budgets_all": len(table)}


def point_shares(runs: pd.DataFrame) -> pd.DataFrame:
    """Per design, the repetition share of mean test errors with no interval and no
    identifiability rule, (plain - repeat) / (plain - gcnn): how the seed paper computed its
    shares, from any number of seeds (one included). Columns: budget, group_order,
    repeat_structure, n (fewest seeds of an arm), share_rep."""
    rows = []
    for cell in cells(prepare(runs), paired=False, min_seeds=1):
        mean = {arm: float(cell.errors[arm].mean()) for arm in DECOMPOSED}
        den = mean["plain"] - mean["gcnn"]
        rows.append(
            {
                **cell.design.columns,
                "n": min(len(cell.errors[arm]) for arm in DECOMPOSED),
                "share_rep": (mean["plain"] - mean["repeat"]) / den if den else math.nan,
            }
        )
    return pd.DataFrame(rows)
