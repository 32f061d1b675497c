"""S seeds of one built-in arm as one grouped network: `FusedSeeds`, written layer type by layer
type (any other network goes through training.vmapped).

Every layer of the S seed models becomes one layer over S x the channels: convolutions are
grouped (groups = S, seed s owns the s-th block of channels), BatchNorm runs over S x C
channels (so each seed keeps its own statistics), heads are batched matrix products. Every
fused tensor is stacked on a leading seed axis, (S, ...), so seed s's tensors are `t[s]`:
`seed_state(s)` gives a state dict that loads into the unfused model and `load_seed` takes
one back, which is how fused runs write and resume per-run checkpoints.

Input (B, S, H, W): channel s carries seed s's batch. Output (B, S, classes) logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from escnn import nn as enn
from torch import nn

from ablate.models.activation import ELU
from ablate.models.copies import CopyBatchNorm, CopyMax, copy_batch_norm, copy_max
from ablate.models.gcnn import FieldELU, dense_basis, expand_dense
from ablate.models.repeat import RepeatConv2d, paper_repeat_weight, repeat_weight
from ablate.training.stacked import StackedSeeds


class NoFusedForm(TypeError):
    """A model with a layer (or a layout) FusedSeeds has no grouped form of."""


class _Fused(nn.Module):
    """A fused layer: `keys` maps each stacked tensor's attribute to the seed module's state key."""

    keys: dict[str, str] = {}

    def _stack(
        self, modules: Sequence[nn.Module], params: Sequence[str], buffers: Sequence[str] = ()
    ) -> None:
        states = [m.state_dict() for m in modules]
        for attr in params:
            key = self.keys[attr]
            if states[0].get(key) is None:
                setattr(self, attr, None)
                continue
            setattr(self, attr, nn.Parameter(torch.stack([s[key].detach().clone() for s in states])))
        for attr in buffers:
            self.register_buffer(attr, torch.stack([s[self.keys[attr]].detach().clone() for s in states]))

    def tensors(self) -> dict[str, torch.Tensor]:
        """{seed-module state key: stacked tensor} of this layer."""
        return {
            key: getattr(self, attr) for attr, key in self.keys.items() if getattr(self, attr) is not None
        }


class FusedConv(_Fused):
    """S nn.Conv2d as one grouped conv: weight (S, C_out, C_in, k, k), bias (S, C_out) or None."""

    keys = {"weight": "weight", "bias": "bias"}

    def __init__(self, convs: Sequence[nn.Conv2d]):
        super().__init__()
        self.stride, self.padding = convs[0].stride, convs[0].padding
        self._stack(convs, ("weight", "bias"))

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight, self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S * C_in, H, W) -> (B, S * C_out, H', W')."""
        weight, bias = self._weights()
        s = weight.shape[0]
        weight = weight.reshape(-1, *weight.shape[2:])
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            weight = weight.contiguous(memory_format=torch.channels_last)
        return F.conv2d(
            x,
            weight,
            None if bias is None else bias.reshape(-1),
            stride=self.stride,
            padding=self.padding,
            groups=s,
        )


class FusedRepeatConv(FusedConv):
    """S RepeatConv2d: base weights (S, c_out, c_in, k, k) and scalars (S, r_out, r_in), or with
    the paper's remainder (S, 1, r_out * r_in) and the remainder pairs (S, 2)."""

    keys = {a: a for a in ("weight", "alpha", "beta", "rows", "cols", "bias")}

    def __init__(self, convs: Sequence[RepeatConv2d]):
        nn.Module.__init__(self)
        first = convs[0]
        self.stride, self.padding, self.mode = first.stride, first.padding, first.mode
        self.remainder = first.remainder
        self.shape = (first.r_out, first.r_in, first.out_channels, first.in_channels)
        self._stack(convs, tuple(self.keys))

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.remainder == "floor":
            r_out, r_in, t_out, t_in = self.shape
            return paper_repeat_weight(
                self.weight, self.alpha, self.beta, self.rows, self.cols, t_out, t_in
            ), self.bias
        return repeat_weight(self.weight, self.alpha, self.beta, self.mode, *self.shape), self.bias


class FusedR2Conv(FusedConv):
    """S escnn R2Conv: steerable-basis coefficients (S, dim), expanded to S filters per step by one
    einsum with escnn's basis as one dense tensor (dense_basis)."""

    keys = {"weights": "weights", "bias": "bias"}

    def __init__(self, convs: Sequence[enn.R2Conv]):
        nn.Module.__init__(self)
        first = convs[0]
        self.stride, self.padding = first.stride, first.padding
        self.fields = (len(first.out_type), len(first.in_type))
        try:
            self.register_buffer("basis", dense_basis(first))  # fixed, shared by the seeds
        except ValueError as error:
            raise NoFusedForm(str(error)) from None
        if first.bias is not None:
            self.register_buffer("bias_expansion", first.bias_expansion.clone())
        self._stack(convs, ("weights", "bias"))

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        filters = expand_dense(self.weights, self.basis, *self.fields)
        bias = None if self.bias is None else self.bias @ self.bias_expansion.T
        return filters, bias


class FusedBatchNorm(_Fused):
    """S BatchNorm layers over C channels as one over S x C. `copies`: channels that share one
    statistic (escnn InnerBatchNorm normalises each regular field's N channels together)."""

    def __init__(self, norms: Sequence[nn.Module], prefix: str = "", copies: int = 1):
        super().__init__()
        first = norms[0].get_submodule(prefix.rstrip(".")) if prefix else norms[0]
        self.keys = {
            a: prefix + a for a in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        }
        self.eps, self.momentum, self.copies = first.eps, first.momentum, copies
        self._stack(norms, ("weight", "bias"), ("running_mean", "running_var", "num_batches_tracked"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S * C * copies, ...) normalised per seed and channel."""
        shape = x.shape
        if self.copies > 1:
            x = x.reshape(shape[0], -1, self.copies, *shape[2:])
        if self.training:
            self.num_batches_tracked.add_(1)
        out = F.batch_norm(
            x,
            self.running_mean.view(-1),
            self.running_var.view(-1),
            self.weight.reshape(-1),
            self.bias.reshape(-1),
            self.training,
            self.momentum,
            self.eps,
        )
        return out.reshape(shape)


def _seed_copies(copy_of: torch.Tensor, base: int, seeds: int) -> torch.Tensor:
    """copy_of of S stacked copies of a layer: seed s's base channel b becomes s * base + b."""
    return torch.cat([copy_of + s * base for s in range(seeds)])


class FusedCopyBatchNorm(_Fused):
    """S CopyBatchNorm (the matched repeat arm's norm) as one over S x T channels and S x base groups."""

    keys = {a: a for a in ("weight", "bias", "running_mean", "running_var")}

    def __init__(self, norms: Sequence[CopyBatchNorm]):
        super().__init__()
        first = norms[0]
        self.eps, self.momentum = first.eps, first.momentum
        self.register_buffer(
            "copy_of", _seed_copies(first.copy_of, first.weight.numel(), len(norms)), persistent=False
        )
        self._stack(norms, ("weight", "bias"), ("running_mean", "running_var"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return copy_batch_norm(
            x, self.copy_of, self.weight.reshape(-1), self.bias.reshape(-1), self.running_mean.view(-1),
            self.running_var.view(-1), self.training, self.momentum, self.eps,
        )  # fmt: skip


class FusedCopyMax(nn.Module):
    """S CopyMax: (B, S * T, H, W) -> (B, S * base, H, W)."""

    def __init__(self, maxes: Sequence[CopyMax]):
        super().__init__()
        first = maxes[0]
        self.n = first.base * len(maxes)
        self.register_buffer("copy_of", _seed_copies(first.copy_of, first.base, len(maxes)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return copy_max(x, self.copy_of, self.n)


class FusedLinear(_Fused):
    """S nn.Linear as one batched product: weight (S, out, in), bias (S, out)."""

    keys = {"weight": "weight", "bias": "bias"}

    def __init__(self, linears: Sequence[nn.Linear]):
        super().__init__()
        self._stack(linears, ("weight", "bias"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, S * in) -> (B, S * out)."""
        s, _, n_in = self.weight.shape
        out = torch.einsum("bsi,soi->bso", x.reshape(x.shape[0], s, n_in), self.weight) + self.bias
        return out.reshape(x.shape[0], -1)


class GroupMax(nn.Module):
    """escnn GroupPooling on S x F regular fields of size N: (B, S*F*N, H, W) -> (B, S*F, H, W)."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, self.n, *x.shape[2:]).amax(dim=2)


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in forward order, with their state-dict prefixes."""
    if not all(isinstance(getattr(model, part, None), nn.Module) for part in ("features", "head")):
        raise NoFusedForm(f"FusedSeeds: {type(model).__name__} is not a features-and-head network")
    out = []
    for part in ("features", "head"):
        for name, module in getattr(model, part).named_children():
            out.append((f"{part}.{name}.", module))
    return out


def _fuse_layer(modules: Sequence[nn.Module]) -> _Fused | nn.Module:
    """One fused layer from the same layer of each seed model."""
    first = modules[0]
    if isinstance(first, RepeatConv2d):
        return FusedRepeatConv(modules)
    if isinstance(first, nn.Conv2d):
        return FusedConv(modules)
    if isinstance(first, enn.R2Conv):
        return FusedR2Conv(modules)
    if isinstance(first, nn.modules.batchnorm._BatchNorm):
        return FusedBatchNorm(modules)
    if isinstance(first, enn.InnerBatchNorm):
        (size,) = {r.size for r in first.in_type.representations}
        return FusedBatchNorm(modules, prefix=f"batch_norm_[{size}].", copies=size)
    if isinstance(first, nn.Linear):
        return FusedLinear(modules)
    if isinstance(first, CopyBatchNorm):
        return FusedCopyBatchNorm(modules)
    if isinstance(first, CopyMax):
        return FusedCopyMax(modules)
    if isinstance(first, (ELU, FieldELU)):
        return ELU()
    if isinstance(first, (nn.ReLU, enn.ReLU)):
        return nn.ReLU()
    if isinstance(first, nn.MaxPool2d):
        return nn.MaxPool2d(first.kernel_size, first.stride, first.padding)
    if isinstance(first, enn.PointwiseMaxPool2D):
        return nn.MaxPool2d(first.kernel_size, first.stride, first.padding)
    if isinstance(first, enn.GroupPooling):
        (size,) = {r.size for r in first.in_type.representations}
        return GroupMax(size)
    if isinstance(first, enn.PointwiseAdaptiveAvgPool2D):  # per channel, as on plain tensors
        return nn.AdaptiveAvgPool2d(first.output_size)
    if isinstance(first, (nn.AdaptiveAvgPool2d, nn.Flatten)):
        return first.__class__(*([first.output_size] if isinstance(first, nn.AdaptiveAvgPool2d) else []))
    raise NoFusedForm(f"FusedSeeds: no fused form of {type(first).__name__}")


class FusedSeeds(StackedSeeds):
    """S models of one arm and spec (different seeds) trained as one grouped network."""

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        self.seeds = len(models)
        leaves = [_leaves(m) for m in models]
        self.prefixes = [prefix for prefix, _ in leaves[0]]
        self.layers = nn.ModuleList(
            _fuse_layer([seed[i][1] for seed in leaves]) for i in range(len(self.prefixes))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, S, H, W), channel s for seed s -> (B, S, classes) logits."""
        for layer in self.layers:
            x = layer(x)
        return x.reshape(x.shape[0], self.seeds, -1)

    def stacked(self) -> dict[str, torch.Tensor]:
        """{seed-model state key: stacked (S, ...) tensor} for every fused parameter and statistic."""
        out = {}
        for prefix, layer in zip(self.prefixes, self.layers):
            if isinstance(layer, _Fused):
                out.update({prefix + key: tensor for key, tensor in layer.tensors().items()})
        return out
