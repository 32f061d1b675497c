"""`python -m ablate.run STUDY.toml`: train the study's grid and write results/<study>/.

Finished runs are skipped, unfinished ones resume from their checkpoint, and runs claimed by
another process are waited for rather than trained twice.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

import torch
from tqdm import tqdm

import ablate
from ablate.data import Dataset, load_dataset
from ablate.errors import AblateError, StudyError
from ablate.models import build_arm, count_macs
from ablate.results import HistoryRow, RunBusy, RunRow, StudyResults
from ablate.study import (
    DataSettings,
    RunSpec,
    Study,
    arm_train_config,
    expand_grid,
    load_study,
    with_overrides,
)
from ablate.train import FitResult, build_model, fit_group, resolve_device


def _escnn_version() -> str:
    from importlib.metadata import version

    return version("escnn")


def _train_group(
    specs: list[RunSpec],
    study: Study,
    data: Dataset,
    device: torch.device,
    store: StudyResults,
    on_epoch: Callable[[dict], None] | None,
    epoch_bar: tqdm,
) -> list[RunRow]:
    """Train (or resume) the runs of one cell as one group, record each, remove its checkpoint;
    returns their runs.csv rows."""
    models = [build_model(spec.model, spec.seed, device) for spec in specs]
    checkpoints = [store.checkpoint(spec.run_key) for spec in specs]
    epoch_bar.reset(total=study.train.epochs * len(specs))

    def progress(row: dict) -> None:
        epoch_bar.update(1)
        if on_epoch is not None:
            on_epoch(row)

    config = arm_train_config(study.train, specs[0].arm)
    results = fit_group(models, data, config, [s.seed for s in specs], checkpoints, progress)
    rows = []
    for spec, model, result, checkpoint in zip(specs, models, results, checkpoints):
        row = _run_row(spec, model, result, data, device, fused=len(specs), bf16=study.train.bf16)
        history = [HistoryRow(**_ident(spec), **h) for h in result.history]
        store.record(row, history, replace=True)
        checkpoint.remove()
        rows.append(row)
    return rows


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


def _summary(row: RunRow) -> str:
    error = "diverged" if row.status != "ok" else f"test error {row.test_error:.2%}"
    return f"{row.arm:>6}  budget {row.budget:>7}  seed {row.seed:>3}  {error}  ({row.train_seconds:.0f} s)"


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
    )


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


def describe_grid(study: Study, grid: list[RunSpec], store: StudyResults, fingerprint: str | None) -> str:
    """The --dry-run table: per budget and arm the model and how many runs are done/partial/missing
    (done: finished on data with `fingerprint`, or on any data when it is None)."""
    done = store.finished_keys(fingerprint)
    m = study.models
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in grid:
        cells.setdefault((spec.budget, spec.model), []).append(spec)
    lines = [
        f"study {study.name}: {len(grid)} runs in {len(cells)} cells ({len(m.budgets)} budgets, "
        f"{len(m.arms)} arms, C{'/C'.join(map(str, m.group_orders))}, {'/'.join(m.structures)} repeat "
        f"structure, {len(study.train.seeds)} seeds) -> {store.dir}",
        f"{'budget':>8} {'arm':>9} {'N':>2} {'structure':>9} {'params':>8} {'MACs':>12}  {'done':>4} "
        f"{'partial':>7} {'missing':>7}  physical widths",
    ]
    for (budget, model_spec), specs in cells.items():
        n_done = sum(s.run_key in done for s in specs)
        partial = sum(s.run_key not in done and store.checkpoint(s.run_key).path.exists() for s in specs)
        widths = "-".join(map(str, model_spec.physical_widths))
        order = model_spec.group_order if model_spec.arm in ("repeat", "gcnn") else "-"
        lines.append(
            f"{budget:>8} {model_spec.arm:>9} {order:>2} {model_spec.repeat_structure or '-':>9} "
            f"{model_spec.n_params:>8} {count_macs(build_arm(model_spec)):>12,}  "
            f"{n_done:>4} {partial:>7} {len(specs) - n_done - partial:>7}  {widths}"
        )
    return "\n".join(lines)


def run_study(
    study: Study,
    force: bool = False,
    dry_run: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    source: str = "<study>",
) -> int:
    """Train every missing run of `study`; returns the exit code (0 when all runs finished)."""
    grid = expand_grid(study, source)
    store = StudyResults(study.run.results, study.name)
    if dry_run:
        try:
            fingerprint = load_study_data(study.data).meta["fingerprint"]
        except AblateError as error:
            fingerprint = None
            print(f"note: data not loaded, finished runs not checked against it ({error})")
        print(describe_grid(study, grid, store, fingerprint))
        return 0
    device = resolve_device(study.run.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StudyError(
            f"{source}: run.device: expected an available CUDA device, found none "
            f'(use device = "cpu" or "auto")'
        )
    if study.run.threads:
        torch.set_num_threads(study.run.threads)
    data = load_study_data(study.data)
    fingerprint = data.meta["fingerprint"]
    if not force:
        check_data_unchanged(store, grid, fingerprint)
    finished = store.finished_keys(fingerprint)
    todo = [s for s in grid if force or s.run_key not in finished]
    print(
        f"study {study.name}: {len(grid) - len(todo)} of {len(grid)} runs already finished; "
        f"training {len(todo)} on {device}"
    )
    if not todo:
        return 0
    data = data.to(device)
    store.write_study(study)
    fuse = study.run.fuse_seeds or (len(study.train.seeds) if device.type == "cuda" else 1)
    diverged, waited = 0, []
    with (
        tqdm(total=len(todo), desc="runs", position=0) as run_bar,
        tqdm(desc="epochs", position=1, leave=False) as epoch_bar,
    ):

        def attempt(group: list[RunSpec], wait: bool) -> list[RunSpec]:
            """Train the group's runs that no other process holds; returns those another process holds."""
            nonlocal diverged
            with contextlib.ExitStack() as claims:
                mine, busy = [], []
                for spec in group:
                    try:
                        claims.enter_context(store.claim(spec.run_key, wait=wait))
                        mine.append(spec)
                    except RunBusy:
                        busy.append(spec)  # another process trains it; come back when it lets go
                finished_now = store.finished_keys(fingerprint)
                mine = [s for s in mine if force or s.run_key not in finished_now]  # done meanwhile
                if mine:
                    for row in _train_group(mine, study, data, device, store, on_epoch, epoch_bar):
                        diverged += row.status != "ok"
                        tqdm.write(_summary(row))
            return busy

        if force:
            for spec in todo:
                store.checkpoint(spec.run_key).remove()
        for group in run_groups(todo, store, fuse):
            waited += attempt(group, wait=False)
            run_bar.update(len(group))
        for spec in waited:
            attempt([spec], wait=True)
    missing = [s for s in grid if s.run_key not in store.finished_keys(fingerprint)]
    if missing:
        print(f"study {study.name}: {len(missing)} runs did not finish")
        return 1
    note = f"; {diverged} diverged (status = diverged in runs.csv)" if diverged else ""
    print(f"study {study.name}: all {len(grid)} runs finished{note}; results in {store.dir}")
    return 0


def _int_list(flag: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise StudyError(f"{flag}: expected comma-separated integers, found {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.run", description=__doc__.splitlines()[0])
    parser.add_argument("study", help="study TOML file, e.g. studies/quick.toml")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides [run].device)")
    parser.add_argument("--seeds", help="comma-separated seeds (overrides [train].seeds)")
    parser.add_argument("--budgets", help="comma-separated budgets (overrides [models].budgets)")
    parser.add_argument("--arms", help="comma-separated arms: plain, repeat, gcnn")
    parser.add_argument("--results", help="results root (overrides [run].results)")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and its status, train nothing")
    parser.add_argument("--force", action="store_true", help="retrain runs that already finished")
    args = parser.parse_args(argv)
    try:
        study = load_study(args.study)
        arms = args.arms.split(",") if args.arms else None
        study = with_overrides(
            study,
            f"{args.study} (command line)",
            train={"seeds": _int_list("--seeds", args.seeds)},
            models={"budgets": _int_list("--budgets", args.budgets), "arms": arms},
            run={"device": args.device, "results": args.results},
        )
        return run_study(study, force=args.force, dry_run=args.dry_run, source=args.study)
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished runs are saved and unfinished ones keep their last epoch's "
            "checkpoint; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
