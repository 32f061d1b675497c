"""A study's results folder, results/<study>/: {runs,history}.csv (rows: results.rows), the
study copy, per-run claims and checkpoints, and superseded/{runs,history}.csv: the rows of runs
that were retrained (`--retrain`, `--force`), kept with their code fingerprints.

Writes are atomic (a temporary file in the same folder, then os.replace) and made under a
study-wide file lock, so concurrent runners never write a row twice or corrupt a file. A run
is claimed with a non-blocking per-run lock while it trains; the operating system releases
the claim if the process dies.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import tomli_w
import torch
from filelock import FileLock, Timeout

from ablate.errors import ResultsError, StudyError
from ablate.results.rows import HISTORY_COLUMNS, RUN_COLUMNS, HistoryRow, RunRow, read_history, read_runs
from ablate.study.schema import Study, load_study


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

    def adopt(self, other: StudyResults, run_keys: set[str], fingerprint: str) -> int:
        """Copy `other` study's finished rows (and history) of `run_keys` made on data with
        `fingerprint` that this folder does not hold yet; returns how many. The rows keep their
        study, code fingerprint, CPU and finish time: who made them stays on record."""
        theirs = other.runs()
        theirs = theirs[
            theirs["run_key"].astype(str).isin(run_keys) & _fingerprints(theirs).isin(["", fingerprint])
        ]
        if theirs.empty:
            return 0
        self._ensure()
        with self._lock:
            runs, past = self.runs(), self.history()
            new = theirs[~theirs["run_key"].astype(str).isin(set(runs["run_key"].astype(str)))]
            if new.empty:
                return 0
            keys = set(new["run_key"].astype(str))
            history = other.history()
            history = history[history["run_key"].astype(str).isin(keys)]
            past = past[~past["run_key"].astype(str).isin(keys)]  # left by an interrupted adoption
            both_history = (
                history[HISTORY_COLUMNS] if past.empty else pd.concat([past, history[HISTORY_COLUMNS]])
            )
            both_runs = (
                new[RUN_COLUMNS] if runs.empty else pd.concat([runs, new[RUN_COLUMNS]], ignore_index=True)
            )
            _atomic_write(self.history_path, both_history.to_csv(index=False).encode())
            _atomic_write(self.runs_path, both_runs.to_csv(index=False).encode())
        return len(new)

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
