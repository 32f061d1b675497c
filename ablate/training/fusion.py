"""How many seeds of a cell train as one computation (the fusion size), chosen from the device.

- CPU: `CPU_FUSION` (1). On the 2-core CPUs measured, fusing did not pay: at S = 3 the built-in
  20k arms' grouped networks ran at 0.60-1.04x of one run's images per second, the zoo network's
  vmapped seeds at 0.60-0.67x (AVX-512 AMD EPYC, docs/speed.md).
- CUDA: every seed of the cell, up to what the GPU's memory holds, measured once per model spec:
  the peak memory of one training step of 1 and of 2 fused seeds gives the memory a seed adds,
  and the free memory (less `CUDA_HEADROOM`) divided by it bounds the size.

`[run] fuse_seeds` overrides both. A network whose seeds cannot be vmapped (`vmap_problem`) trains
one seed at a time, with a printed note.
"""

from __future__ import annotations

import functools

import torch

from ablate.models.spec import ArmSpec
from ablate.training.throughput import train_step_call

CPU_FUSION = 1
CUDA_HEADROOM = 0.2  # of the free memory, left for the allocator's fragmentation and evaluation
PROBE_BATCH = 64  # images per seed in the memory probe (the studies' batch size)


def step_memory(spec: ArmSpec, seeds: int, device: torch.device, size: int, batch: int = PROBE_BATCH) -> int:
    """Peak CUDA bytes of one training step of `seeds` fused runs of `spec` on size x size images
    (weights, gradients, Adam's moments, activations), measured."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    train_step_call(spec, seeds, device, size=size, batch=batch)  # builds, then takes one step
    return torch.cuda.max_memory_allocated(device) - start


@functools.cache
def cuda_fusion(spec: ArmSpec, seeds: int, device: torch.device, size: int) -> int:
    """Seeds of `spec` that fit one GPU's free memory at once, at most `seeds` (measured once per spec)."""
    one, two = step_memory(spec, 1, device, size), step_memory(spec, 2, device, size)
    per_seed = max(two - one, 1)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(seeds, int((1 - CUDA_HEADROOM) * free // per_seed)))


@functools.cache
def vmap_problem(spec: ArmSpec, size: int) -> str | None:
    """Why two seeds of `spec` cannot train as one vmapped computation (one line), or None when
    they can: one training step (forward, backward, clipping, Adam) on the CPU at the spec's
    input size."""
    try:
        train_step_call(spec, 2, torch.device("cpu"), size=size, batch=4)
    except Exception as error:  # a user's network: any failure means "train it one seed at a time"
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return None


def device_fusion(spec: ArmSpec, seeds: int, device: torch.device, size: int) -> int:
    """The device's fusion size for a cell of `seeds` runs of `spec` on size x size images:
    CPU_FUSION on the CPU, what the memory holds on CUDA (module docstring); every seed where
    CUDA is named but this machine has none (a dry run planning for a GPU: unmeasured)."""
    if device.type != "cuda":
        return CPU_FUSION
    return cuda_fusion(spec, seeds, device, size) if torch.cuda.is_available() else seeds


def fusion_size(spec: ArmSpec, seeds: int, size: int, wanted: int) -> int:
    """Seeds per cohort for a cell of `seeds` runs of `spec` on size x size images: `wanted` (at
    most `seeds`), or 1 with a printed note where the network's seeds cannot be vmapped."""
    fused = min(wanted, seeds)
    if fused > 1 and spec.builder and (problem := vmap_problem(spec, size)):
        print(
            f"note: {spec.builder} ({spec.arm}) trains one seed at a time: under vmap it raised {problem} "
            "(docs/training.md: what vmap cannot run)"
        )
        return 1
    return fused
