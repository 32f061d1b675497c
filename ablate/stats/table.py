"""Checking and arranging a runs table for the statistics: one place for every input error.

A runs table has one row per run with at least the columns in REQUIRED (and, for group-order
sweeps and several repeat controls, `group_order` and `repeat_structure`). `prepare` returns it
with numeric budgets, an `ok` flag, `y` (the test error on the analysis scale) and the cell key
columns (models.arms.CELL_KEY) spelled one way; `cells` groups it into one sample set per
design (models.arms.Design), the plain and augmented arms being shared by every design of their
budget.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ablate.errors import expect_one_of
from ablate.models.arms import (
    ARMS,
    CELL_KEY,
    DEFAULT_ARMS,
    DEFAULT_STRUCTURE,
    GROUPED_ARMS,
    NO_STRUCTURE,
    TRIVIAL_GROUP,
    TRIVIAL_ORDER,
    Design,
    Group,
)

REQUIRED = ("arm", "budget", "seed", "test_error", "status")
DECOMPOSED = DEFAULT_ARMS  # the arms the gain decomposition needs
OPTIONAL = ("augmented", "wrong", "wide")  # arms the decomposition reads when present
GAINS = {"total": ("plain", "gcnn"), "rep": ("plain", "repeat"), "eq": ("repeat", "gcnn")}
# the numerator (worse, better) of each share of gain_total = e_plain - e_gcnn: repetition, and,
# with the wrong-group arm, the sharing structure and the symmetry (stats.controls)
SHARES = {"rep": ("plain", "repeat"), "struct": ("repeat", "wrong"), "sym": ("wrong", "gcnn")}
SCALES = ("points", "log", "logit")
SCALE_LABELS = {
    "points": "test error (fraction; gains in percentage points)",
    "log": "log test error (gains are relative error reductions)",
    "logit": "logit test error",
}


class StatsWarning(UserWarning):
    """Something the statistics did with the data that a reader must know (one line)."""


def to_scale(error: np.ndarray, scale: str, n_test: np.ndarray | None = None) -> np.ndarray:
    """Test errors (fractions) on the analysis scale. log and logit clip to [eps, 1 - eps] with
    eps = half a test digit (0.5 / n_test) when n_test is known, else 1e-4, so 0% stays finite."""
    expect_one_of("scale", scale, SCALES)
    error = np.asarray(error, dtype=float)
    if scale == "points":
        return error
    eps = 0.5 / np.asarray(n_test, dtype=float) if n_test is not None else 1e-4
    clipped = np.clip(error, eps, 1 - eps)
    return np.log(clipped) if scale == "log" else np.log(clipped / (1 - clipped))


def prepare(runs: pd.DataFrame, scale: str = "points") -> pd.DataFrame:
    """The runs table checked and coerced: numeric budgets, known arms, one row per (budget, arm,
    seed), `ok` (status ok and a finite error) and `y` (the error on `scale`). ValueError names
    the first bad value."""
    missing = [c for c in REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"runs: expected columns {', '.join(REQUIRED)}, missing {', '.join(missing)}")
    out = runs.copy()
    budgets = pd.to_numeric(out["budget"], errors="coerce")
    bad = budgets.isna() | ~np.isfinite(budgets)
    if bad.any():
        raise ValueError(f"runs: budget: expected a number, found {out.loc[bad, 'budget'].iloc[0]!r}")
    out["budget"] = budgets.astype("int64") if (budgets == budgets.round()).all() else budgets
    unknown = out.loc[~out["arm"].isin(ARMS)]
    if len(unknown):
        row = unknown.iloc[0]
        raise ValueError(
            f"budget {row['budget']}, arm {row['arm']!r}: unknown arm (expected one of {', '.join(ARMS)})"
        )
    error = pd.to_numeric(out["test_error"], errors="coerce").to_numpy(dtype=float)
    out["ok"] = (out["status"] == "ok").to_numpy() & np.isfinite(error)
    n_test = out["n_test"].to_numpy(dtype=float) if "n_test" in out else None
    with np.errstate(invalid="ignore"):
        out["y"] = to_scale(error, scale, n_test)
    _cell_key_columns(out)
    counts = out.groupby([*CELL_KEY, "seed"]).size()
    twice = counts[counts > 1]
    if len(twice):
        (budget, arm, order, repeat_structure, seed), k = next(iter(twice.items()))
        kind = out.loc[out["arm"] == arm, "group"].iloc[0]
        design = Design(
            budget,
            Group(kind, order) if arm in GROUPED_ARMS and order else None,
            repeat_structure or DEFAULT_STRUCTURE,
        )
        raise ValueError(f"{design.label}, arm {arm}, seed {seed}: {k} rows; expected one row per run")
    return out


def _cell_key_columns(out: pd.DataFrame) -> None:
    """Fill group, group_order and repeat_structure in place with the one spelling of "not
    applicable" (models.arms): an arm without a group has C1 and one without a control
    NO_STRUCTURE; a repeat arm whose control the table does not record had the default one, and
    N is 0 where the table does not say."""
    grouped = out["arm"].isin(GROUPED_ARMS)
    orders = pd.to_numeric(out["group_order"], errors="coerce").fillna(0) if "group_order" in out else 0
    out["group_order"] = np.where(grouped, orders, TRIVIAL_ORDER).astype(int)
    kinds = out["group"].fillna("").astype(str) if "group" in out else ""
    out["group"] = np.where(grouped & (kinds != ""), kinds, TRIVIAL_GROUP.kind)
    repeat_structures = out["repeat_structure"].fillna("").astype(str) if "repeat_structure" in out else ""
    out["repeat_structure"] = np.where(out["arm"] == "repeat", repeat_structures, NO_STRUCTURE)
    missing = (out["arm"] == "repeat") & (out["repeat_structure"] == NO_STRUCTURE)
    out.loc[missing, "repeat_structure"] = DEFAULT_STRUCTURE


@dataclass
class Cell:
    """One design's samples for the decomposition (`design`: its budget, group, repeat control).

    errors / y: per arm, the ok runs' test errors (fractions) and the same on the analysis
    scale, ordered by seed; matched seeds only when paired. dropped: per arm, runs not ok. The
    augmented arm is there only when the table has it.
    """

    design: Design
    errors: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    dropped: dict[str, int]
    seeds: dict[str, np.ndarray]

    @property
    def budget(self) -> float:
        return self.design.budget

    @property
    def group_order(self) -> int:
        return self.design.group_order

    @property
    def repeat_structure(self) -> str:
        return self.design.repeat_structure

    @property
    def n(self) -> dict[str, int]:
        return {arm: len(x) for arm, x in self.y.items()}


def cells(prepared: pd.DataFrame, paired: bool, min_seeds: int = 2) -> list[Cell]:
    """Per budget (ascending), the decomposition arms' samples. Paired: only seeds ok in all three
    arms, with a StatsWarning naming the budget and the seeds dropped. ValueError when an arm has
    fewer than `min_seeds` ok seeds (or pairs)."""
    frame = prepared[prepared["arm"].isin(DECOMPOSED + OPTIONAL)].sort_values("seed")
    kinds = frame.loc[frame["arm"].isin(GROUPED_ARMS), "group"]
    kind = str(kinds.iloc[0]) if len(kinds) else TRIVIAL_GROUP.kind  # one group kind per study
    arrays = {}  # CELL_KEY -> (ok mask, seeds, errors, y)
    for key, group in frame.groupby(list(CELL_KEY), sort=False):
        arrays[key] = (
            group["ok"].to_numpy(dtype=bool),
            group["seed"].to_numpy(),
            group["test_error"].to_numpy(dtype=float),
            group["y"].to_numpy(dtype=float),
        )
    empty = (np.zeros(0, bool), np.zeros(0), np.zeros(0), np.zeros(0))
    out = []
    for budget in sorted(prepared["budget"].unique()):
        designs = {(n, st) for b, a, n, st in arrays if b == budget and a == "repeat"}
        designs |= {(n, DEFAULT_STRUCTURE) for b, a, n, _ in arrays if b == budget and a == "gcnn"} - {
            (n, DEFAULT_STRUCTURE) for n, _ in designs
        }
        for order, repeat_structure in sorted(designs or {(0, DEFAULT_STRUCTURE)}):
            design = Design(budget, Group(kind, order) if order else None, repeat_structure)
            keys = {arm: design.cell_key(arm) for arm in DECOMPOSED + OPTIONAL}
            arms = [a for a in DECOMPOSED + OPTIONAL if a in DECOMPOSED or keys[a] in arrays]
            out.append(_cell(design, {a: arrays.get(keys[a], empty) for a in arms}, paired, min_seeds))
    return out


def _cell(design: Design, parts: dict, paired: bool, min_seeds: int) -> Cell:
    """One design's Cell from its arms' (ok, seeds, errors, y) arrays, after the checks."""
    where = design.label
    dropped = {arm: int((~ok).sum()) for arm, (ok, *_) in parts.items()}
    keep = {arm: ok for arm, (ok, *_) in parts.items()}
    if paired:
        seed_sets = [set(seeds[ok]) for ok, seeds, *_ in parts.values()]
        shared = set.intersection(*seed_sets)
        lost = sorted(set.union(*seed_sets) - shared)
        if len(shared) < min_seeds:
            raise ValueError(
                f"{where}, arms {'/'.join(parts)}: paired analysis needs at least "
                f"{min_seeds} seeds shared by all arms, found {len(shared)}"
            )
        if lost:
            warnings.warn(
                f"{where}: paired analysis uses the {len(shared)} seeds ok in every arm; "
                f"dropped seeds {', '.join(map(str, lost))}",
                StatsWarning,
                stacklevel=4,
            )
        keep = {arm: ok & np.isin(seeds, list(shared)) for arm, (ok, seeds, *_) in parts.items()}
    for arm in parts:
        n = int(keep[arm].sum())
        if n < min_seeds:
            what = "missing" if n == 0 else f"has {n} ok seed"
            raise ValueError(f"{where}, arm {arm}: {what}; expected at least {min_seeds} ok seeds per arm")
    return Cell(
        design,
        {arm: parts[arm][2][keep[arm]] for arm in parts},
        {arm: parts[arm][3][keep[arm]] for arm in parts},
        dropped,
        {arm: parts[arm][1][keep[arm]] for arm in parts},
    )


def arm_stats(x: np.ndarray, confidence: float) -> dict[str, float]:
    """n, mean, sd, se and t-interval (lo, hi) of one arm's values; NaN spread for n = 1."""
    from scipy import stats as sps

    n, mean = len(x), float(np.mean(x))
    sd = float(np.std(x, ddof=1)) if n > 1 else math.nan
    se = sd / math.sqrt(n) if n > 1 else math.nan
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * se if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "se": se, "lo": mean - half, "hi": mean + half}


def arm_summary(runs: pd.DataFrame, confidence: float = 0.95, by: str = "arm") -> pd.DataFrame:
    """One row per budget x arm (or x the column `by`, e.g. a model variant): n, mean, sd, se and a
    t-interval of the test error (fractions; ok runs only), and how many runs were dropped as not
    ok. One ok seed: NaN spread; none: absent."""
    prepared = prepare(runs)
    rows = []
    for (budget, key), group in prepared.groupby(["budget", by], sort=True):
        ok = group.loc[group["ok"], "test_error"].to_numpy(dtype=float)
        if len(ok):
            stats = arm_stats(ok, confidence)
            rows.append({"budget": budget, by: key, **stats, "dropped": int((~group["ok"]).sum())})
    return pd.DataFrame(rows, columns=["budget", by, "n", "mean", "sd", "se", "lo", "hi", "dropped"])


def complete_budgets(runs: pd.DataFrame, min_seeds: int = 2) -> list:
    """The budgets at which every design has at least `min_seeds` ok seeds of every arm."""
    prepared = prepare(runs)
    complete = []
    for budget in sorted(prepared["budget"].unique()):
        try:
            cells(prepared[prepared["budget"] == budget], paired=False, min_seeds=min_seeds)
        except ValueError:
            continue
        complete.append(budget)
    return complete
