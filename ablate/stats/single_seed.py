"""The seed paper's estimator, for every seed: how far could one seed have landed from the answer?

The paper reported one number: for each N of C_N, (e_baseline - e_cN_rep) / (e_baseline - e_cN)
from one seed's test errors, and the largest over N. `single_seed_shares` computes it for every
seed of a study, pairing the arms by seed number as that one seed did, and its distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate.errors import expect_one_of
from ablate.models.arms import Group
from ablate.stats.convergence import best_epoch
from ablate.stats.table import prepare

ERRORS = ("best", "final")  # best: each run's lowest evaluated test error (chosen on the test set)


@dataclass(frozen=True)
class SingleSeedShares:
    """per_seed: one row per (budget, repeat_structure, seed) with `share` (the largest over N),
    `group_order` (the N that gave it) and one `share_<group>` column per group (share_C4, ...);
    NaN where the seed's total gain (baseline - cN) is not positive, so the ratio does not measure
    a share.
    summary: one row per (budget, repeat_structure): n (seeds with a share), median, min, max,
    `at_or_above` (fraction of them >= threshold) and `undefined` (seeds without a share)."""

    per_seed: pd.DataFrame
    summary: pd.DataFrame
    error: str
    threshold: float


def _errors(runs: pd.DataFrame, history: pd.DataFrame | None, error: str) -> pd.DataFrame:
    expect_one_of("error", error, ERRORS)
    if error == "final":
        return runs
    if history is None or history.empty:
        raise ValueError('single_seed_shares: error = "best" needs the runs\' history, found none')
    return best_epoch(history, runs)


def single_seed_shares(
    runs: pd.DataFrame, history: pd.DataFrame | None = None, error: str = "best", threshold: float = 0.40
) -> SingleSeedShares:
    """The paper's one-seed share for every seed, and its distribution (see SingleSeedShares).

    runs: a runs table (as stats.decompose takes); history: history.csv's rows, needed for
    error = "best" (each run's lowest evaluated test error; "final": the last epoch's)."""
    table = prepare(_errors(runs, history, error))
    table = table[table["ok"]]
    rows = []
    for budget, at_budget in table.groupby("budget", sort=True):
        plain = at_budget[at_budget["arm"] == "plain"].set_index("seed")["test_error"]
        repeats = at_budget[at_budget["arm"] == "repeat"]
        for repeat_structure, controls in repeats.groupby("repeat_structure", sort=True):
            for seed in sorted(set(plain.index) & set(controls["seed"])):
                shares = {}  # Group -> the seed's share at that group
                for (kind, order), control in controls[controls["seed"] == seed].groupby(
                    ["group", "group_order"]
                ):
                    gcnn = at_budget[
                        (at_budget["arm"] == "gcnn")
                        & (at_budget["group_order"] == order)
                        & (at_budget["seed"] == seed)
                    ]
                    if gcnn.empty:
                        continue
                    den = plain[seed] - float(gcnn["test_error"].iloc[0])
                    num = plain[seed] - float(control["test_error"].iloc[0])
                    shares[Group(kind, order)] = num / den if den > 0 else math.nan
                if not shares:
                    continue
                defined = {g: v for g, v in shares.items() if np.isfinite(v)}
                best = max(defined, key=defined.get) if defined else None
                row = {"budget": budget, "repeat_structure": repeat_structure, "seed": int(seed)}
                row.update({f"share_{g.label}": v for g, v in shares.items()})
                row["share"] = defined[best] if best else math.nan
                row["group_order"] = best.order if best else 0
                rows.append(row)
    per_seed = pd.DataFrame(rows)
    return SingleSeedShares(per_seed, _summary(per_seed, threshold), error, threshold)


def _summary(per_seed: pd.DataFrame, threshold: float) -> pd.DataFrame:
    columns = ["budget", "repeat_structure", "n", "median", "min", "max", "at_or_above", "undefined"]
    if per_seed.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (budget, repeat_structure), group in per_seed.groupby(["budget", "repeat_structure"], sort=True):
        shares = group["share"].to_numpy(dtype=float)
        defined = shares[np.isfinite(shares)]
        rows.append(
            {
                "budget": budget,
                "repeat_structure": repeat_structure,
                "n": len(defined),
                "median": float(np.median(defined)) if len(defined) else math.nan,
                "min": float(defined.min()) if len(defined) else math.nan,
                "max": float(defined.max()) if len(defined) else math.nan,
                "at_or_above": float(np.mean(defined >= threshold)) if len(defined) else math.nan,
                "undefined": int(len(shares) - len(defined)),
            }
        )
    return pd.DataFrame(rows, columns=columns)
