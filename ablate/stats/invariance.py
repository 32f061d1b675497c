"""Invariance per design: each arm's fraction of test predictions changed under the exact
transformations of the design's group (runs.csv's invariance_<label> columns) and under turns by
random angles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ablate.models.arms import GROUPED_ARMS, Design, Group
from ablate.models.groups import INVARIANCE_COLUMNS
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
    grouped = ok[ok["arm"].isin(GROUPED_ARMS)]
    designs = sorted(
        {(b, Group(k, n)) for b, k, n in grouped[["budget", "group", "group_order"]].itertuples(index=False)}
    )
    present = [c for c in INVARIANCE_COLUMNS if c in ok]
    recorded = ok[LEGACY_COLUMN].notna() if LEGACY_COLUMN in ok else pd.Series(False, index=ok.index)
    legacy = (ok[present].isna().all(axis=1) if present else True) & recorded
    frames = []
    for budget, group in designs:
        mine = ok[Design(budget, group).rows(ok, any_control=True)]
        column = group.invariance_column
        exact = mine[column] if column and column in mine else pd.Series(math.nan, index=mine.index)
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
