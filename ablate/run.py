"""`python -m ablate.run STUDY.toml`: train the study's grid and write results/<study>/.

Finished runs are skipped, unfinished ones resume from their checkpoint, and runs claimed by
another process are waited for rather than trained twice.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from ablate.errors import AblateError, StudyError
from ablate.models.arms import ARMS, NOT_APPLICABLE, Group
from ablate.models.build import build_arm
from ablate.models.counting import count_macs
from ablate.results import StudyResults
from ablate.study.grid import RunSpec, expand_grid, study_shape
from ablate.study.schema import Study, load_study, with_overrides
from ablate.training.driver import RunsUnfinished, run_study
from ablate.training.executors import EXECUTORS, make_executor
from ablate.training.fusion import device_fusion, fusion_size
from ablate.training.loop import resolve_device
from ablate.training.precision import SHARE_NAMES, plan_now, run_to_precision
from ablate.training.runs import load_study_data


def describe_grid(study: Study, grid: list[RunSpec], store: StudyResults, fingerprint: str | None) -> str:
    """The --dry-run table: per cell (budget and model) the model, its parameters and MACs per
    image (at the study's input size), how many runs are done/partial/missing (done: finished
    on data with `fingerprint`, or on any data when it is None) and how many of its seeds train
    as one computation on the study's device (training.fusion)."""
    done = store.finished_keys(fingerprint)
    m = study.models
    _, size, _ = study_shape(study)
    device = resolve_device(study.run.device)
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in grid:
        cells.setdefault((spec.budget, spec.model), []).append(spec)
    what = f"preset {m.preset}" if m.preset else f"{len(m.budgets)} budgets"
    if m.preset and m.preset_width != 1.0:
        what += f", width x {m.preset_width:g}"
    t = study.train
    precision = {True: "bf16", False: "fp32", "cuda": "bf16 on CUDA, fp32 on the CPU"}[t.bf16]
    groups = Group.labels(m.group, m.group_orders)
    lines = [
        f"study {study.name}: {len(grid)} runs in {len(cells)} cells ({what}, "
        f"{len(m.arms)} arms, {groups}, {size}x{size} inputs, {'/'.join(m.all_repeat_structures)} repeat "
        f"structure, {len(t.all_seeds)} seeds) -> {store.dir}",
        f"training: {t.epochs} epochs, batch {t.batch_size}, {precision}"
        f"{', last partial batch dropped' if t.drop_last else ''}, augment {t.augment}, lr {t.lr:g}",
        f"{'budget':>8} {'model':>9} {'arm':>9} {'G':>3} {'structure':>9} {'params':>8} "
        f"{'MACs/image':>13}  {'done':>4} {'partial':>7} {'missing':>7} {'fused':>5}  physical widths",
    ]
    for (budget, model_spec), specs in cells.items():
        n_done = sum(s.run_key in done for s in specs)
        partial = sum(s.run_key not in done and store.checkpoint(s.run_key).path.exists() for s in specs)
        widths = "-".join(map(str, model_spec.physical_widths))
        name = model_spec.model_name or NOT_APPLICABLE
        arm = model_spec.arm + (f" {model_spec.wrong_group}" if model_spec.wrong_group else "")
        wanted = study.run.fuse_seeds or device_fusion(model_spec, len(specs), device, size)
        fused = fusion_size(model_spec, len(specs), size, wanted)
        lines.append(
            f"{budget:>8} {name:>9} {arm:>9} {model_spec.group.label:>3} "
            f"{model_spec.repeat_structure or NOT_APPLICABLE:>9} {model_spec.n_params:>8} "
            f"{count_macs(build_arm(model_spec), size, model_spec.channels):>13,}  "
            f"{n_done:>4} {partial:>7} {len(specs) - n_done - partial:>7} {fused:>5}  {widths}"
        )
    return "\n".join(lines)


def dry_run(study: Study, source: str) -> int:
    """--dry-run: print the grid, its models and what is done, partial or missing, and how long
    solving the models to their budgets took; train nothing."""
    tick = time.perf_counter()
    grid = expand_grid(study, source)
    solved = time.perf_counter() - tick
    store = StudyResults(study.run.results, study.name)
    try:
        fingerprint = load_study_data(study.data).meta["fingerprint"]
    except AblateError as error:
        fingerprint = None
        print(f"note: data not loaded, finished runs not checked against it ({error})")
    print(describe_grid(study, grid, store, fingerprint))
    what = (
        "a user's network: each width tried is a build of it"
        if study.models.builder
        else "counted, not built"
    )
    print(f"models solved to their budgets in {solved:.1f} s ({what})")
    r = study.run
    if r.precision is not None:
        print(
            f"precision: +-{r.precision:g} points on the {SHARE_NAMES[r.precision_share]} share; "
            f"pilot seeds 0-{r.pilot_seeds - 1}, "
            f"then the seeds its plan asks (at most {r.max_seeds} per arm) in rounds of {r.round_seeds}"
        )
        print("\n".join(plan_now(study, source)))
    return 0


def _budget_seeds(study: Study, args: argparse.Namespace) -> dict | None:
    """[train].budget_seeds under the command line: --seeds replaces every seed list, --budgets
    keeps the lists of its budgets only; None leaves it as the study has it."""
    if args.seeds:
        return {}
    if args.budgets and study.train.budget_seeds:
        kept = {str(b) for b in _int_list("--budgets", args.budgets)}
        return {b: seeds for b, seeds in study.train.budget_seeds.items() if b in kept}
    return None


def _int_list(flag: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise StudyError(f"{flag}: expected comma-separated integers, found {text!r}") from None


def parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    parser = argparse.ArgumentParser(prog="python -m ablate.run", description=__doc__.splitlines()[0])
    parser.add_argument("study", help="study TOML file, e.g. studies/quick.toml")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (overrides [run].device)")
    parser.add_argument("--seeds", help="comma-separated seeds (overrides [train].seeds and budget_seeds)")
    parser.add_argument("--budgets", help="comma-separated budgets (overrides [models].budgets)")
    parser.add_argument("--arms", help=f"comma-separated arms: {', '.join(ARMS)}")
    parser.add_argument("--results", help="results root (overrides [run].results)")
    parser.add_argument("--dry-run", action="store_true", help="print the grid and its status, train nothing")
    parser.add_argument(
        "--force",
        action="store_true",
        help="retrain runs that already finished (old rows kept in superseded/)",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="retrain finished runs made by another version of the code (code_fingerprint), resumably; "
        "their old rows move to results/<study>/superseded/",
    )
    parser.add_argument("--jobs", type=int, help="runs at a time on the CPU (overrides [run].jobs)")
    parser.add_argument(
        "--precision",
        type=float,
        help="train seeds until the repetition share's 95%% interval is +-this many points "
        "(overrides [run].precision; a pilot, then the seeds it plans, docs/stats.md)",
    )
    ray = parser.add_argument_group(
        "executor", "where cohorts train (docs/training.md: several GPUs or machines)"
    )
    ray.add_argument("--executor", choices=EXECUTORS, default="local", help="local (this process) or ray")
    ray.add_argument("--address", help="Ray cluster to join (default: start a local Ray instance)")
    ray.add_argument("--gpus-per-task", type=float, help="GPUs per cohort, fractions share a GPU")
    ray.add_argument("--cpus-per-task", type=int, help="CPUs (torch threads) per cohort (default 1)")
    ray.add_argument("--max-retries", type=int, default=2, help="retries of a failed cohort (default 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: exit 0 when every run finished, 1 when some did not, 2 with one line on
    stderr for bad input, 130 on Ctrl-C (finished runs kept, the rest resumable)."""
    args = parser().parse_args(argv)
    try:
        source = f"{args.study} (command line)"
        recorded = with_overrides(
            load_study(args.study),
            source,
            run={"device": args.device, "results": args.results, "precision": args.precision},
        )  # the study as its file says, where it runs: saved beside its results
        arms = args.arms.split(",") if args.arms else None
        unused = ["models.wrong_group"] if arms and "wrong" not in arms else []  # narrowed off: no wrong arm
        study = with_overrides(
            recorded,
            source,
            cleared=unused,
            train={"seeds": _int_list("--seeds", args.seeds), "budget_seeds": _budget_seeds(recorded, args)},
            models={"budgets": _int_list("--budgets", args.budgets), "arms": arms},
        )
        if args.dry_run:
            return dry_run(study, args.study)
        options = {"force": args.force, "retrain": args.retrain, "recorded": recorded}
        ray = {"address": args.address, "gpus_per_task": args.gpus_per_task, "max_retries": args.max_retries}

        def executor():
            return make_executor(study, args.executor, args.jobs, cpus_per_task=args.cpus_per_task, **ray)

        if study.run.precision is not None and not args.seeds:  # --seeds: exactly those, no plan
            run_to_precision(study, args.study, executor, **options)
        else:
            run_study(study, source=args.study, executor=executor(), **options)
        return 0
    except RunsUnfinished as error:
        print(error, file=sys.stderr)
        return 1
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
