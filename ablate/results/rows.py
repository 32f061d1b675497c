"""The rows of a study's results files: runs.csv's `RunRow` and history.csv's `HistoryRow` (one
schema each; docs/study.md documents every column), and reading those files as DataFrames, older
versions' files included (`legacy_rows` maps them to today's columns)."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import pandas as pd

from ablate.errors import ResultsError
from ablate.models.arms import DEFAULT_STRUCTURE, GROUPED_ARMS, NO_STRUCTURE, ROTATIONS
from ablate.models.groups import INVARIANCE_COLUMNS, ORBIT_ERROR_COLUMNS


@dataclass(frozen=True)
class RunRow:
    """One row of runs.csv: one finished run. docs/study.md's runs.csv table documents each field."""

    study: str
    run_key: str
    arm: str
    budget: int
    seed: int
    n_params: int
    macs: int
    group_order: int
    repeat_mode: str
    backbone: str
    learnable_widths: str
    physical_widths: str
    dataset: str
    n_train: int
    n_test: int
    epochs: int
    test_error: float
    invariance_error: float  # under its own group's exact transformations (before wave 5: a 90-degree turn,
    # and the mirror in a D_N study, for every arm)
    train_loss: float
    train_error: float
    train_seconds: float
    device: str
    status: str
    finished_at: str
    ablate_version: str
    torch_version: str
    escnn_version: str
    # added in wave 2: rows written before read back with the default
    data_fingerprint: str = ""
    fused: int = 1
    precision: str = "fp32"
    repeat_structure: str = NO_STRUCTURE  # the repeat arm's control, "" for other arms (see legacy_rows)
    invariance_error_any: float = math.nan
    model_name: str = ""  # a preset's model ('baseline', 'c4_rep', ...); empty for solved budgets
    # added in wave 3
    preset_width: float = 1.0  # a preset's width multiplier
    code_fingerprint: str = ""  # version + hash of the package's source files; "" before 0.2.0
    group: str = (
        ROTATIONS  # with group_order, the arm's group: C_N, D_N, C1 (trivial) for the arms without one
    )
    channels: int = 1  # input channels
    classes: int = 10  # classes
    # added in wave 4: a user's network ([models] builder)
    builder: str = ""  # its import path, "" for the built-in arms
    builder_source: str = ""  # hash of the file that defines it
    width: float = 0.0  # the width it was built at
    base_scale: float = 0.0  # the repeat twin's base channels per regular field
    compiled: bool = False  # its training steps went through torch.compile ([run] compile)
    # added in wave 5
    cpu: str = ""  # the CPU that trained it (training.machine.cpu_name: family, model, vector ISA)
    # fraction of test images whose class changes under some transformation of each subgroup of
    # the pixel grid's symmetries (models.groups.EXACT_GROUPS); a design reads its group's column
    invariance_C2: float = math.nan
    invariance_C4: float = math.nan
    invariance_D1: float = math.nan
    invariance_D2: float = math.nan
    invariance_D4: float = math.nan
    # the test error of the logits averaged over each subgroup's transformations (the identity
    # included): what test-time averaging over a design's group gives each arm
    orbit_error_C2: float = math.nan
    orbit_error_C4: float = math.nan
    orbit_error_D1: float = math.nan
    orbit_error_D2: float = math.nan
    orbit_error_D4: float = math.nan
    wrong_group: str = ""  # the wrong arm's own group ('D1'), the one its network is built on; "" for others


@dataclass(frozen=True)
class HistoryRow:
    """One row of history.csv: one epoch of one run."""

    study: str
    run_key: str
    arm: str
    budget: int
    seed: int
    epoch: int
    train_loss: float
    train_error: float
    test_error: float
    lr: float
    seconds: float


RUN_COLUMNS = [f.name for f in fields(RunRow)]
# the columns a run's final evaluation fills beside test_error: its own group's invariance, any
# angle's, and each subgroup's invariance and orbit-averaged error
INVARIANCE_FIELDS = ("invariance_error", "invariance_error_any", *INVARIANCE_COLUMNS, *ORBIT_ERROR_COLUMNS)
assert set(INVARIANCE_FIELDS) <= set(RUN_COLUMNS), "RunRow lacks a column of EXACT_GROUPS"
HISTORY_COLUMNS = [f.name for f in fields(HistoryRow)]


def _required(row_type: type) -> list[str]:
    """Columns a file must have: the fields without a default (later additions carry one)."""
    return [f.name for f in fields(row_type) if f.default is MISSING]


def _read_csv(path: Path, row_type: type) -> pd.DataFrame:
    """A results CSV as a DataFrame with every column of `row_type`; a file from before a column
    was added gets that column filled with the field's default."""
    columns = [f.name for f in fields(row_type)]
    if not path.exists():
        return pd.DataFrame(columns=columns)
    try:
        # text columns stay text: a run key or fingerprint of only digits must not turn into a number;
        # floats parse exactly (pandas' fast parser can be one ulp off, and each record rewrites)
        text = {f.name: str for f in fields(row_type) if f.type == "str"}
        frame = pd.read_csv(path, dtype=text, float_precision="round_trip")
    except Exception as error:
        raise ResultsError(
            f"{path}: expected a CSV written by ablate, found unreadable content "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    missing = [c for c in _required(row_type) if c not in frame.columns]
    if missing:
        raise ResultsError(
            f"{path}: expected the columns of an ablate {path.name}, missing {', '.join(missing)}"
        )
    return legacy_rows(frame, row_type)


def legacy_rows(frame: pd.DataFrame, row_type: type) -> pd.DataFrame:
    """Rows as this version writes them, from any earlier version's file: a column added later
    gets its field's default, empty text cells read as "", and the repeat arm's rows from
    before repeat controls were recorded get the control they had ("paper")."""
    added = [f.name for f in fields(row_type) if f.name not in frame.columns]
    for f in fields(row_type):
        if f.name in added:
            frame[f.name] = f.default
        elif f.type == "str":
            frame[f.name] = frame[f.name].fillna("")
        elif f.default is not MISSING:  # a later column left empty: its default
            frame[f.name] = frame[f.name].fillna(f.default)
    if "repeat_structure" in added:
        frame.loc[frame["arm"] == "repeat", "repeat_structure"] = DEFAULT_STRUCTURE
    if "group" in frame and "arm" in frame:  # before D1 existed a D_N study's plain arm said "D", order 1
        frame.loc[~frame["arm"].isin(GROUPED_ARMS), "group"] = ROTATIONS
    return frame


def read_runs(path: str | Path) -> pd.DataFrame:
    """A runs.csv as a DataFrame (one row per finished run); ResultsError if it is not ours."""
    return _read_csv(Path(path), RunRow)


def read_history(path: str | Path) -> pd.DataFrame:
    """A history.csv as a DataFrame (one row per run and epoch)."""
    return _read_csv(Path(path), HistoryRow)
