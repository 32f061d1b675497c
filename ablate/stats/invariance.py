"""Invariance per design: each arm's fraction of test predictions changed under the exact
transformations of the design's group (runs.csv's invariance_<label> columns) and under turns by
random angles; whether an arm learned part of the symmetry (its gap to the plain arm, with
intervals and Holm); and what test-time averaging over the design's group does to each arm."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.models.arms import GROUPED_ARMS, Design, Group
from ablate.models.groups import INVARIANCE_COLUMNS
from ablate.stats.multiple import holm
from ablate.stats.table import prepare

LEGACY_COLUMN = "invariance_error"  # before wave 5: a 90-degree turn (and the mirror for D_N), every arm


def design_invariance(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per ok run and group of its budget's designs (a plain run once per group: C2, C4
    and C8 of a sweep read their own columns): run_key, budget, arm, group (the design's, a label),
    repeat_structure, seed, `exact` (fraction changed under the design group's exact
    transformations; NaN for a group with none, e.g. C3), `any` (under a turn by a random angle)
    and `legacy` (the row predates the per-group columns: `exact` is its invariance_error, a
    90-degree turn with the mirror for D_N, whatever the design's group)."""
    prepared = prepare(runs)
    ok = prepared[prepared["ok"]]
    if "run_key" not in ok:  # a table of your own may not name its runs
        ok = ok.assign(run_key=ok.index.astype(str))
    designs = _design_groups(ok)
    present = [c for c in INVARIANCE_COLUMNS if c in ok]
    recorded = ok[LEGACY_COLUMN].notna() if LEGACY_COLUMN in ok else pd.Series(False, index=ok.index)
    legacy = (ok[present].isna().all(axis=1) if present else True) & recorded
    frames = []
    for budget, group in designs:
        mine = ok[Design(budget, group).rows(ok, any_control=True)]
        column = group.invariance_column
        exact = mine[column] if column and column in mine else pd.Series(math.nan, index=mine.index)
        if legacy.any():
            exact = np.where(legacy[mine.index], mine[LEGACY_COLUMN], exact)
        frames.append(
            mine[["run_key", "budget", "arm", "repeat_structure", "seed"]].assign(
                group=group.label,
                exact=exact.astype(float),
                any=mine.get("invariance_error_any", math.nan),
                legacy=legacy[mine.index].to_numpy(),
            )
        )
    columns = ["run_key", "budget", "arm", "repeat_structure", "seed", "group", "exact", "any", "legacy"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


COMPARED = (
    "repeat",
    "wrong",
    "wide",
    "augmented",
)  # arms whose learned invariance is set against the plain arm's


def invariance_gaps(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Did an arm learn part of the symmetry? Per design group of each budget, measure (`exact`:
    its group's exact transformations; `any`: turns by random angles) and arm of COMPARED present:
    `gap` = mean invariance error of the plain arm - the arm's (fractions; positive: the arm's
    predictions change less), its Welch t interval (`lo`, `hi` at `confidence`), the one-sided p
    that the arm is more invariant (`p`) and `p_holm` (Holm over the cells of that measure);
    n_plain, n_arm. Cells with fewer than 2 runs of either arm are left out, and so are rows that
    predate the per-group columns from the `exact` measure (theirs is a 90-degree turn alone, not
    the design group's transformations: set against a per-group column it would compare two
    different measurements); turns by random angles are measured alike in every version."""
    table = design_invariance(runs)
    rows = []
    for (budget, group, measure), cell in _cells(table):
        if measure == "exact":
            cell = cell[~cell["legacy"]]
        plain = cell.loc[cell["arm"] == "plain", measure].dropna().to_numpy(dtype=float)
        for arm in COMPARED:
            mine = cell.loc[cell["arm"] == arm, measure].dropna().to_numpy(dtype=float)
            if len(plain) < 2 or len(mine) < 2:
                continue
            rows.append(
                {"budget": budget, "group": group, "measure": measure, "arm": arm}
                | _welch(plain, mine, confidence)
            )
    out = pd.DataFrame(
        rows, columns=["budget", "group", "measure", "arm", "gap", "lo", "hi", "p", "n_plain", "n_arm"]
    )
    out["p_holm"] = math.nan
    for _, family in out.groupby("measure"):
        out.loc[family.index, "p_holm"] = holm(family["p"])
    return out


def _cells(table: pd.DataFrame):
    """(budget, group, measure) and that cell's rows of design_invariance."""
    for (budget, group), cell in table.groupby(["budget", "group"], sort=True):
        for measure in ("exact", "any"):
            yield (budget, group, measure), cell


def _welch(plain: np.ndarray, arm: np.ndarray, confidence: float) -> dict:
    """gap = mean(plain) - mean(arm), its Welch interval and the one-sided p that gap > 0."""
    gap = float(plain.mean() - arm.mean())
    v_p, v_a = np.var(plain, ddof=1) / len(plain), np.var(arm, ddof=1) / len(arm)
    se = math.sqrt(v_p + v_a)
    if se == 0:
        return {"gap": gap, "lo": gap, "hi": gap, "p": math.nan, "n_plain": len(plain), "n_arm": len(arm)}
    df = (v_p + v_a) ** 2 / (v_p**2 / (len(plain) - 1) + v_a**2 / (len(arm) - 1))
    q = float(sps.t.ppf(1 - (1 - confidence) / 2, df))
    p = float(sps.t.sf(gap / se, df))
    return {
        "gap": gap,
        "lo": gap - q * se,
        "hi": gap + q * se,
        "p": p,
        "n_plain": len(plain),
        "n_arm": len(arm),
    }


def orbit_errors(runs: pd.DataFrame) -> pd.DataFrame:
    """Test-time averaging over each design's group: per budget, design group and arm, the mean
    test error (`error`), the mean error of the logits averaged over the group's exact
    transformations (`orbit`, runs.csv's orbit_error_<label>) and `closed`: the share of the arm's
    gap to the G-CNN that averaging closes, 1 - (orbit - e_gcnn) / (error - e_gcnn) (NaN for the
    G-CNN itself, or where the gap is 0). Fractions; ok runs of rows that record the columns."""
    prepared = prepare(runs)
    ok = prepared[prepared["ok"]]
    rows = []
    for budget, group in _design_groups(ok):
        column = group.orbit_error_column
        mine = ok[Design(budget, group).rows(ok, any_control=True)]
        if not column or column not in mine or mine[column].isna().all():
            continue
        for arm, part in mine.groupby("arm", sort=False):
            error, orbit = float(part["test_error"].mean()), float(part[column].mean())
            rows.append(
                {
                    "budget": budget,
                    "group": group.label,
                    "arm": arm,
                    "error": error,
                    "orbit": orbit,
                    "n": len(part),
                }
            )
    out = pd.DataFrame(rows, columns=["budget", "group", "arm", "error", "orbit", "n"])
    gcnn = out[out["arm"] == "gcnn"].set_index(["budget", "group"])["error"]
    base = out.set_index(["budget", "group"]).index.map(lambda key: gcnn.get(key, math.nan))
    gap = out["error"] - np.asarray(base, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        closed = 1 - (out["orbit"] - np.asarray(base, dtype=float)) / gap
    out["closed"] = np.where((out["arm"] == "gcnn") | (gap == 0), math.nan, closed)
    return out


def _design_groups(ok: pd.DataFrame) -> list[tuple]:
    """(budget, design Group) of the grouped arms' rows, sorted."""
    grouped = ok[ok["arm"].isin(GROUPED_ARMS)]
    return sorted(
        {(b, Group(k, n)) for b, k, n in grouped[["budget", "group", "group_order"]].itertuples(index=False)}
    )
