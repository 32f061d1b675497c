"""Timing the package's own training step (`training.loop.train_step`: forward, per-run
cross-entropy, backward, per-run clipping, Adam) on random batches: alternated timings with their
spread, and the comparisons `python -m ablate.bench` prints (fused forms, fusion sizes).
Timings, not tests: compare numbers taken in one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from ablate.models.spec import ArmSpec
from ablate.training.cohort import Cohort, adam
from ablate.training.loop import build_model, train_step

BATCH = 64  # images per run per step
REPEATS = 5  # each figure is the median of this many timings, shown with their min-max


def timed_alternately(
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


def timed(step: Callable[[], object], device: torch.device, seconds: float, repeats: int) -> list[float]:
    """Seconds per call of `step` after warm-up: `repeats` timings of about `seconds` each."""
    return timed_alternately([step], device, seconds, repeats)[0]


def spread(values: Sequence[float]) -> dict[str, float]:
    """{"median", "min", "max"} of repeated measurements."""
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


def train_step_call(
    spec: ArmSpec,
    seeds: int,
    device: torch.device,
    bf16: bool = False,
    compile: bool = False,
    form: str = "auto",
    size: int = 28,
    batch: int = BATCH,
) -> tuple[Callable[[], None], float]:
    """A call of train_step on S = `seeds` fresh runs of `spec` (a Cohort of `form`) on `batch`
    random size x size images per run, and the seconds its first call took (tracing and
    compiling when compiled; inductor's on-disk cache makes a later process's shorter)."""
    models = [build_model(spec, s, device) for s in range(seeds)]
    cohort = Cohort(models, compile=compile, form=form)
    optimizer = adam(cohort.net.parameters(), 1e-3, 1e-7)
    x = torch.rand(batch, seeds * spec.channels, size, size, device=device)
    y = torch.randint(0, spec.classes, (seeds, batch), device=device)
    alive = torch.ones(seeds, dtype=torch.bool, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    cohort.net.train()

    def step() -> None:
        train_step(cohort, optimizer, x, y, alive, 1.0, autocast)

    start = time.perf_counter()
    step()
    return step, time.perf_counter() - start


def step_throughput(
    spec: ArmSpec, seeds: int, device: torch.device, bf16: bool, seconds: float, repeats: int,
    compile: bool = False,
) -> dict:  # fmt: skip
    """Images per second (all runs together; spread) of train_step on S = `seeds` runs of `spec`,
    eager or compiled, with "warmup_s", the seconds of its first step."""
    step, warmup = train_step_call(spec, seeds, device, bf16, compile)
    times = timed(step, device, seconds, repeats)
    return spread([BATCH * seeds / t for t in times]) | {"warmup_s": warmup}


def fused_forms(
    spec: ArmSpec, seeds: int, device: torch.device, seconds: float, repeats: int
) -> tuple[dict, dict]:
    """Images per second (all runs; spread) of S = `seeds` runs of a built-in arm as one grouped
    network (FusedSeeds) and through torch.func (VmappedSeeds), timed alternately."""
    calls = [train_step_call(spec, seeds, device, form=form)[0] for form in ("auto", "vmapped")]
    grouped, vmapped = timed_alternately(calls, device, seconds, repeats)
    return spread([BATCH * seeds / t for t in grouped]), spread([BATCH * seeds / t for t in vmapped])


def fusion_sizes(
    spec: ArmSpec, sizes: Sequence[int], device: torch.device, seconds: float, repeats: int, size: int = 28
) -> dict[str, dict | None]:
    """Images per second (all runs; spread) of one run alone ("unfused") and of S runs as one
    vmapped computation for each S of `sizes` ("S=10"), all timed alternately; None for an S whose
    step does not fit the device's memory."""
    calls, names, result = [], [], {}
    for name, seeds, form in [("unfused", 1, "auto")] + [(f"S={s}", s, "vmapped") for s in sizes]:
        try:
            calls.append(train_step_call(spec, seeds, device, form=form, size=size)[0])
            names.append((name, seeds))
        except torch.OutOfMemoryError:
            result[name] = None
            torch.cuda.empty_cache()
    for (name, seeds), times in zip(names, timed_alternately(calls, device, seconds, repeats)):
        result[name] = spread([BATCH * seeds / t for t in times])
    return result


def eager_and_compiled(spec, device: torch.device, seconds: float, repeats: int) -> tuple[dict, dict]:
    """step_throughput of one run of `spec`, eager and compiled, timed alternately (one timing
    of each per repetition). Timed one after the other on a shared CPU, the plain arm's compiled
    speed-up came out 1.52x in one bench run and 1.14x in the next (CHANGELOG.md, speed history)."""
    (eager, _), (fast, warmup) = (train_step_call(spec, 1, device, False, c) for c in (False, True))
    times = timed_alternately([eager, fast], device, seconds, repeats)
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

    return spread([BATCH / t for t in timed(step, device, seconds, repeats)])
