"""Executors: how a study's run groups get trained. A run group is up to `fuse` seeds of one cell
trained as one network (train.fit_group); `train_group` trains one and returns its rows, the
executor takes each run's claim and records what returns (the driver is the only writer).
LocalExecutor trains groups one after another in this process; ablate.ray_executor.RayExecutor
spreads them over a Ray cluster."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

import torch
from tqdm import tqdm

import ablate
from ablate.data import Dataset
from ablate.errors import StudyError
from ablate.models import count_macs
from ablate.results import Checkpoint, HistoryRow, RunBusy, RunRow, StudyResults
from ablate.study import RunSpec, Study, arm_train_config
from ablate.train import FitResult, build_model, fit_group, resolve_device, uses_bf16


def _escnn_version() -> str:
    from importlib.metadata import version

    return version("escnn")


def train_group(
    specs: list[RunSpec],
    study: Study,
    data: Dataset,
    device: torch.device,
    checkpoints: list[Checkpoint | None],
    on_epoch: Callable[[dict], None] | None = None,
) -> list[tuple[RunRow, list[HistoryRow]]]:
    """Train (or resume from `checkpoints`) the runs of one cell as one group; returns each run's
    runs.csv row and history. Writes nothing but the checkpoints: the caller records."""
    models = [build_model(spec.model, spec.seed, device) for spec in specs]
    config = arm_train_config(study.train, specs[0].arm)
    results = fit_group(models, data, config, [s.seed for s in specs], checkpoints, on_epoch)
    return [
        (
            _run_row(spec, model, result, data, device, fused=len(specs), bf16=uses_bf16(config, device)),
            [HistoryRow(**_ident(spec), **h) for h in result.history],
        )
        for spec, model, result in zip(specs, models, results)
    ]


def record_group(store: StudyResults, outputs: list[tuple[RunRow, list[HistoryRow]]]) -> None:
    """Record finished runs (row and history), then remove their checkpoints."""
    for row, history in outputs:
        store.record(row, history, replace=True)
        store.checkpoint(row.run_key).remove()


def _ident(spec: RunSpec) -> dict:
    return {
        "study": spec.study,
        "run_key": spec.run_key,
        "arm": spec.arm,
        "budget": spec.budget,
        "seed": spec.seed,
    }


def _run_row(
    spec: RunSpec, model, result: FitResult, data: Dataset, device, fused: int, bf16: bool
) -> RunRow:
    """The runs.csv row of a finished run: built by keyword in this one place."""
    last = result.history[-1] if result.history else {}
    return RunRow(
        **_ident(spec),
        n_params=spec.model.n_params,
        macs=count_macs(model, data.x_test.shape[-1]),
        group_order=spec.model.group_order,
        repeat_mode=spec.model.repeat_mode or "",
        backbone=spec.model.backbone,
        learnable_widths="-".join(map(str, spec.model.learnable_widths)),
        physical_widths="-".join(map(str, spec.model.physical_widths)),
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
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        ablate_version=ablate.__version__,
        torch_version=torch.__version__,
        escnn_version=_escnn_version(),
        data_fingerprint=data.meta["fingerprint"],
        fused=fused,
        precision="bf16" if bf16 else "fp32",
        repeat_structure=spec.model.repeat_structure or "",
        model_name=spec.model.model_name,
    )


def run_groups(todo: list[RunSpec], store: StudyResults, fuse: int) -> list[list[RunSpec]]:
    """The runs to train, in grid order, as groups of at most `fuse` runs of one (budget, arm)
    cell that resume from the same epoch (none, or their checkpoints')."""
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in todo:
        state = store.checkpoint(spec.run_key).load() if fuse > 1 else None
        epoch = state["epoch"] if state is not None else 0
        cells.setdefault((spec.budget, spec.model, epoch), []).append(spec)
    return [specs[i : i + fuse] for specs in cells.values() for i in range(0, len(specs), fuse)]


def summary(row: RunRow) -> str:
    error = "diverged" if row.status != "ok" else f"test error {row.test_error:.2%}"
    return f"{row.arm:>6}  budget {row.budget:>7}  seed {row.seed:>3}  {error}  ({row.train_seconds:.0f} s)"


@dataclass
class Outcome:
    """What an executor's train() did: runs that diverged, and runs that failed with the reason."""

    diverged: int = 0
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)


class Executor(Protocol):
    def check(self, study: Study, source: str) -> None:
        """StudyError when the study cannot run here (before any data is loaded)."""

    def describe(self) -> str:
        """Where the runs train, for the first line of output, e.g. 'cpu'."""

    def train(
        self,
        todo: list[RunSpec],
        study: Study,
        data: Dataset,
        store: StudyResults,
        force: bool,
        on_epoch: Callable[[dict], None] | None,
    ) -> Outcome:
        """Train `todo` (none finished) and record each run as it finishes, holding its claim."""


class LocalExecutor:
    """Run groups trained one after another in this process (the default)."""

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

    def train(self, todo, study, data, store, force, on_epoch) -> Outcome:
        device, outcome = self.device, Outcome()
        data = data.to(device)
        fingerprint = data.meta["fingerprint"]
        fuse = study.run.fuse_seeds or (len(study.train.all_seeds) if device.type == "cuda" else 1)
        waited = []
        with (
            tqdm(total=len(todo), desc="runs", position=0) as run_bar,
            tqdm(desc="epochs", position=1, leave=False) as epoch_bar,
        ):

            def progress(row: dict) -> None:
                epoch_bar.update(1)
                if on_epoch is not None:
                    on_epoch(row)

            def attempt(group: list[RunSpec], wait: bool) -> list[RunSpec]:
                """Train the group's runs that no other process holds; returns those another holds."""
                with contextlib.ExitStack() as claims:
                    mine, busy = claim_group(store, group, claims, wait)
                    finished_now = store.finished_keys(fingerprint)
                    mine = [s for s in mine if force or s.run_key not in finished_now]  # done meanwhile
                    if mine:
                        epoch_bar.reset(total=study.train.epochs * len(mine))
                        checkpoints = [store.checkpoint(s.run_key) for s in mine]
                        outputs = train_group(mine, study, data, device, checkpoints, progress)
                        record_group(store, outputs)
                        for row, _ in outputs:
                            outcome.diverged += row.status != "ok"
                            tqdm.write(summary(row))
                return busy

            for group in run_groups(todo, store, fuse):
                waited += attempt(group, wait=False)
                run_bar.update(len(group))
            for spec in waited:
                attempt([spec], wait=True)
        return outcome


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
