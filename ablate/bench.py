"""`python -m ablate.bench`: training throughput per arm, unfused and fused, against the device's peak.

For one budget it times the package's own training step (`ablate.training.loop.train_step`: forward,
per-run cross-entropy, backward, per-run clipping, Adam) on batches of 64 digits and prints,
per arm: images per second for one run alone, for S runs fused into one grouped network (in
all), the speed-up, the same S runs through torch.func (VmappedSeeds, timed alternately with
the grouped form), the achieved GFLOP/s (2 x 3 x multiply-accumulates per image:
forward plus a backward of about twice its cost), its fraction of the fp32 matmul peak measured
in the same process, the same compiled ([run] compile: torch.compile, with its warm-up
seconds; its timings alternate with the eager ones), the same with bf16 autocast, and a
RepeatNet-style reference loop (PIL images through torchvision transforms in a DataLoader,
batch 64) on the same model. Timings, not tests: compare numbers taken in one run.

`--builder PATH` times a user's network instead: its three arms (plain twin, repeat twin, G-CNN)
at the budget, one run alone and S runs vmapped for each S of `--sizes`, timed alternately.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import pandas as pd
import torch

from ablate.errors import AblateError, StudyError, expect_one_of
from ablate.models.arms import ARMS, DEFAULT_ARMS, arm_spec
from ablate.models.build import solve_triplet
from ablate.models.counting import count_macs
from ablate.study.schema import load_study
from ablate.training.cost import study_cost
from ablate.training.loop import Cohort, adam, build_model, resolve_device, train_step
from ablate.training.machine import cpu_name, native_bf16
from ablate.training.runs import load_study_data
from ablate.training.throughput import (
    BATCH,
    REPEATS,
    dataloader_throughput,
    eager_and_compiled,
    fused_forms,
    fusion_sizes,
    spread,
    step_throughput,
    timed,
)

DEFAULT_BENCH_ARMS = (*DEFAULT_ARMS, "augmented")
BENCH_WRONG_GROUP = "D2"  # the wrong arm's group beside the bench's C4 G-CNN (same order)


PEAK_SIZE = 2048  # the matrix product that measures the peak: PEAK_SIZE x PEAK_SIZE, squared


def matmul_peak(
    device: torch.device, dtype: torch.dtype, seconds: float = 1.0, repeats: int = REPEATS
) -> dict:
    """Measured GFLOP/s of a PEAK_SIZE x PEAK_SIZE matrix product in `dtype` on `device` (spread)."""
    n = PEAK_SIZE
    a = torch.randn(n, n, device=device, dtype=dtype)
    return spread([2 * n**3 / t / 1e9 for t in timed(lambda: a @ a, device, seconds, repeats)])


def bench(
    budget: int,
    arms: Sequence[str],
    seeds: int,
    device: torch.device,
    seconds: float = 1.0,
    repeats: int = REPEATS,
) -> dict:
    """All the numbers of the table, as a dict (the --json content): each throughput and peak a
    spread (median, min, max over `repeats` timings of about `seconds` each); ratios of medians."""
    peak32 = matmul_peak(device, torch.float32, seconds, repeats)
    bf16_native = native_bf16(device)
    peak16 = matmul_peak(device, torch.bfloat16, seconds, repeats) if bf16_native else None
    triplet = solve_triplet(budget, arms=ARMS, wrong_group=BENCH_WRONG_GROUP)
    rows = []
    for arm in arms:
        spec = arm_spec(triplet, arm)
        flops = 6 * count_macs(build_model(spec, 0, device))  # per image: forward + backward (~2 forwards)
        alone, fast = eager_and_compiled(spec, device, seconds, repeats)
        fused, vmapped = fused_forms(spec, seeds, device, seconds, repeats) if seeds > 1 else (alone, alone)
        bf16 = step_throughput(spec, 1, device, True, seconds, repeats) if bf16_native else None
        reference = dataloader_throughput(spec, device, seconds, repeats)
        rows.append(
            {
                "arm": arm,
                "params": spec.n_params,
                "physical_widths": "-".join(map(str, spec.physical_widths)),
                "img_s": alone,
                "img_s_fused": fused,
                "speedup_fused": fused["median"] / alone["median"],
                "img_s_vmapped": vmapped,  # the same S runs through torch.func, timed alternately
                "vmapped_vs_fused": vmapped["median"] / fused["median"],
                "gflop_s": alone["median"] * flops / 1e9,
                "peak_fraction": alone["median"] * flops / 1e9 / peak32["median"],
                "img_s_compiled": fast,
                "speedup_compiled": fast["median"] / alone["median"],
                "compiled_peak_fraction": fast["median"] * flops / 1e9 / peak32["median"],
                "warmup_s": fast["warmup_s"],
                "img_s_bf16": bf16,  # None: no native bf16 on this device, not timed
                "speedup_bf16": bf16["median"] / alone["median"] if bf16 else None,
                "bf16_peak_fraction": bf16["median"] * flops / 1e9 / peak16["median"] if bf16 else None,
                "img_s_dataloader": reference,
                "speedup_vs_dataloader": alone["median"] / reference["median"],
            }
        )
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "budget": budget,
        "seeds": seeds,
        "batch": BATCH,
        "repeats": repeats,
        "matmul_peak_gflop_s": {"fp32": peak32, "bf16": peak16},
        "arms": rows,
    }


def profile_table(spec, device: torch.device, steps: int = 10, rows: int = 10) -> str:
    """torch.profiler's top operators (self time) over `steps` training steps of one run."""
    from torch.profiler import ProfilerActivity, profile

    models = [build_model(spec, 0, device)]
    cohort = Cohort(models)
    optimizer = adam(cohort.net.parameters(), 1e-3, 1e-7)
    x, y = torch.rand(BATCH, 1, 28, 28, device=device), torch.randint(0, 10, (1, BATCH), device=device)
    alive = torch.ones(1, dtype=torch.bool, device=device)
    autocast = torch.autocast(device.type, enabled=False)
    cohort.net.train()
    for _ in range(3):
        train_step(cohort, optimizer, x, y, alive, 1.0, autocast)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train_step(cohort, optimizer, x, y, alive, 1.0, autocast)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def _cell(x: dict) -> str:
    """'1,234 (1,100–1,300)': a median and its min-max."""
    return f"{x['median']:,.0f} ({x['min']:,.0f}–{x['max']:,.0f})"


def format_table(result: dict) -> str:
    """The Markdown table docs/speed.md shows: medians of `repeats` timings with their min-max."""
    s = result["seeds"]
    peak = result["matmul_peak_gflop_s"]
    bf16 = f"{_cell(peak['bf16'])} GFLOP/s" if peak["bf16"] else "not timed (no native bf16 here)"
    lines = [
        f"budget {result['budget']:,}, batch {result['batch']}, {result['device_name']} "
        f"({result['threads']} threads); matmul peak fp32 {_cell(peak['fp32'])} GFLOP/s, "
        f"bf16 {bf16}; median (min–max) of {result['repeats']} timings",
        "",
        f"| arm | params | img/s | img/s fused ×{s} | speed-up | img/s vmapped ×{s} | vmapped vs fused | "
        "GFLOP/s | of fp32 peak | img/s compiled | "
        "compiled speed-up | compiled of fp32 peak | warm-up s | img/s bf16 | bf16 speed-up | "
        "img/s DataLoader | this loop vs DataLoader |",
        "|" + " --- |" * 17,
    ]
    for r in result["arms"]:
        bf16_cells = f"{_cell(r['img_s_bf16'])} | {r['speedup_bf16']:.2f}×" if r["img_s_bf16"] else "— | —"
        lines.append(
            f"| {r['arm']} | {r['params']:,} | {_cell(r['img_s'])} | {_cell(r['img_s_fused'])} | "
            f"{r['speedup_fused']:.2f}× | {_cell(r['img_s_vmapped'])} | {r['vmapped_vs_fused']:.2f}× | "
            f"{r['gflop_s']:.1f} | {100 * r['peak_fraction']:.0f}% | "
            f"{_cell(r['img_s_compiled'])} | {r['speedup_compiled']:.2f}× | "
            f"{100 * r['compiled_peak_fraction']:.0f}% | {r['warmup_s']:.1f} | "
            f"{bf16_cells} | {_cell(r['img_s_dataloader'])} | "
            f"{r['speedup_vs_dataloader']:.2f}× |"
        )
    return "\n".join(lines)


def builder_bench(
    builder: str, budget: int, sizes: Sequence[int], device: torch.device, seconds: float, repeats: int
) -> dict:
    """--builder: images per second (spread) of each arm of `builder`'s triplet at `budget`, one
    run alone and S runs vmapped for each S of `sizes` (training.throughput.fusion_sizes)."""
    triplet = solve_triplet(budget, builder=builder)
    rows = []
    for arm in DEFAULT_ARMS:
        spec = triplet[arm]
        timings = fusion_sizes(spec, sizes, device, seconds, repeats)
        rows.append({"arm": arm, "params": spec.n_params, "img_s": timings})
    return {
        "builder": builder,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": torch.get_num_threads(),
        "budget": budget,
        "batch": BATCH,
        "repeats": repeats,
        "sizes": list(sizes),
        "arms": rows,
    }


def format_builder_table(result: dict) -> str:
    """The --builder table: per arm, img/s alone and vmapped per S, with each S's ratio to alone."""
    sizes = [f"S={s}" for s in result["sizes"]]
    lines = [
        f"{result['builder']} at budget {result['budget']:,}, batch {result['batch']} per run, "
        f"{result['device_name']} ({result['threads']} threads); images per second of all runs, "
        f"median (min–max) of {result['repeats']} timings, alternated",
        "",
        "| arm | params | unfused | " + " | ".join(f"vmapped {s} | vs unfused" for s in sizes) + " |",
        "|" + " --- |" * (3 + 2 * len(sizes)),
    ]
    for r in result["arms"]:
        alone = r["img_s"]["unfused"]
        cells = [
            f"{_cell(t)} | {t['median'] / alone['median']:.2f}×" if t else "out of memory | —"
            for t in (r["img_s"][s] for s in sizes)
        ]
        lines.append(f"| {r['arm']} | {r['params']:,} | {_cell(alone)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_cost(cost: pd.DataFrame, study: str, epochs: int, jobs: int) -> str:
    """The --study table: where one run's time goes, per cell, and the study's estimated total."""
    lines = [
        f"study {study}: one epoch of every cell timed; estimates for {epochs} epochs",
        "",
        "| budget | model | params | runs | compiled | build s | steps s/epoch | eval s | final passes s "
        "| s/run | s/cell |",
        "|" + " --- |" * 11,
    ]
    for r in cost.itertuples():
        lines.append(
            f"| {int(r.budget):,} | {r.model} | {int(r.params):,} | {r.runs} | "
            f"{'yes' if r.compiled else 'no'} | {r.build:.2f} | {r.steps:.2f} | {r.eval:.2f} | "
            f"{r.final:.2f} | {r.run_s:.0f} | {r.cell_s:.0f} |"
        )
    total = float(cost["cell_s"].sum())
    share = {k: float((cost[k] * cost["runs"]).sum()) for k in ("build", "final")}
    steps = float((cost["steps"] * epochs * cost["runs"]).sum())
    lines += [
        "",
        f"estimated {total / 60:.1f} minutes for {int(cost['runs'].sum())} runs one at a time"
        + (
            f", about {total / 60 / jobs:.1f} with --jobs {jobs} (if the runs share the cores well)"
            if jobs > 1
            else ""
        )
        + f"; training steps {100 * steps / total:.0f}%, evaluations "
        f"{100 * (total - steps - share['build'] - share['final']) / total:.0f}%, per-run overhead (build, "
        f"MACs) {100 * share['build'] / total:.1f}%, final invariance passes "
        f"{100 * share['final'] / total:.1f}%",
    ]
    return "\n".join(lines)


def study_main(args: argparse.Namespace) -> int:
    """--study STUDY.toml: the study's cost, cell by cell."""
    try:
        if args.jobs < 1:
            raise StudyError(f"--jobs: expected a whole number >= 1, found {args.jobs}")
        study = load_study(args.study)
        device = resolve_device(args.device if args.device != "auto" else study.run.device)
        if study.run.threads:
            torch.set_num_threads(study.run.threads)
        data = load_study_data(study.data)
        cost = study_cost(study, data, device)
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_cost(cost, study.name, study.train.epochs, args.jobs))
    if args.json:
        cost.to_json(args.json, orient="records", indent=2)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line's flags."""
    parser = argparse.ArgumentParser(prog="python -m ablate.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget", type=int, default=20_000, help="learnable-parameter budget (default 20000)"
    )
    parser.add_argument(
        "--arms",
        default=",".join(DEFAULT_BENCH_ARMS),
        help=f"comma-separated arms of {', '.join(ARMS)} (default: {', '.join(DEFAULT_BENCH_ARMS)}; the "
        f"wrong arm on {BENCH_WRONG_GROUP})",
    )
    parser.add_argument("--seeds", type=int, default=5, help="runs fused into one network (default 5)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per timing (default 1)")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help=f"timings per figure (default {REPEATS})"
    )
    parser.add_argument(
        "--study", help="instead: time one epoch of every cell of this study file and estimate its cost"
    )
    parser.add_argument("--jobs", type=int, default=1, help="with --study: runs at a time for the estimate")
    parser.add_argument(
        "--builder", help="instead: time this network's three arms (module:function), alone and vmapped"
    )
    parser.add_argument(
        "--sizes", default="1,10,50", help="with --builder: comma-separated seeds vmapped (default 1,10,50)"
    )
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per arm")
    return parser


def _device(args: argparse.Namespace) -> torch.device:
    """--device, checked (StudyError for a CUDA device this machine lacks)."""
    device = resolve_device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StudyError(f"--device: expected an available CUDA device, found none ({args.device})")
    return device


def _measure(args: argparse.Namespace) -> tuple[dict, str]:
    """The numbers and their table, for the arms or the builder the flags name (StudyError for bad flags)."""
    if args.repeats < 1 or args.seconds <= 0:
        raise StudyError(
            f"--repeats and --seconds: expected positive numbers, found {args.repeats}, {args.seconds}"
        )
    if args.seeds < 1 or args.budget < 1:
        raise StudyError(
            f"--seeds and --budget: expected positive integers, found {args.seeds}, {args.budget}"
        )
    if args.builder:
        parts = [part.strip() for part in args.sizes.split(",") if part.strip()]
        sizes = [int(part) for part in parts] if all(part.isdigit() for part in parts) else []
        if not sizes or min(sizes) < 1:
            raise StudyError(f"--sizes: expected comma-separated positive integers, found {args.sizes!r}")
        result = builder_bench(args.builder, args.budget, sizes, _device(args), args.seconds, args.repeats)
        return result, format_builder_table(result)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for arm in arms:
        expect_one_of("--arms", arm, ARMS, StudyError)
    device = _device(args)
    try:
        result = bench(args.budget, arms, args.seeds, device, args.seconds, args.repeats)
    except ValueError as error:
        raise StudyError(f"--budget: {error}") from None
    return result, format_table(result)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 with one line on stderr for bad input)."""
    args = parser().parse_args(argv)
    if args.study:
        return study_main(args)
    try:
        result, table = _measure(args)
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table)
    if args.profile and not args.builder:
        triplet = solve_triplet(args.budget, arms=ARMS, wrong_group=BENCH_WRONG_GROUP)
        for arm in (row["arm"] for row in result["arms"]):
            print(f"\n{arm} at budget {args.budget:,}: top operators over 10 training steps of batch {BATCH}")
            print(profile_table(arm_spec(triplet, arm), _device(args)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
