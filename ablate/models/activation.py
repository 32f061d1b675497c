"""The torch building blocks the arms share: an ELU that is fast on the CPU, the activation by
name and the MLP head.

On this project's CPUs (AVX-512 builds of torch 2.14) `F.elu` takes its negative branch through
a slow `expm1` path (3-7x slower than the form below on a (64, 64, 28, 28) batch; 25-30% of a
training step). `elu` computes relu(x) + exp(min(x, 0)) - 1 instead (same values within 6e-8
absolute) and uses torch's own ELU backward on its output. On other devices it is `F.elu`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _CpuELU(torch.autograd.Function):
    """relu(x) + exp(min(x, 0)) - 1 with torch's ELU backward on the output. The forward and its
    context are separate (setup_context) so torch.func's vmap can batch it (many seeds' models as
    one computation: training.vmapped)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).add_(torch.clamp_max(x, 0).exp_().sub_(1))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, y)


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU (alpha 1) of any-shaped x; the fast form on the CPU."""
    return _CpuELU.apply(x) if x.device.type == "cpu" else F.elu(x)


class ELU(nn.Module):
    """nn.ELU (alpha 1) through `elu`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return elu(x)


def activation(name: str) -> nn.Module:
    """The torch activation called `name` ("elu": the CPU-fast ELU, or "relu")."""
    return ELU() if name == "elu" else nn.ReLU(inplace=True)


def mlp_head(in_features: int, hidden: int, classes: int, act: str) -> nn.Sequential:
    """(N, C, H, W) -> global average pool -> Linear -> BatchNorm1d -> act -> Linear -> (N, classes)."""
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.BatchNorm1d(hidden),
        activation(act),
        nn.Linear(hidden, classes),
    )
