"""The only code that reads or writes results files: results/<study>/{runs,history}.csv,
the study copy, per-run claims and checkpoints, and superseded/{runs,history}.csv: the rows of
runs that were retrained (`--retrain`, `--force`), kept with their code fingerprints.

Writes are atomic (a temporary file in the same folder, then os.replace) and made under a
study-wide file lock, so concurrent runners never write a row twice or corrupt a file. A run
is claimed with a non-blocking per-run lock while it trains; the operating system releases
the claim if the process dies.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import tomli_w
import torch
from filelock import FileLock, Timeout

from ablate.errors import ResultsError, StudyError
from ablate.models.arms import DEFAULT_STRUCTURE, GROUPED_ARMS, NO_STRUCTURE, ROTATIONS
from ablate.models.groups import INVARIANCE_COLUMNS, ORBIT_ERROR_COLUMNS
from ablate.study.schema import Study, load_study


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


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


class Checkpoint:
    """A run's mid-training state in checkpoints/<run_key>.pt (atomic saves)."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict | None:
        """The saved state, or None. Only tensors, numbers, strings, lists and dicts are unpickled
        (weights_only): a torn file, or one that would run code, is removed with a notice and the
        run starts again."""
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:
            reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
            print(f"ablate: checkpoint {self.path} cannot be loaded safely ({reason}); restarting the run")
            self.path.unlink(missing_ok=True)
            return None

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        _atomic_write(self.path, buffer.getvalue())

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class RunBusy(Exception):
    """Another process holds the claim on this run."""


class StudyResults:
    """results/<study>/: runs.csv, history.csv, study.toml, checkpoints/, claims/."""

    def __init__(self, root: str | Path, study: str):
        self.dir = Path(root) / study
        self.runs_path = self.dir / "runs.csv"
        self.history_path = self.dir / "history.csv"
        self.superseded_dir = self.dir / "superseded"
        self._lock = FileLock(str(self.dir / ".lock"))

    def _ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def runs(self) -> pd.DataFrame:
        return read_runs(self.runs_path)

    def history(self) -> pd.DataFrame:
        return read_history(self.history_path)

    def superseded_runs(self) -> pd.DataFrame:
        """superseded/runs.csv: rows of runs.csv that a retraining replaced, as they were."""
        return read_runs(self.superseded_dir / "runs.csv")

    def superseded_history(self) -> pd.DataFrame:
        """superseded/history.csv: the history rows of the superseded runs."""
        return read_history(self.superseded_dir / "history.csv")

    def finished_keys(self, fingerprint: str | None = None, code: str | None = None) -> set[str]:
        """Run keys with a row in runs.csv; given the current data's fingerprint, only the rows made
        on that data (rows from before fingerprints were recorded count as made on it); given a
        code fingerprint, only the rows made by that code."""
        runs = self.runs()
        if fingerprint is not None:
            runs = runs[_fingerprints(runs).isin(["", fingerprint])]
        if code is not None:
            runs = runs[runs["code_fingerprint"].astype(str) == code]
        return set(runs["run_key"].astype(str))

    def other_data_rows(self, fingerprint: str) -> pd.DataFrame:
        """The rows of runs.csv that were made on data with another fingerprint."""
        runs = self.runs()
        return runs[~_fingerprints(runs).isin(["", fingerprint])]

    def checkpoint(self, run_key: str) -> Checkpoint:
        return Checkpoint(self.dir / "checkpoints" / f"{run_key}.pt")

    def put_driver_token(self, token: str) -> str:
        """Leave `token` in checkpoints/: a worker that sees it shares this folder (see
        sees_driver_token) and checkpoints here; returns the token."""
        (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (self.dir / "checkpoints" / token).touch()
        return token

    def sees_driver_token(self, token: str) -> bool:
        return (self.dir / "checkpoints" / token).exists()

    def remove_driver_token(self, token: str) -> None:
        (self.dir / "checkpoints" / token).unlink(missing_ok=True)

    def saved_study(self) -> Study | None:
        """The study copy saved beside the results, parsed and validated as a study file is;
        None when there is none. ResultsError (one line naming the file) when it is not valid."""
        path = self.dir / "study.toml"
        if not path.exists():
            return None
        try:
            return load_study(path)
        except StudyError as error:
            raise ResultsError(str(error)) from None

    def write_study(self, study: Study) -> None:
        """Keep a copy of the resolved study next to its results (read back by saved_study)."""
        self._ensure()
        with self._lock:
            _atomic_write(
                self.dir / "study.toml", tomli_w.dumps(study.model_dump(exclude_none=True)).encode()
            )

    @contextlib.contextmanager
    def claim(self, run_key: str, wait: bool = False) -> Iterator[None]:
        """Hold the run's claim while training it; RunBusy if another process holds it."""
        (self.dir / "claims").mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.dir / "claims" / f"{run_key}.lock"))
        try:
            lock.acquire(timeout=-1 if wait else 0)
        except Timeout:
            raise RunBusy(run_key) from None
        try:
            yield
        finally:
            lock.release()

    def record(self, run: RunRow, history: Sequence[HistoryRow], replace: bool = False) -> bool:
        """Add a finished run and its history atomically; False if the run is already there.

        With replace=True an existing row of the same run_key (and its history) is replaced, and
        the replaced rows move to superseded/ (nothing finished is lost). Anything but a RunRow
        and HistoryRows is refused (TypeError), so no column goes astray.
        """
        if not isinstance(run, RunRow) or not all(isinstance(h, HistoryRow) for h in history):
            raise TypeError(
                "StudyResults.record: expected a RunRow and a sequence of HistoryRow, found "
                f"{type(run).__name__} and {sorted({type(h).__name__ for h in history})}"
            )
        self._ensure()
        with self._lock:
            runs, past = self.runs(), self.history()
            key = run.run_key
            if key in set(runs["run_key"].astype(str)):
                if not replace:
                    return False
                mine = runs["run_key"].astype(str) == key
                self._supersede(runs[mine], past[past["run_key"].astype(str) == key])
                runs = runs[~mine]
            past = past[past["run_key"].astype(str) != key]  # left by an interrupted record
            new_history = pd.DataFrame([asdict(h) for h in history], columns=HISTORY_COLUMNS)
            past = new_history if past.empty else pd.concat([past, new_history], ignore_index=True)
            new_run = pd.DataFrame([asdict(run)], columns=RUN_COLUMNS)
            runs = new_run if runs.empty else pd.concat([runs, new_run], ignore_index=True)
            # history first: a run counts as finished once its runs.csv row exists
            _atomic_write(self.history_path, past.to_csv(index=False).encode())
            _atomic_write(self.runs_path, runs.to_csv(index=False).encode())
        return True

    def _supersede(self, runs: pd.DataFrame, history: pd.DataFrame) -> None:
        """Append replaced rows to superseded/{runs,history}.csv (under the study's lock); a row
        already there (same run key and finish time: an interrupted record) is not added twice."""
        self.superseded_dir.mkdir(parents=True, exist_ok=True)
        old_runs, old_history = self.superseded_runs(), self.superseded_history()
        stamps = set(zip(old_runs["run_key"].astype(str), old_runs["finished_at"].astype(str)))
        new = [
            (k, t) not in stamps for k, t in zip(runs["run_key"].astype(str), runs["finished_at"].astype(str))
        ]
        runs = runs[new]
        if runs.empty:
            return
        keys = set(runs["run_key"].astype(str))
        history = history[history["run_key"].astype(str).isin(keys)]
        for path, old, rows, columns in (
            (self.superseded_dir / "history.csv", old_history, history, HISTORY_COLUMNS),
            (self.superseded_dir / "runs.csv", old_runs, runs, RUN_COLUMNS),
        ):
            both = rows[columns] if old.empty else pd.concat([old, rows[columns]], ignore_index=True)
            _atomic_write(path, both.to_csv(index=False).encode())


def _fingerprints(runs: pd.DataFrame) -> pd.Series:
    """The data_fingerprint column as text, "" where a row has none."""
    return runs["data_fingerprint"].fillna("").astype(str)


def study_dirs(root: str | Path) -> list[Path]:
    """Study folders under a results root that hold a runs.csv (a study's superseded/ is none)."""
    root = Path(root)
    found = root.glob("*/runs.csv") if root.is_dir() else []
    return sorted(p.parent for p in found if p.parent.name != "superseded")
