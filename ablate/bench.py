"""`python -m ablate.bench`: training throughput per arm, unfused and fused, against the device's peak.

For one budget it times the package's own training step (`ablate.training.loop.train_step`: forward,
per-run cross-entropy, backward, per-run clipping, Adam) on batches of 64 digits and prints,
per arm: images per second for one run alone, for S runs fused into one grouped network (per
run and in all), the speed-up, the achieved GFLOP/s (2 x 3 x multiply-accumulates per image:
forward plus a backward of about twice its cost), its fraction of the fp32 matmul peak measured
in the same process, the same with bf16 autocast, and a RepeatNet-style reference loop (PIL
images through torchvision transforms in a DataLoader, batch 64) on the same model. Timings,
not tests: the machines are shared and noisy, so compare numbers taken in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

import torch

from ablate.errors import AblateError, StudyError, expect_one_of
from ablate.models.arms import ARMS, arm_spec
from ablate.models.budget import solve_triplet
from ablate.models.spec import count_macs
from ablate.training.loop import RunGroup, build_model, resolve_device, train_step

BATCH = 64


def _timed(step: Callable[[], object], device: torch.device, seconds: float) -> float:
    """Seconds per call of `step`, after warm-up, over about `seconds` of calls."""
    for _ in range(3):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or calls < 3:
        step()
        calls += 1
    sync()
    return (time.perf_counter() - start) / calls


def matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Measured GFLOP/s of a 2048 x 2048 matrix product in `dtype` on `device`."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    per_call = _timed(lambda: a @ a, device, seconds)
    return 2 * 2048**3 / per_call / 1e9


def step_throughput(spec, seeds: int, device: torch.device, bf16: bool, seconds: float) -> float:
    """Images per second (all runs together) of train_step on S = `seeds` runs of `spec`."""
    models = [build_model(spec, s, device) for s in range(seeds)]
    group = RunGroup(models)
    optimizer = torch.optim.Adam(group.net.parameters(), lr=1e-3, weight_decay=1e-7)
    x = torch.rand(BATCH, seeds, 28, 28, device=device)
    y = torch.randint(0, 10, (seeds, BATCH), device=device)
    alive = torch.ones(seeds, dtype=torch.bool, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    group.net.train()
    return (
        BATCH
        * seeds
        / _timed(lambda: train_step(group, optimizer, x, y, alive, 1.0, autocast), device, seconds)
    )


def dataloader_throughput(spec, device: torch.device, seconds: float) -> float:
    """Images per second of a RepeatNet-style loop: PIL digits -> torchvision ToTensor in a
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

    return BATCH / _timed(step, device, seconds)


def bench(budget: int, arms: Sequence[str], seeds: int, device: torch.device, seconds: float = 2.0) -> dict:
    """All the numbers of the table, as a dict (the --json content)."""
    peak32 = matmul_peak(device, torch.float32)
    peak16 = matmul_peak(device, torch.bfloat16)
    triplet = solve_triplet(budget)
    rows = []
    for arm in arms:
        spec = arm_spec(triplet, arm)
        flops = 6 * count_macs(
            build_model(spec, 0, device)
        )  # per image: 2 x (forward + backward ~ 2 forwards)
        alone = step_throughput(spec, 1, device, False, seconds)
        fused = step_throughput(spec, seeds, device, False, seconds) if seeds > 1 else alone
        bf16 = step_throughput(spec, 1, device, True, seconds)
        reference = dataloader_throughput(spec, device, seconds)
        rows.append(
            {
                "arm": arm,
                "params": spec.n_params,
                "physical_widths": "-".join(map(str, spec.physical_widths)),
                "img_s": alone,
                "img_s_fused": fused,
                "speedup_fused": fused / alone,
                "gflop_s": alone * flops / 1e9,
                "peak_fraction": alone * flops / 1e9 / peak32,
                "img_s_bf16": bf16,
                "speedup_bf16": bf16 / alone,
                "bf16_peak_fraction": bf16 * flops / 1e9 / peak16,
                "img_s_dataloader": reference,
                "speedup_vs_dataloader": alone / reference,
            }
        )
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "budget": budget,
        "seeds": seeds,
        "batch": BATCH,
        "matmul_peak_gflop_s": {"fp32": peak32, "bf16": peak16},
        "arms": rows,
    }


def profile_table(spec, device: torch.device, steps: int = 10, rows: int = 10) -> str:
    """torch.profiler's top operators (self time) over `steps` training steps of one run."""
    from torch.profiler import ProfilerActivity, profile

    models = [build_model(spec, 0, device)]
    group = RunGroup(models)
    optimizer = torch.optim.Adam(group.net.parameters(), lr=1e-3, weight_decay=1e-7)
    x, y = torch.rand(BATCH, 1, 28, 28, device=device), torch.randint(0, 10, (1, BATCH), device=device)
    alive = torch.ones(1, dtype=torch.bool, device=device)
    autocast = torch.autocast(device.type, enabled=False)
    group.net.train()
    for _ in range(3):
        train_step(group, optimizer, x, y, alive, 1.0, autocast)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            train_step(group, optimizer, x, y, alive, 1.0, autocast)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def format_table(result: dict) -> str:
    """The Markdown table docs/speed.md shows."""
    s = result["seeds"]
    peak = result["matmul_peak_gflop_s"]
    lines = [
        f"budget {result['budget']:,}, batch {result['batch']}, {result['device_name']} "
        f"({result['threads']} threads); matmul peak fp32 {peak['fp32']:.0f} GFLOP/s, "
        f"bf16 {peak['bf16']:.0f} GFLOP/s",
        "",
        f"| arm | params | img/s | img/s fused ×{s} | speed-up | GFLOP/s | of fp32 peak | img/s bf16 | "
        "bf16 speed-up | img/s DataLoader | this loop vs DataLoader |",
        "|" + " --- |" * 11,
    ]
    for r in result["arms"]:
        lines.append(
            f"| {r['arm']} | {r['params']:,} | {r['img_s']:,.0f} | {r['img_s_fused']:,.0f} | "
            f"{r['speedup_fused']:.2f}× | {r['gflop_s']:.1f} | {100 * r['peak_fraction']:.0f}% | "
            f"{r['img_s_bf16']:,.0f} | {r['speedup_bf16']:.2f}× | {r['img_s_dataloader']:,.0f} | "
            f"{r['speedup_vs_dataloader']:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m ablate.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget", type=int, default=20_000, help="learnable-parameter budget (default 20000)"
    )
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms (default: all)")
    parser.add_argument("--seeds", type=int, default=5, help="runs fused into one network (default 5)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement (default 2)")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's top operators per arm")
    args = parser.parse_args(argv)
    try:
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
            result = bench(args.budget, arms, args.seeds, device, args.seconds)
        except ValueError as error:
            raise StudyError(f"--budget: {error}") from None
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.profile:
        triplet = solve_triplet(args.budget)
        for arm in arms:
            print(f"\n{arm} at budget {args.budget:,}: top operators over 10 training steps of batch {BATCH}")
            print(profile_table(arm_spec(triplet, arm), device))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
