"""The one driver loop of `python -m ablate.run`: claim -> submit -> collect -> record.

A cohort is seeds of one cell trained as one computation (training.cohort; how many: the
executor's `fusion`, training.fusion). The driver takes a cohort's claims, re-checks that its
runs are still unfinished, submits it to an executor (training.executors), collects what
returns, records it and prints a line per run; runs another process held are waited for in a
second pass. The driver is the only writer of
results/<study>/. Library code: it raises AblateErrors; the command line turns them into a line
and an exit code.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ablate.data.sources import Dataset
from ablate.errors import AblateError, StudyError
from ablate.models.spec import ArmSpec
from ablate.results import RunBusy, RunRow, StudyResults
from ablate.study.grid import RunSpec, expand_grid
from ablate.study.schema import Study
from ablate.training.executors import Executor, LocalExecutor
from ablate.training.runs import code_fingerprint, load_study_data


class RunsUnfinished(AblateError):
    """Some runs of a study did not finish (a cohort's executor failed); rerun to resume."""


def cohorts(
    todo: list[RunSpec], store: StudyResults, fusion: Callable[[ArmSpec, int], int]
) -> list[list[RunSpec]]:
    """The runs to train, in grid order, as cohorts of one (budget, arm) cell that resume from the
    same epoch (none, or their checkpoints'), of at most fusion(spec, runs of the cell) runs."""
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in todo:
        state = store.checkpoint(spec.run_key).load()
        epoch = state["epoch"] if state is not None else 0
        cells.setdefault((spec.budget, spec.model, epoch), []).append(spec)
    sizes = {cell: fusion(specs[0].model, len(specs)) for cell, specs in cells.items()}
    return [specs[i : i + sizes[c]] for c, specs in cells.items() for i in range(0, len(specs), sizes[c])]


def summary(row: RunRow) -> str:
    error = "diverged" if row.status != "ok" else f"test error {row.test_error:.2%}"
    return f"{row.arm:>6}  budget {row.budget:>7}  seed {row.seed:>3}  {error}  ({row.train_seconds:.0f} s)"


@dataclass
class Outcome:
    """What a drive did: runs recorded, runs that diverged, runs that failed with the reason, and
    the study's results folder."""

    trained: int = 0
    diverged: int = 0
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    folder: Path | None = None


def claim_cohort(
    store: StudyResults, cohort: list[RunSpec], claims: contextlib.ExitStack, wait: bool
) -> tuple[list[RunSpec], list[RunSpec]]:
    """Take the claims of a cohort's runs into `claims`: (runs now held, runs another process holds)."""
    mine, busy = [], []
    for spec in cohort:
        try:
            claims.enter_context(store.claim(spec.run_key, wait=wait))
            mine.append(spec)
        except RunBusy:
            busy.append(spec)  # another process trains it; come back when it lets go
    return mine, busy


class _Drive:
    """One drive's state: cohorts in flight (their run keys -> claims), the outcome, the bar.
    A run counts as finished when runs.csv holds it (made by the code fingerprint `code`, where
    given: --retrain); with `force` none does."""

    def __init__(
        self, store: StudyResults, executor: Executor, fingerprint: str, force: bool, code, on_epoch
    ):
        self.store, self.executor, self.fingerprint = store, executor, fingerprint
        self.force, self.code, self.on_epoch = force, code, on_epoch
        self.pending: dict[tuple[str, ...], contextlib.ExitStack] = {}
        self.outcome = Outcome(folder=store.dir)

    def collect_one(self, bar: tqdm) -> None:
        cohort, result = self.executor.collect()
        with self.pending.pop(tuple(s.run_key for s in cohort)):  # the claims are let go once recorded
            bar.update(len(cohort))
            if isinstance(result, str):
                self.outcome.failed.extend((spec, result) for spec in cohort)
                return
            for row, history in result:
                self.store.record(row, history, replace=True)
                self.store.checkpoint(row.run_key).remove()
                self.outcome.trained += 1
                self.outcome.diverged += row.status != "ok"
                tqdm.write(summary(row))

    def submit(self, cohort: list[RunSpec], wait: bool, bar: tqdm) -> list[RunSpec]:
        """Submit the cohort's runs that no other process holds; returns those another holds."""
        while len(self.pending) >= self.executor.capacity:
            self.collect_one(bar)
        claims = contextlib.ExitStack()
        mine, busy = claim_cohort(self.store, cohort, claims, wait)
        finished_now = self.store.finished_keys(self.fingerprint, self.code)
        mine = [s for s in mine if self.force or s.run_key not in finished_now]  # done meanwhile
        bar.update(len(cohort) - len(mine) - len(busy))
        if not mine:
            claims.close()
            return busy
        self.pending[tuple(s.run_key for s in mine)] = claims
        self.executor.submit(mine, self.on_epoch)
        return busy


def drive(
    todo: list[RunSpec],
    study: Study,
    data: Dataset,
    store: StudyResults,
    executor: Executor,
    force: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    code: str | None = None,
) -> Outcome:
    """Train `todo` via `executor` (claim, re-check, submit, collect, record); then wait for the
    runs another process held, and train those still unfinished."""
    state = _Drive(store, executor, data.meta["fingerprint"], force, code, on_epoch)
    bar = tqdm(total=len(todo), desc="runs", position=0)
    executor.start(study, data, store)
    try:
        waited = []
        size = data.x_train.shape[-1]
        fusion = functools.partial(executor.fusion, study, size=size)
        for cohort in cohorts(todo, store, fusion):
            waited += state.submit(cohort, False, bar)
        while state.pending:
            state.collect_one(bar)
        for spec in waited:  # held by another process: wait for it, train it if unfinished
            state.submit([spec], True, bar)
            while state.pending:
                state.collect_one(bar)
    finally:
        executor.stop()
        for claims in state.pending.values():
            claims.close()
        bar.close()
    return state.outcome


def check_data_unchanged(store: StudyResults, grid: list[RunSpec], fingerprint: str) -> None:
    """StudyError when finished runs of this grid were made on data with another fingerprint; a
    notice when runs.csv predates fingerprints (those rows are taken as made on this data)."""
    runs = store.runs()
    keys = {spec.run_key for spec in grid}
    legacy = runs["data_fingerprint"].fillna("").eq("") & runs["run_key"].isin(keys)
    if legacy.any():
        print(
            f"note: {store.runs_path} has {int(legacy.sum())} runs from before data fingerprints were "
            f"recorded; they are taken as made on the current data ({fingerprint})"
        )
    other = store.other_data_rows(fingerprint)
    other = other[other["run_key"].isin(keys)]
    if len(other):
        raise StudyError(
            f"{store.runs_path}: {len(other)} finished runs of this study were made on other data "
            f"(fingerprint {', '.join(sorted(set(other['data_fingerprint'])))}, the data here gives "
            f"{fingerprint}): train elsewhere with --results DIR, or retrain them on this data with --force"
        )


def _reuse(study: Study, store: StudyResults, grid: list[RunSpec], fingerprint: str) -> None:
    """Copy the grid's finished runs from the study's [run] reuse folders (once; printed)."""
    keys = {spec.run_key for spec in grid}
    for folder in study.run.reuse:
        path = Path(folder)
        if not (path / "runs.csv").exists():
            raise StudyError(f"run.reuse: expected a results folder with runs.csv, found none at {path}")
        copied = store.adopt(StudyResults(path.parent, path.name), keys, fingerprint)
        if copied:
            print(f"study {study.name}: reused {copied} finished runs of its grid from {path}")


def run_study(
    study: Study,
    force: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    source: str = "<study>",
    executor: Executor | None = None,
    grid: list[RunSpec] | None = None,
    retrain: bool = False,
    recorded: Study | None = None,
) -> Outcome:
    """Train every missing run of `study` (of `grid`, a part of its grid, where given); returns
    what was done. RunsUnfinished when some run did not finish, other AblateErrors for bad input.

    `executor`: LocalExecutor (default, this process) or ablate.training.ray.RayExecutor (one Ray
    task per cohort). Either way this process is the only writer of results/<study>/. `force`
    retrains finished runs, `retrain` those made by another code fingerprint (resumably: a rerun
    skips what this code finished); the rows they replace move to superseded/. `recorded`: the
    study as its file says, saved beside the results (default `study`; the command line's
    --seeds, --arms and --budgets narrow what trains, not what the study is)."""
    code = code_fingerprint()  # of the code as it is now, before anything could change it under the study
    grid = expand_grid(study, source) if grid is None else grid
    store = StudyResults(study.run.results, study.name)
    executor = executor or LocalExecutor()
    executor.check(study, source)
    data = load_study_data(study.data)
    fingerprint = data.meta["fingerprint"]
    if not force:
        check_data_unchanged(store, grid, fingerprint)
    current = code if retrain else None
    _reuse(study, store, grid, fingerprint)
    finished = store.finished_keys(fingerprint, current)
    todo = [s for s in grid if force or s.run_key not in finished]
    print(
        f"study {study.name}: {len(grid) - len(todo)} of {len(grid)} runs already finished; "
        f"training {len(todo)} on {executor.describe()}"
    )
    if not todo:
        return Outcome(folder=store.dir)
    store.write_study(recorded or study)
    if force:
        for spec in todo:
            store.checkpoint(spec.run_key).remove()
    outcome = drive(todo, study, data, store, executor, force, on_epoch, current)
    for spec, reason in outcome.failed:
        print(f"failed: {spec.arm} budget {spec.budget} seed {spec.seed} (run {spec.run_key}): {reason}")
    missing = [s for s in grid if s.run_key not in store.finished_keys(fingerprint, current)]
    if missing:
        raise RunsUnfinished(
            f"study {study.name}: {len(missing)} runs did not finish ({len(outcome.failed)} failed, reasons "
            f"above); rerun the same command to resume"
        )
    note = f"; {outcome.diverged} diverged (status = diverged in runs.csv)" if outcome.diverged else ""
    print(f"study {study.name}: all {len(grid)} runs finished{note}; results in {store.dir}")
    return outcome
