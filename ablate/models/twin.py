"""Twins of a user's escnn network (docs/models.md, "Your own network"): the repeat arm is the
G-CNN's own network with every R2Conv replaced by a learnable-repetition convolution of the same
physical shape, the plain arm the network built on the trivial group with every R2Conv replaced
by an ordinary full k x k nn.Conv2d, the wide arm the G-CNN's own network with full k x k
convolutions of its physical shape (every weight free). Replacements take and return
GeometricTensors of the original field types, so the user's forward (residual sums included)
runs unchanged.

A regular field type of f fields has |G| f physical channels; its repeat twin's base has
base(f) = clamp(round(scale * f), 1, |G| f) channels, one multiplier `scale` per network (solved
so the twin's learnable count meets the budget, as the built-in repeat arm's base widths are).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from escnn import nn as enn
from torch import nn

from ablate.models.copies import CopyBatchNorm
from ablate.models.counting import count_params
from ablate.models.gcnn import FieldELU
from ablate.models.repeat import SCALARS_PER_BLOCK, RepeatConv2d

# escnn modules kept as they are in every arm: each acts on every channel of a field alone, or
# (MaskModule, RestrictionModule, DisentangleModule) is a fixed, parameter-free map of the tensor
# (a spatial mask; the group's restriction, which leaves the tensor as it is; a fixed change of
# basis within each field) that acts on the twins' tensors as on the G-CNN's
CHANNELWISE = (
    enn.MaskModule,
    enn.RestrictionModule,
    enn.DisentangleModule,
    enn.ReLU,
    enn.ELU,
    enn.LeakyReLU,
    enn.PointwiseNonLinearity,
    FieldELU,
    enn.PointwiseMaxPool2D,
    enn.PointwiseMaxPoolAntialiased2D,
    enn.PointwiseAvgPool2D,
    enn.PointwiseAvgPoolAntialiased2D,
    enn.PointwiseAdaptiveAvgPool2D,
    enn.PointwiseAdaptiveMaxPool2D,
    enn.PointwiseDropout,
    enn.IdentityModule,
)
CONTAINERS = (enn.SequentialModule, nn.Sequential, nn.ModuleList, nn.ModuleDict)


class TwinError(ValueError):
    """A module of the user's network that has no twin: the message names its path and type."""


class TensorTwin(enn.EquivariantModule):
    """A plain torch module on a GeometricTensor's tensor: (N, C_in, H, W) -> (N, C_out, H', W'),
    returned with the replaced module's output field type (so escnn's type checks still pass)."""

    def __init__(self, module: nn.Module, in_type: enn.FieldType, out_type: enn.FieldType):
        super().__init__()
        self.module, self.in_type, self.out_type = module, in_type, out_type

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        return enn.GeometricTensor(self.module(x.tensor), self.out_type, x.coords)

    def evaluate_output_shape(self, input_shape: tuple) -> tuple:
        raise NotImplementedError("TensorTwin: shapes come from its module")


class FieldMax(nn.Module):
    """(N, size * f, H, W) -> (N, f, H, W): the max over each run of `size` consecutive channels,
    what escnn's GroupPooling computes on fields of `size` channels (on fields of one channel, the
    input). The result is a new tensor, as escnn's is: amax's backward keeps its output, and the
    input may be the output an in-place activation before it keeps, so an in-place operation
    after it (E2SFCNN's ELU -> GroupPooling -> ELU(inplace=True)) trains."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.size == 1:
            return x.clone()
        n, c = x.shape[:2]
        return x.reshape(n, c // self.size, self.size, *x.shape[2:]).amax(dim=2).clone()


def field_kind(field_type: enn.FieldType) -> str:
    """'trivial' (every field trivial, or the trivial group), 'regular' (every field a permutation
    representation, which pointwise nonlinearities respect: regular, quotient, a restricted
    regular; a field of size s is s copies to the twins) or 'other' (irreducible, mixed ...)."""
    space = field_type.gspace
    representations = field_type.representations
    if space.fibergroup.order() == 1 or all(r.is_trivial() for r in representations):
        return "trivial"
    if all("pointwise" in r.supported_nonlinearities for r in representations):
        return "regular"
    return "other"


def _conv_options(conv: enn.R2Conv, path: str) -> dict:
    """stride, padding, dilation of an R2Conv; TwinError for what has no plain counterpart."""
    if conv.groups != 1 or conv.padding_mode != "zeros":
        raise TwinError(
            f"{path}: R2Conv with groups = {conv.groups}, padding_mode = {conv.padding_mode!r} cannot be "
            f"twinned; expected groups = 1 and padding_mode = 'zeros'"
        )
    return {"stride": conv.stride, "padding": conv.padding, "dilation": conv.dilation}


@dataclass(frozen=True)
class Replacement:
    """How one module of the user's network is replaced: `make(scale)` builds its torch module."""

    path: str
    in_type: enn.FieldType
    out_type: enn.FieldType
    make: Callable[[float], nn.Module]
    count: Callable[[float], int]  # the replacement's learnable parameters at `scale`


def base_channels(field_type: enn.FieldType, scale: float) -> int:
    """The repeat twin's base channels for a field type: base(f) for f regular fields, the
    channels themselves for trivial (input) fields."""
    if field_kind(field_type) == "trivial":
        return field_type.size
    fields = len(field_type)
    return max(1, min(round(scale * fields), field_type.size))


def _repeat_conv(conv: enn.R2Conv, path: str, mode: str) -> Replacement:
    options = _conv_options(conv, path)
    t_in, t_out, k = conv.in_type.size, conv.out_type.size, conv.kernel_size
    bias = conv.bias is not None

    def make(scale: float) -> nn.Module:
        b_in, b_out = base_channels(conv.in_type, scale), base_channels(conv.out_type, scale)
        return RepeatConv2d(t_in, t_out, k, base_in=b_in, base_out=b_out, mode=mode, bias=bias, **options)

    def count(scale: float) -> int:
        b_in, b_out = base_channels(conv.in_type, scale), base_channels(conv.out_type, scale)
        blocks = -(-t_out // b_out) * -(-t_in // b_in)
        return b_out * b_in * k * k + SCALARS_PER_BLOCK[mode] * blocks + (t_out if bias else 0)

    return Replacement(path, conv.in_type, conv.out_type, make, count)


def _norm_options(norm: enn.InnerBatchNorm, path: str) -> dict:
    if not (norm.affine and norm.track_running_stats):
        raise TwinError(
            f"{path}: InnerBatchNorm with affine = {norm.affine}, track_running_stats = "
            f"{norm.track_running_stats} cannot be twinned; expected both True"
        )
    return {"eps": norm.eps, "momentum": norm.momentum}


def _repeat_norm(norm: enn.InnerBatchNorm, path: str, repeat_structure: str) -> Replacement:
    """ "paper": a BatchNorm2d per physical channel; "matched": one scale and shift per base channel,
    statistics over its copies (CopyBatchNorm, as the built-in matched control)."""
    channels, options = norm.in_type.size, _norm_options(norm, path)

    def make(scale: float) -> nn.Module:
        if repeat_structure == "matched":
            return CopyBatchNorm(channels, base_channels(norm.in_type, scale), **options)
        return nn.BatchNorm2d(channels, **options)

    def count(scale: float) -> int:
        return 2 * (base_channels(norm.in_type, scale) if repeat_structure == "matched" else channels)

    return Replacement(path, norm.in_type, norm.out_type, make, count)


def _plain_conv(conv: enn.R2Conv, path: str) -> Replacement:
    options = _conv_options(conv, path)
    t_in, t_out, k, bias = conv.in_type.size, conv.out_type.size, conv.kernel_size, conv.bias is not None

    def make(scale: float) -> nn.Module:
        return nn.Conv2d(t_in, t_out, k, bias=bias, **options)

    return Replacement(path, conv.in_type, conv.out_type, make, lambda _: t_out * t_in * k * k + bias * t_out)


def _plain_norm(norm: enn.InnerBatchNorm, path: str) -> Replacement:
    channels, options = norm.in_type.size, _norm_options(norm, path)
    return Replacement(
        path,
        norm.in_type,
        norm.out_type,
        lambda _: nn.BatchNorm2d(channels, **options),
        lambda _: 2 * channels,
    )


def _pooling(pool: enn.GroupPooling, path: str, size: int) -> Replacement:
    """GroupPooling's own computation on the tensor: the max over each field's `size` channels
    (a copy on trivial fields)."""
    return Replacement(path, pool.in_type, pool.out_type, lambda _: FieldMax(size), lambda _: 0)


def _check_fields(module: enn.EquivariantModule, path: str, plain: bool) -> None:
    """TwinError unless the module's field types are permutation (regular-like) fields, or
    trivial ones (the plain arm's network, and network inputs)."""
    for field_type in (module.in_type, getattr(module, "out_type", module.in_type)):
        kind = field_kind(field_type)
        if kind == "other" or (plain and kind != "trivial"):
            wanted = (
                "trivial fields (the network built on the trivial group)"
                if plain
                else "fields of permutation representations (regular, quotient): the twins make a field of "
                "size s from s copies, which irreducible fields (norm or gated nonlinearities) have no "
                "counterpart for"
            )
            raise TwinError(
                f"{path}: {type(module).__name__} on {field_type} cannot be twinned; expected {wanted}"
            )


def _replacement(
    module: nn.Module, path: str, twin: str, mode: str, repeat_structure: str
) -> Replacement | None:
    """How `module` is replaced in the `twin` arm ("repeat", "plain" or "wide": the G-CNN's
    network with full filters, a norm per channel and its pooling's max); None if it is kept."""
    plain, free = twin == "plain", twin in ("plain", "wide")
    if isinstance(module, enn.R2Conv):
        _check_fields(module, path, plain)
        return _plain_conv(module, path) if free else _repeat_conv(module, path, mode)
    if isinstance(module, enn.InnerBatchNorm):
        _check_fields(module, path, plain)
        return _plain_norm(module, path) if free else _repeat_norm(module, path, repeat_structure)
    if isinstance(module, enn.GroupPooling):
        _check_fields(module, path, plain)
        sizes = sorted({r.size for r in module.in_type.representations})
        if len(sizes) > 1 and not plain:
            raise TwinError(
                f"{path}: GroupPooling over fields of sizes {sizes} cannot be twinned; expected one size"
            )
        return _pooling(module, path, 1 if plain else sizes[0])
    return None


def plan_twin(
    net: nn.Module, twin: str, mode: str = "swish", repeat_structure: str = "paper"
) -> list[Replacement]:
    """Every module of `net` the twin replaces, in module order. TwinError (naming the module's
    path and type) for an escnn module that is neither replaced nor acts channel by channel."""
    out: list[Replacement] = []

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            found = _replacement(child, path, twin, mode, repeat_structure)
            if found is not None:
                out.append(found)
            elif isinstance(child, CHANNELWISE):
                _check_fields(child, path, twin == "plain")
            elif type(child).__module__.startswith("escnn.") and not isinstance(child, CONTAINERS):
                raise TwinError(
                    f"{path}: {type(child).__name__} cannot be twinned: it acts on whole fields, which the "
                    "twins' copies have no counterpart for; expected R2Conv, InnerBatchNorm, GroupPooling or "
                    "a module acting channel by channel (docs/models.md lists each escnn module)"
                )
            else:
                walk(child, path)  # the user's own modules and containers: look inside

    walk(net, "")
    return out


def twin_counter(net: nn.Module, plan: list[Replacement]) -> Callable[[float], int]:
    """scale -> learnable parameters of the twin, without building it: the kept modules' own
    (counted once) plus each replacement's."""
    modules = dict(net.named_modules())
    kept = count_params(net) - sum(count_params(modules[r.path]) for r in plan)
    return lambda scale: kept + sum(r.count(scale) for r in plan)


def apply_twin(net: nn.Module, plan: list[Replacement], scale: float) -> nn.Module:
    """Replace the planned modules of `net` in place (TensorTwins of the same field types)."""
    for r in plan:
        parent_path, _, name = r.path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        setattr(parent, name, TensorTwin(r.make(scale), r.in_type, r.out_type))
    return net
