"""A runs table your own training loop wrote, read as runs.csv's rows (docs/stats.md, "Your own
runs"), so the report and the statistics take it as they take a study's results."""

from __future__ import annotations

import math
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pandas as pd

from ablate.errors import ResultsError
from ablate.models.arms import GROUPED_ARMS, ROTATIONS
from ablate.results import RunRow, legacy_rows

# A runs table your own training loop wrote (docs/stats.md, "Your own runs"): these columns are
# required, the cell columns and the rest are optional.
USER_REQUIRED = ("arm", "seed", "test_error")
USER_OPTIONAL = ("budget", "group", "group_order", "repeat_structure", "status", "n_params", "macs", "n_test")


def user_runs(table: pd.DataFrame, source: str = "<runs>") -> pd.DataFrame:
    """A runs table of your own (one row per trained run: arm, seed, test_error as a fraction, and
    where it has them the USER_OPTIONAL columns, invariance ones included) as runs.csv's columns:
    budget 0 (one design per group and control) unless given, status "ok", group_order 4 for
    the grouped arms (C4) unless given; what was not measured stays empty. ResultsError (one line
    naming `source`, the column or row, what was expected and what was found) otherwise."""
    missing = [c for c in USER_REQUIRED if c not in table.columns]
    if missing:
        raise ResultsError(
            f"{source}: expected the columns {', '.join(USER_REQUIRED)} (docs/stats.md, 'Your own runs'), "
            f"missing {', '.join(missing)}"
        )
    frame = table.copy()
    frame["arm"] = frame["arm"].astype(str)
    arms = ("plain", *GROUPED_ARMS, "augmented")
    error = pd.to_numeric(frame["test_error"], errors="coerce")
    seed = pd.to_numeric(frame["seed"], errors="coerce")
    checks = [
        (~frame["arm"].isin(arms), "arm", f"one of {', '.join(arms)}", frame["arm"]),
        (seed.isna() | (seed != seed.round()), "seed", "an integer", frame["seed"]),
        (error.notna() & ~error.between(0, 1), "test_error", "a fraction in [0, 1] (percent / 100)", error),
    ]
    for bad, column, expected, found in checks:
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise ResultsError(
                f"{source}: row {row + 1}: {column}: expected {expected}, found {found.iloc[row]!r}"
            )
    defaults = {
        "budget": 0,
        "status": "ok",
        "repeat_structure": "",
        "group": ROTATIONS,
        "dataset": Path(source).name,
    }
    for column, value in defaults.items():
        if column not in frame:
            frame[column] = value
    if "group_order" not in frame:
        frame["group_order"] = np.where(frame["arm"].isin(GROUPED_ARMS), 4, 1)
    frame["seed"] = seed.astype(int)
    frame["run_key"] = [f"{source}:{i}" for i in range(len(frame))]
    frame["study"] = Path(source).stem
    for f in fields(RunRow):  # what the table does not say: the column's default, or empty
        if f.name not in frame:
            frame[f.name] = f.default if f.default is not MISSING else math.nan
    return legacy_rows(frame, RunRow)


def read_user_runs(path: str | Path) -> pd.DataFrame:
    """user_runs of a CSV file; ResultsError naming the file when it does not read."""
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise ResultsError(
            f"{path}: expected a CSV runs table, found {type(error).__name__}: {error}"
        ) from None
    return user_runs(table, str(path))
