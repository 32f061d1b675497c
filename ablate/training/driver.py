"""The one driver loop of `python -m ablate.run`, and the local executor.

A run group is up to `fuse` seeds of one cell trained as one network (loop.fit_group). The
driver takes a group's claims, re-checks that its runs are still unfinished, submits it to an
executor, collects what returns, records it and prints a line per run; runs another process
held are waited for in a second pass. Executors differ only in how they submit and collect:
LocalExecutor trains in this process, ablate.training.ray.RayExecutor on a Ray cluster. The
driver is the only writer of results/<study>/.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import torch
from tqdm import tqdm

from ablate.data.sources import Dataset, load_dataset
from ablate.errors import StudyError
from ablate.models.spec import ArmSpec, count_macs
from ablate.results import Checkpoint, HistoryRow, RunBusy, RunRow, StudyResults
from ablate.study.grid import RunSpec, arm_train_config, expand_grid
from ablate.study.schema import DataSettings, Study
from ablate.training.compiled import training_tflop, use_compile
from ablate.training.loop import FitResult, build_model, fit_group, resolve_device, uses_bf16
from ablate.training.machine import cpu_name

# ArmSpec fields that are not runs.csv columns: the preset is named by `model_name` instead, and
# where a builder imports from is no part of a result
NOT_IN_RUNS = ("arm", "preset", "builder_folder")

Outputs = list[tuple[RunRow, list[HistoryRow]]]  # one (runs.csv row, history rows) per run of a group


def load_study_data(settings: DataSettings) -> Dataset:
    """The dataset a study's [data] section describes (on the CPU)."""
    return load_dataset(
        settings.source,
        settings.root,
        settings.seed,
        limit_train=settings.limit_train,
        limit_test=settings.limit_test,
        pad_to=settings.pad_to,
        test_rotations=settings.test_rotations,
        subset=settings.subset,
        pad=settings.pad,
        path=settings.path,
        size=settings.size,
        test_split=settings.test_split,
    )


def absolute_data_paths(study: Study) -> Study:
    """The study with [data] root and path made absolute, for workers in other directories."""
    update = {
        k: str(Path(v).expanduser().resolve()) for k in ("root", "path") if (v := getattr(study.data, k))
    }
    return study.model_copy(update={"data": study.data.model_copy(update=update)}) if update else study


def spec_columns(spec: ArmSpec) -> dict:
    """The runs.csv model columns of a spec: every ArmSpec field but NOT_IN_RUNS (widths as
    '16-24-32', None as ''), and the preset's model name."""
    columns = {}
    for f in fields(ArmSpec):
        if f.name in NOT_IN_RUNS:
            continue
        value = getattr(spec, f.name)
        value = getattr(value, "name", value)  # a [models.backbone] table's Backbone: its name
        columns[f.name] = "-".join(map(str, value)) if isinstance(value, tuple) else value
        columns[f.name] = "" if columns[f.name] is None else columns[f.name]
    return {**columns, "model_name": spec.model_name}


@functools.cache
def code_fingerprint() -> str:
    """'0.2.0+1a2b3c4d5e6f': the package version and a short hash of the package's own source
    files as installed (their paths and bytes), so a run says which code made it, in a checkout or
    not. Computed once per process."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{version('ablate')}+{digest.hexdigest()[:12]}"


def _ident(spec: RunSpec) -> dict:
    return {
        "study": spec.study,
        "run_key": spec.run_key,
        "arm": spec.arm,
        "budget": spec.budget,
        "seed": spec.seed,
    }


def _run_row(
    spec: RunSpec, macs: int, result: FitResult, data: Dataset, device, fused: int, bf16: bool
) -> RunRow:
    """The runs.csv row of a finished run: built by keyword in this one place."""
    last = result.history[-1] if result.history else {}
    return RunRow(
        **_ident(spec),
        **spec_columns(spec.model),
        macs=macs,
        dataset=data.meta["source"],
        n_train=data.meta["n_train"],
        n_test=data.meta["n_test"],
        epochs=len(result.history),
        test_error=result.test_error,
        invariance_error=result.invariance_error,
        invariance_error_any=result.invariance_error_any,
        train_loss=last.get("train_loss"),
        train_error=last.get("train_error"),
        train_seconds=round(result.train_seconds, 3),
        device=str(device),
        status=result.status,
        finished_at=datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        ablate_version=version("ablate"),
        torch_version=torch.__version__,
        escnn_version=version("escnn"),
        data_fingerprint=data.meta["fingerprint"],
        fused=fused,
        precision="bf16" if bf16 else "fp32",
        code_fingerprint=code_fingerprint(),
        compiled=result.compiled,
        cpu=cpu_name(),
    )


def train_group(
    specs: list[RunSpec],
    study: Study,
    data: Dataset,
    device: torch.device,
    checkpoints: list[Checkpoint | None],
    on_epoch: Callable[[dict], None] | None = None,
) -> Outputs:
    """Train (or resume from `checkpoints`) the runs of one cell as one group; returns each run's
    runs.csv row and history. Writes nothing but the checkpoints: the driver records."""
    models = [build_model(spec.model, spec.seed, device) for spec in specs]
    config = arm_train_config(study.train, specs[0].arm)
    mirror = specs[0].model.group == "D"  # D_N: the invariance check includes the mirror
    macs = count_macs(models[0], data.x_test.shape[-1], data.x_test.shape[1])
    work = training_tflop(macs, len(data.y_train), config.epochs, len(specs))
    seeds, compile = [s.seed for s in specs], use_compile(study.run.compile, device, work)
    results = fit_group(models, data, config, seeds, checkpoints, on_epoch, mirror=mirror, compile=compile)
    rows = [
        _run_row(s, macs, r, data, device, len(specs), uses_bf16(config, device))
        for s, r in zip(specs, results)
    ]
    return [
        (row, [HistoryRow(**_ident(s), **h) for h in r.history]) for row, s, r in zip(rows, specs, results)
    ]


def run_groups(todo: list[RunSpec], store: StudyResults, fuse: int) -> list[list[RunSpec]]:
    """The runs to train, in grid order, as groups of at most `fuse` runs of one (budget, arm)
    cell that resume from the same epoch (none, or their checkpoints')."""
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in todo:
        state = store.checkpoint(spec.run_key).load() if fuse > 1 else None
        epoch = state["epoch"] if state is not None else 0
        cells.setdefault((spec.budget, spec.model, epoch), []).append(spec)
    sizes = {cell: 1 if specs[0].model.builder else fuse for cell, specs in cells.items()}  # no fused form
    return [specs[i : i + sizes[c]] for c, specs in cells.items() for i in range(0, len(specs), sizes[c])]


def summary(row: RunRow) -> str:
    error = "diverged" if row.status != "ok" else f"test error {row.test_error:.2%}"
    return f"{row.arm:>6}  budget {row.budget:>7}  seed {row.seed:>3}  {error}  ({row.train_seconds:.0f} s)"


@dataclass
class Outcome:
    """What a drive did: runs that diverged, and runs that failed with the reason."""

    diverged: int = 0
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)


class Executor(Protocol):
    """How run groups get trained. `capacity`: groups in flight at once."""

    capacity: int

    def check(self, study: Study, source: str) -> None:
        """StudyError when the study cannot run here (before any data is loaded)."""

    def describe(self) -> str:
        """Where the runs train, for the first line of output, e.g. 'cpu'."""

    def fuse(self, study: Study) -> int:
        """Seeds per run group: [run].fuse_seeds, else the executor's default."""

    def start(self, study: Study, data: Dataset, store: StudyResults) -> None:
        """Get ready to train this study's groups (once, before the first submit)."""

    def submit(self, group: list[RunSpec], on_epoch: Callable[[dict], None] | None) -> None:
        """Start training a group whose claims the driver holds."""

    def collect(self) -> tuple[list[RunSpec], Outputs | str]:
        """One submitted group that ended: its outputs, or the one-line reason it failed."""

    def stop(self) -> None:
        """Cancel what is still in flight and let go of the executor's resources."""


def claim_group(
    store: StudyResults, group: list[RunSpec], claims: contextlib.ExitStack, wait: bool
) -> tuple[list[RunSpec], list[RunSpec]]:
    """Take the claims of a group's runs into `claims`: (runs now held, runs another process holds)."""
    mine, busy = [], []
    for spec in group:
        try:
            claims.enter_context(store.claim(spec.run_key, wait=wait))
            mine.append(spec)
        except RunBusy:
            busy.append(spec)  # another process trains it; come back when it lets go
    return mine, busy


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
    """Train `todo` via `executor` (claim, re-check, submit, collect, record); then wait for held
    runs. A run counts as finished when runs.csv holds it (made by the code fingerprint `code`,
    where given: --retrain); with `force` none does."""
    fingerprint, outcome = data.meta["fingerprint"], Outcome()
    pending: dict[tuple[str, ...], contextlib.ExitStack] = {}  # run keys of a group in flight -> its claims
    bar = tqdm(total=len(todo), desc="runs", position=0)

    def collect_one() -> None:
        group, result = executor.collect()
        with pending.pop(tuple(s.run_key for s in group)):  # the claims are let go once recorded
            bar.update(len(group))
            if isinstance(result, str):
                outcome.failed.extend((spec, result) for spec in group)
                return
            for row, history in result:
                store.record(row, history, replace=True)
                store.checkpoint(row.run_key).remove()
                outcome.diverged += row.status != "ok"
                tqdm.write(summary(row))

    def submit(group: list[RunSpec], wait: bool) -> list[RunSpec]:
        """Submit the group's runs that no other process holds; returns those another holds."""
        while len(pending) >= executor.capacity:
            collect_one()
        claims = contextlib.ExitStack()
        mine, busy = claim_group(store, group, claims, wait)
        finished_now = store.finished_keys(fingerprint, code)
        mine = [s for s in mine if force or s.run_key not in finished_now]  # done meanwhile
        bar.update(len(group) - len(mine) - len(busy))
        if not mine:
            claims.close()
            return busy
        pending[tuple(s.run_key for s in mine)] = claims
        executor.submit(mine, on_epoch)
        return busy

    executor.start(study, data, store)
    try:
        waited = []
        for group in run_groups(todo, store, executor.fuse(study)):
            waited += submit(group, wait=False)
        while pending:
            collect_one()
        for spec in waited:  # held by another process: wait for it, train it if unfinished
            submit([spec], wait=True)
            while pending:
                collect_one()
    finally:
        executor.stop()
        for claims in pending.values():
            claims.close()
        bar.close()
    return outcome


class LocalExecutor:
    """Run groups trained one after another in this process (the default)."""

    capacity = 1

    def check(self, study: Study, source: str) -> None:
        self.device = resolve_device(study.run.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise StudyError(
                f"{source}: run.device: expected an available CUDA device, found none "
                f'(use device = "cpu" or "auto")'
            )
        if study.run.threads:
            torch.set_num_threads(study.run.threads)

    def describe(self) -> str:
        return str(self.device)

    def fuse(self, study: Study) -> int:
        return study.run.fuse_seeds or (len(study.train.all_seeds) if self.device.type == "cuda" else 1)

    def start(self, study: Study, data: Dataset, store: StudyResults) -> None:
        self.study, self.data, self.store = study, data.to(self.device), store
        self.queue: list[tuple[list[RunSpec], Callable | None]] = []
        self.epochs = tqdm(desc="epochs", position=1, leave=False)

    def submit(self, group: list[RunSpec], on_epoch: Callable[[dict], None] | None) -> None:
        self.queue.append((group, on_epoch))

    def collect(self) -> tuple[list[RunSpec], Outputs]:
        group, on_epoch = self.queue.pop(0)

        def progress(row: dict) -> None:
            self.epochs.update(1)
            if on_epoch is not None:
                on_epoch(row)

        self.epochs.reset(total=self.study.train.epochs * len(group))
        checkpoints = [self.store.checkpoint(s.run_key) for s in group]
        return group, train_group(group, self.study, self.data, self.device, checkpoints, progress)

    def stop(self) -> None:
        self.epochs.close()


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


def run_study(
    study: Study,
    force: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    source: str = "<study>",
    executor: Executor | None = None,
    grid: list[RunSpec] | None = None,
    retrain: bool = False,
    recorded: Study | None = None,
) -> int:
    """Train every missing run of `study` (of `grid`, a part of its grid, where given); returns the
    exit code (0 when all runs finished).

    `executor`: LocalExecutor (default, this process) or ablate.training.ray.RayExecutor (one Ray
    task per group). Either way this process is the only writer of results/<study>/. `force`
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
    finished = store.finished_keys(fingerprint, current)
    todo = [s for s in grid if force or s.run_key not in finished]
    print(
        f"study {study.name}: {len(grid) - len(todo)} of {len(grid)} runs already finished; "
        f"training {len(todo)} on {executor.describe()}"
    )
    if not todo:
        return 0
    store.write_study(recorded or study)
    if force:
        for spec in todo:
            store.checkpoint(spec.run_key).remove()
    outcome = drive(todo, study, data, store, executor, force, on_epoch, current)
    for spec, reason in outcome.failed:
        print(f"failed: {spec.arm} budget {spec.budget} seed {spec.seed} (run {spec.run_key}): {reason}")
    missing = [s for s in grid if s.run_key not in store.finished_keys(fingerprint, current)]
    if missing:
        print(f"study {study.name}: {len(missing)} runs did not finish")
        return 1
    note = f"; {outcome.diverged} diverged (status = diverged in runs.csv)" if outcome.diverged else ""
    print(f"study {study.name}: all {len(grid)} runs finished{note}; results in {store.dir}")
    return 0
