"""The matched repeat control's norm and head (`repeat_structure = "matched"`): a base channel
and its copies treated as escnn treats a regular field. CopyBatchNorm has one scale and shift per
base channel and statistics over its copies (as InnerBatchNorm); CopyMax takes the max over the
copies before the head (as GroupPooling). Physical channel i * base + o is copy i of base
channel o."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def copy_index(channels: int, base: int) -> torch.Tensor:
    """(channels,) base channel of each physical channel: channel i * base + o is copy i of base o."""
    return torch.arange(channels) % base


def copy_batch_norm(
    x: torch.Tensor,
    copy_of: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor,
    running_var: torch.Tensor,
    training: bool,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """Batch norm of (N, T, H, W) whose statistics, scale and shift are per base channel: channel t
    is a copy of base channel copy_of[t] (T,); weight, bias and the running stats are (base,)."""
    if training:
        ones = torch.ones(
            copy_of.shape, dtype=x.dtype, device=x.device
        )  # not bincount: static shapes compile
        counts = torch.zeros_like(weight).index_add(0, copy_of, ones) * (x.shape[0] * x[0, 0].numel())
        mean = torch.zeros_like(weight).index_add(0, copy_of, x.sum(dim=(0, 2, 3))) / counts
        centred = x - mean[copy_of].view(1, -1, 1, 1)
        var = torch.zeros_like(weight).index_add(0, copy_of, centred.pow(2).sum(dim=(0, 2, 3))) / counts
        with torch.no_grad():
            running_mean.lerp_(mean, momentum)
            running_var.lerp_(var * counts / (counts - 1), momentum)
    else:
        var = running_var
        centred = x - running_mean[copy_of].view(1, -1, 1, 1)
    scale = (weight * torch.rsqrt(var + eps))[copy_of]
    return centred * scale.view(1, -1, 1, 1) + bias[copy_of].view(1, -1, 1, 1)


def copy_max(x: torch.Tensor, copy_of: torch.Tensor, n_bases: int) -> torch.Tensor:
    """(N, T, H, W) -> (N, n_bases, H, W): the max over each base channel's copies (copy_of: (T,);
    escnn GroupPooling's role)."""
    index = copy_of.view(1, -1, 1, 1).expand_as(x)
    out = x.new_full((x.shape[0], n_bases, *x.shape[2:]), -torch.inf)
    # a copy: its backward keeps the max it returned, which an in-place op after it must not touch
    return out.scatter_reduce(1, index, x, reduce="amax", include_self=True).clone()


class CopyBatchNorm(nn.Module):
    """BatchNorm over T physical channels with one scale and shift per base channel, shared by its
    copies, and statistics over the copies together (as escnn's InnerBatchNorm treats a field)."""

    def __init__(self, channels: int, base: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(base))
        self.bias = nn.Parameter(torch.zeros(base))
        self.register_buffer("running_mean", torch.zeros(base))
        self.register_buffer("running_var", torch.ones(base))
        self.register_buffer("copy_of", copy_index(channels, base), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, H, W) -> (N, T, H, W). When T is a whole number r of copies of the base
        channels, channel i * base + o is copy i of base channel o, so x viewed as (N r, base, H,
        W) is one ordinary batch norm over the base channels (torch's fused kernel)."""
        n, t = x.shape[:2]
        base = self.weight.numel()
        if t % base == 0:
            out = F.batch_norm(
                x.reshape(n * (t // base), base, *x.shape[2:]), self.running_mean, self.running_var,
                self.weight, self.bias, self.training, self.momentum, self.eps,
            )  # fmt: skip
            return out.reshape(x.shape)
        return copy_batch_norm(
            x, self.copy_of, self.weight, self.bias, self.running_mean, self.running_var,
            self.training, self.momentum, self.eps,
        )  # fmt: skip

    @torch.no_grad()
    def to_batch_norm(self) -> nn.BatchNorm2d:
        """The eval-mode equivalent on the T physical channels."""
        norm = nn.BatchNorm2d(len(self.copy_of), eps=self.eps).to(self.weight.device).eval()
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(norm, name).copy_(getattr(self, name)[self.copy_of])
        return norm


class CopyMax(nn.Module):
    """(N, T, H, W) -> (N, base, H, W): the max over each base channel's copies."""

    def __init__(self, channels: int, base: int):
        super().__init__()
        self.base = base
        self.register_buffer("copy_of", copy_index(channels, base), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, T, H, W) -> (N, base, H, W); a reshape when T is a whole number of copies. The result
        is a copy of the max (amax's backward keeps its output), so an in-place operation after it
        (ELU(inplace=True)) trains."""
        n, t = x.shape[:2]
        if t % self.base == 0:
            return x.reshape(n, t // self.base, self.base, *x.shape[2:]).amax(dim=1).clone()
        return copy_max(x, self.copy_of, self.base)
