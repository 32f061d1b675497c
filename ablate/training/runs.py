"""Training one cohort into its records: the data a study trains on, each run's runs.csv row
(built by keyword in one place) and history, and the code fingerprint a row carries. Every
executor calls `train_cohort`; only the driver records what it returns."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch

from ablate.data.sources import Dataset, load_dataset
from ablate.models.counting import count_macs
from ablate.models.spec import ArmSpec
from ablate.results import INVARIANCE_FIELDS, Checkpoint, HistoryRow, RunRow
from ablate.study.grid import RunSpec, arm_train_config
from ablate.study.schema import DataSettings, Study
from ablate.training.compiled import training_tflop, use_compile
from ablate.training.loop import FitResult, build_model, fit_cohort, uses_bf16
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
    """The runs.csv model columns of a spec: every ArmSpec field but NOT_IN_RUNS, as ArmSpec.flat
    spells them (the group as `group` and `group_order`; widths as '16-24-32', None as ''), and
    the preset's model name."""
    columns = {}
    for name, value in spec.flat().items():
        if name in NOT_IN_RUNS:
            continue
        value = getattr(value, "name", value)  # a [models.backbone] table's Backbone: its name
        columns[name] = "-".join(map(str, value)) if isinstance(value, tuple) else value
        columns[name] = "" if columns[name] is None else columns[name]
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
        **{column: result.invariance.get(column, math.nan) for column in INVARIANCE_FIELDS},
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


def train_cohort(
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
    macs = count_macs(models[0], data.x_test.shape[-1], data.x_test.shape[1])
    work = training_tflop(macs, len(data.y_train), config.epochs, len(specs))
    seeds, compile = [s.seed for s in specs], use_compile(study.run.compile, device, work)
    results = fit_cohort(models, data, config, seeds, checkpoints, on_epoch, compile=compile)
    rows = [
        _run_row(s, macs, r, data, device, len(specs), uses_bf16(config, device))
        for s, r in zip(specs, results)
    ]
    return [
        (row, [HistoryRow(**_ident(s), **h) for h in r.history]) for row, s, r in zip(rows, specs, results)
    ]
