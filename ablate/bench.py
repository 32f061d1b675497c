"""`python -m ablate.bench`: training throughput per arm, unfused and fused, against the device's peak.

For one budget it times the package's own training step (`ablate.training.loop.train_step`: forward,
per-run cross-entropy, backward, per-run clipping, Adam) on batches of 64 digits and prints,
per arm: images per second for one run alone, for S runs fused into one grouped network (per
run and in all), the speed-up, the achieved GFLOP/s (2 x 3 x multiply-accumulates per image:
forward plus a backward of about twice its cost), its fraction of the fp32 matmul peak measured
in the same process, the same compiled ([run] compile: torch.compile, with its warm-up
seconds; its timings alternate with the eager ones), the same with bf16 autocast, and a
RepeatNet-style reference loop (PIL images through torchvision transforms in a DataLoader,
batch 64) on the same model. Timings, not tests: compare numbers taken in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

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

BATCH = 64
DEFAULT_BENCH_ARMS = (*DEFAULT_ARMS, "augmented")
BENCH_WRONG_GROUP = "D2"  # the wrong arm's group beside the bench's C4 G-CNN (same order)


REPEATS = 5  # each figure is the median of this many timings, shown with their min-max


def _timed_alternately(
    steps: Sequence[Callable[[], object]], device: torch.device, seconds: float, repeats: int
) -> list[list[float]]:
    """Seconds per call of each of `steps`, after warm-up: `repeats` timings each (over about
    `seconds` of calls), one of every step per repetition in an order reversed each time, so a
    shared machine's drift falls on all of them alike. Returns one list per step."""
    for step in steps:
        for _ in range(3):
            step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times: list[list[float]] = [[] for _ in steps]
    for repetition in range(repeats):
        order = range(len(steps)) if repetition % 2 == 0 else reversed(range(len(steps)))
        for i in order:
            sync()
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds or calls < 3:
                steps[i]()
                calls += 1
            sync()
            times[i].append((time.perf_counter() - start) / calls)
    return times


def _timed(step: Callable[[], object], device: torch.device, seconds: float, repeats: int) -> list[float]:
    """Seconds per call of `step` after warm-up: `repeats` timings of about `seconds` each."""
    return _timed_alternately([step], device, seconds, repeats)[0]


def spread(values: Sequence[float]) -> dict[str, float]:
    """{"median", "min", "max"} of repeated measurements."""
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


PEAK_SIZE = 2048  # the matrix product that measures the peak: PEAK_SIZE x PEAK_SIZE, squared


def matmul_peak(
    device: torch.device, dtype: torch.dtype, seconds: float = 1.0, repeats: int = REPEATS
) -> dict:
    """Measured GFLOP/s of a PEAK_SIZE x PEAK_SIZE matrix product in `dtype` on `device` (spread)."""
    n = PEAK_SIZE
    a = torch.randn(n, n, device=device, dtype=dtype)
    return spread([2 * n**3 / t / 1e9 for t in _timed(lambda: a @ a, device, seconds, repeats)])


def _train_step_call(spec, seeds: int, device: torch.device, bf16: bool, compile: bool):
    """A call of train_step on S = `seeds` fresh runs of `spec`, and the seconds its first call
    took (tracing and compiling when compiled; inductor's on-disk cache makes a later process's
    shorter)."""
    models = [build_model(spec, s, device) for s in range(seeds)]
    cohort = Cohort(models, compile=compile)
    optimizer = adam(cohort.net.parameters(), 1e-3, 1e-7)
    x = torch.rand(BATCH, seeds, 28, 28, device=device)
    y = torch.randint(0, 10, (seeds, BATCH), device=device)
    alive = torch.ones(seeds, dtype=torch.bool, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    cohort.net.train()

    def step() -> None:
        train_step(cohort, optimizer, x, y, alive, 1.0, autocast)

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def step_throughput(
    spec, seeds: int, device: torch.device, bf16: bool, seconds: float, repeats: int, compile: bool = False
) -> dict:
    """Images per second (all runs together; spread) of train_step on S = `seeds` runs of `spec`,
    eager or compiled, with "warmup_s", the seconds of its first step."""
    step, warmup = _train_step_call(spec, seeds, device, bf16, compile)
    times = _timed(step, device, seconds, repeats)
    return spread([BATCH * seeds / t for t in times]) | {"warmup_s": warmup}


def eager_and_compiled(spec, device: torch.device, seconds: float, repeats: int) -> tuple[dict, dict]:
    """step_throughput of one run of `spec`, eager and compiled, timed alternately (one timing
    of each per repetition). Timed one after the other on a shared CPU, the plain arm's compiled
    speed-up came out 1.52x in one bench run and 1.14x in the next (docs/speed.md)."""
    (eager, _), (fast, warmup) = (_train_step_call(spec, 1, device, False, c) for c in (False, True))
    times = _timed_alternately([eager, fast], device, seconds, repeats)
    eager_s, fast_s = (spread([BATCH / t for t in ts]) for ts in times)
    return eager_s, fast_s | {"warmup_s": warmup}


def dataloader_throughput(spec, device: torch.device, seconds: float, repeats: int) -> dict:
    """Images per second (spread) of a RepeatNet-style loop: PIL digits -> torchvision ToTensor in a
    DataLoader (batch 64) -> the model, cross-entropy, backward, clipping, Adam."""
    import numpy as np
    import torch.nn.functional as F
    from PIL import Image
    from torch.utils.data import DataLoader
    from torchvision import transforms

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(BATCH * 8)]
    labels = rng.integers(0, 10, len(images)).tolist()
    to_tensor = transforms.ToTensor()

    class Digits(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            return to_tensor(images[i]), labels[i]

    model = build_model(spec, 0, device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-7)
    loader = DataLoader(Digits(), batch_size=BATCH, shuffle=True)
    batches = iter(())

    def step() -> None:
        nonlocal batches
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, y = next(batches)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return spread([BATCH / t for t in _timed(step, device, seconds, repeats)])


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
        fused = step_throughput(spec, seeds, device, False, seconds, repeats) if seeds > 1 else alone
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
        f"| arm | params | img/s | img/s fused ×{s} | speed-up | GFLOP/s | of fp32 peak | img/s compiled | "
        "compiled speed-up | compiled of fp32 peak | warm-up s | img/s bf16 | bf16 speed-up | "
        "img/s DataLoader | this loop vs DataLoader |",
        "|" + " --- |" * 15,
    ]
    for r in result["arms"]:
        bf16_cells = f"{_cell(r['img_s_bf16'])} | {r['speedup_bf16']:.2f}×" if r["img_s_bf16"] else "— | —"
        lines.append(
            f"| {r['arm']} | {r['params']:,} | {_cell(r['img_s'])} | {_cell(r['img_s_fused'])} | "
            f"{r['speedup_fused']:.2f}× | {r['gflop_s']:.1f} | {100 * r['peak_fraction']:.0f}% | "
            f"{_cell(r['img_s_compiled'])} | {r['speedup_compiled']:.2f}× | "
            f"{100 * r['compiled_peak_fraction']:.0f}% | {r['warmup_s']:.1f} | "
            f"{bf16_cells} | {_cell(r['img_s_dataloader'])} | "
            f"{r['speedup_vs_dataloader']:.2f}× |"
        )
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


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code."""
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
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per arm")
    args = parser.parse_args(argv)
    if args.study:
        return study_main(args)
    try:
        if args.repeats < 1 or args.seconds <= 0:
            raise StudyError(
                f"--repeats and --seconds: expected positive numbers, found {args.repeats}, {args.seconds}"
            )
        arms = [a.strip() for a in args.arms.split(",") if a.strip()]
        for arm in arms:
            expect_one_of("--arms", arm, ARMS, StudyError)
        if args.seeds < 1 or args.budget < 1:
            raise StudyError(
                f"--seeds and --budget: expected positive integers, found {args.seeds}, {args.budget}"
            )
        device = resolve_device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise StudyError(f"--device: expected an available CUDA device, found none ({args.device})")
        try:
            result = bench(args.budget, arms, args.seeds, device, args.seconds, args.repeats)
        except ValueError as error:
            raise StudyError(f"--budget: {error}") from None
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.profile:
        triplet = solve_triplet(args.budget, arms=ARMS, wrong_group=BENCH_WRONG_GROUP)
        for arm in arms:
            print(f"\n{arm} at budget {args.budget:,}: top operators over 10 training steps of batch {BATCH}")
            print(profile_table(arm_spec(triplet, arm), device))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
