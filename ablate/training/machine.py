"""The machine a speed figure runs on: the CPU's name and kind, and whether bf16 is native."""

from __future__ import annotations

import functools
import re

import torch


@functools.cache
def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU as a speed figure must name it: model name, family and model (which tell AMD's
    AVX-512 Zen 4 from its AVX2 Zen 3, both "AMD EPYC") and the vector ISA torch's kernels use,
    e.g. "AMD EPYC (family 25, model 1; torch kernels AVX2)". From /proc/cpuinfo (Linux) unless
    `cpuinfo` gives its text; the platform's processor name elsewhere."""
    import platform

    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    first_core = cpuinfo.split("\n\n")[0]
    fields = dict(re.findall(r"^(model name|cpu family|model)\s*:\s*(.*?)\s*$", first_core, re.M))
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    where = f"family {fields['cpu family']}, model {fields['model']}; " if "cpu family" in fields else ""
    return f"{name} ({where}torch kernels {torch.backends.cpu.get_cpu_capability()})"


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 natively: CUDA's own answer; on the CPU, oneDNN's (AVX-512
    BF16 or AMX). Without it bf16 runs emulated, about 100x slower than fp32 (1.1 GFLOP/s on an
    AVX2 AMD EPYC), so the bench does not time it."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(probe()) if probe is not None else False
