"""Whether a cohort's training step goes through torch.compile ([run] compile), and the
compiled forward itself.

The compiled step is the cohort's plain-torch network (`FusedSeeds`, for one seed too: there
the G-CNN's filters are one einsum on escnn's dense basis, so the whole forward is one graph)
with the per-run cross-entropy, compiled by inductor; its backward is the compiled counterpart.
The result agrees with the eager step to rounding, not bit for bit, so runs.csv records
`compiled` per run and the run key leaves it out (like the thread count).

Warm-up: the first group of a spec in a process traces and compiles (20-45 s on a 2-core CPU
when inductor's on-disk cache is cold, 4-20 s when it holds the kernels: CHANGELOG.md); later
groups of the same spec in that process reuse the compiled code.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# "auto" compiles a CPU cohort whose training is at least this much work (6 x MACs per image
# x training images x epochs x seeds, in TFLOP). Measured on the 2-core AMD EPYC (CHANGELOG.md's
# speed history):
# the compiled step saves 5-25% of the eager step, 10% in whole answer-protocol epochs of the 20k
# G-CNN, and the warm-up costs 4-20 s from inductor's on-disk cache (up to 45 s cold); a 30-epoch
# 20k G-CNN run (10.5 TFLOP) saved 7 s of steps, less than its warm-up. At 10% saved, 50 TFLOP
# (some 8 minutes of eager steps there) repays even a cold warm-up. CUDA stays eager under
# "auto": not measured yet.
AUTO_MIN_TFLOP = 50.0


def training_tflop(macs: int, images: int, epochs: int, seeds: int) -> float:
    """The training work of a cohort in TFLOP: forward plus a backward of about twice its cost."""
    return 6 * macs * images * epochs * seeds / 1e12


def use_compile(setting: str | bool, device: torch.device, tflop: float) -> bool:
    """[run] compile's decision for a cohort of `tflop` training work on `device`."""
    if isinstance(setting, bool):
        return setting
    return device.type == "cpu" and tflop >= AUTO_MIN_TFLOP


# graphs one compiled function may hold in a process (torch's default, 8, is two batch shapes
# of four cells; past it dynamo silently runs eager): a study's cells x batch shapes
RECOMPILE_LIMIT = 256
# torch.compile's backend; a test may set "aot_eager" (dynamo and AOT autograd's graphs without
# inductor's kernels, seconds instead of a minute to compile)
BACKEND = "inductor"
_COMPILED: dict[tuple[Callable, str], Callable] = {}


def compiled(function: Callable) -> Callable:
    """torch.compile(function), one per function per process, so that later cohorts reuse
    its traced graphs (dynamo guards on shapes and module structure, not on instances). Raises
    dynamo's per-function graph limit to RECOMPILE_LIMIT (process-wide, as torch's settings are)."""
    if (function, BACKEND) not in _COMPILED:
        import torch._dynamo

        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, RECOMPILE_LIMIT)
        _COMPILED[function, BACKEND] = torch.compile(function, backend=BACKEND, dynamic=False)
    return _COMPILED[function, BACKEND]
