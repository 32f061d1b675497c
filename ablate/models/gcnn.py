"""The `gcnn` arm: an escnn regular-representation G-CNN (C_N or D_N, D1 included) on the shared backbone."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from functools import cache

import torch
from escnn import nn as enn
from torch import nn

from ablate.models.activation import ELU, elu, mlp_head
from ablate.models.arms import DEFAULT_GROUP, NO_STRUCTURE, Group
from ablate.models.backbone import Backbone, mlp_head_params
from ablate.models.counting import count_params


class FieldELU(enn.EquivariantModule):
    """Pointwise ELU on regular fields (equivariant: it acts on each channel alone), through the
    CPU-fast `ablate.models.activation.elu`."""

    def __init__(self, field_type: enn.FieldType):
        super().__init__()
        self.in_type = self.out_type = field_type

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        return enn.GeometricTensor(elu(x.tensor), self.out_type, x.coords)

    def evaluate_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def export(self) -> nn.Module:
        return ELU()


def _activation(name: str, field_type: enn.FieldType) -> enn.EquivariantModule:
    return FieldELU(field_type) if name == "elu" else enn.ReLU(field_type, inplace=True)


class GCNN(nn.Module):
    """C_N or D_N G-CNN: per layer R2Conv -> InnerBatchNorm -> activation [-> PointwiseMaxPool],
    then GroupPooling (invariant fields) and the backbone's head.

    fields: regular fields per layer (physical channels = |G| * fields; |G| = N, or 2N for D_N).
    r2conv_options: extra R2Conv arguments per layer index (sigma, rings, frequencies_cutoff of
    the steerable basis; escnn's defaults otherwise). pool_space_first: average over space before
    GroupPooling (the seed paper's order) instead of after it.
    Input (B, channels, H, W) -> (B, classes) logits, invariant to the group's exact
    transformations (`group.transformations`) when every pooled map is even.
    """

    arm = "gcnn"
    repeat_mode = None
    repeat_structure = NO_STRUCTURE

    def __init__(
        self,
        backbone: Backbone,
        fields: Sequence[int],
        group: Group = DEFAULT_GROUP,
        classes: int = 10,
        r2conv_options: Callable[[int], dict] | None = None,
        pool_space_first: bool = False,
        channels: int = 1,
        arm: str = "gcnn",
    ):
        super().__init__()
        self.arm = arm  # "gcnn", or "wrong": the G-CNN on a group that is not the data's symmetry
        if group.trivial:
            raise ValueError(f"group: expected a group with more than one element, found {group.label}")
        self.backbone, self.group = backbone, group
        self.learnable_widths = [int(f) for f in fields]
        self.physical_widths = [group.size * f for f in self.learnable_widths]
        self.gspace = group.gspace()
        self.in_type = enn.FieldType(self.gspace, [self.gspace.trivial_repr] * channels)
        regular = self.gspace.regular_repr
        modules: list[enn.EquivariantModule] = []
        field_in = self.in_type
        for index, (layer, n_fields) in enumerate(zip(backbone.layers, self.learnable_widths)):
            field_out = enn.FieldType(self.gspace, [regular] * n_fields)
            options = r2conv_options(index) if r2conv_options is not None else {}
            modules += [
                enn.R2Conv(field_in, field_out, layer.kernel, padding=layer.padding, bias=False, **options),
                enn.InnerBatchNorm(field_out),
                _activation(backbone.activation, field_out),
            ]
            if layer.pool_after:
                modules.append(enn.PointwiseMaxPool2D(field_out, 2))
            field_in = field_out
        if backbone.head == "conv":
            field_out = enn.FieldType(self.gspace, [regular] * classes)
            modules.append(enn.R2Conv(field_in, field_out, backbone.head_kernel, bias=True))
            field_in = field_out
        if pool_space_first:
            modules.append(enn.PointwiseAdaptiveAvgPool2D(field_in, 1))
        modules.append(enn.GroupPooling(field_in))
        self.features = enn.SequentialModule(*modules)
        invariant = len(field_in)
        if backbone.head == "mlp":
            self.head = mlp_head(invariant, backbone.hidden, classes, backbone.activation)
        else:
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, H, W) -> (N, classes) logits."""
        return self.head(self.features(enn.GeometricTensor(x, self.in_type)).tensor)

    def export(self) -> nn.Sequential:
        """Plain-torch copy for fast evaluation (eval mode; same outputs as this model in eval), on
        this model's device (escnn builds some exported layers, e.g. InnerBatchNorm's, on the CPU)."""
        was_training = self.training
        self.eval()
        exported = nn.Sequential(self.features.export(), copy.deepcopy(self.head)).eval()
        self.train(was_training)
        return exported.to(next(self.parameters()).device)


@cache
def _conv_params(group: Group, in_trivial: bool, kernel: int, bias: bool) -> int:
    """Learnable parameters of one R2Conv from one field (trivial or regular) to one regular field."""
    space = group.gspace()
    field_in = enn.FieldType(space, [space.trivial_repr if in_trivial else space.regular_repr])
    conv = enn.R2Conv(
        field_in, enn.FieldType(space, [space.regular_repr]), kernel, bias=bias, initialize=False
    )
    return count_params(conv)


def gcnn_params(
    backbone: Backbone,
    fields: Sequence[int],
    group: Group = DEFAULT_GROUP,
    classes: int = 10,
    channels: int = 1,
) -> int:
    """Learnable parameters of GCNN(...) from escnn's per-field-pair counts (bilinear in fields)."""
    total, f_in, trivial = 0, channels, True
    for layer, f_out in zip(backbone.layers, fields):
        total += f_in * f_out * _conv_params(group, trivial, layer.kernel, False) + 2 * f_out
        f_in, trivial = f_out, False
    if backbone.head == "mlp":
        return total + mlp_head_params(f_in, backbone.hidden, classes)
    per_pair = _conv_params(group, False, backbone.head_kernel, False)
    bias = _conv_params(group, False, backbone.head_kernel, True) - per_pair
    return total + f_in * classes * per_pair + classes * bias


@torch.no_grad()
def dense_basis(conv: enn.R2Conv) -> torch.Tensor:
    """escnn's steerable basis of `conv` as one dense tensor (D, o, i, k, k): the filter of
    coefficients w (n_out * n_in * D,) is einsum("abd,doikl->aobikl", w.view(n_out, n_in, D),
    basis) reshaped to (n_out * o, n_in * i, k, k), for n_out fields of size o from n_in of size i.

    Read off escnn's own expansion (D unit coefficients of the first field pair) and checked on
    random coefficients against it to 1e-6 of the filter's scale; ValueError for a conv with
    more than one pair of field types (the package's G-CNN has one)."""
    kinds_in, kinds_out = ({r.name for r in t.representations} for t in (conv.in_type, conv.out_type))
    if len(kinds_in) > 1 or len(kinds_out) > 1:
        raise ValueError(f"dense_basis: fields of more than one type ({sorted(kinds_in | kinds_out)})")
    size_in, size_out = conv.in_type.representations[0].size, conv.out_type.representations[0].size
    n_in, n_out, k = len(conv.in_type), len(conv.out_type), conv.kernel_size
    expansion, dim = conv.basisexpansion, conv.basisexpansion.dimension()
    d, remainder = divmod(dim, n_in * n_out)
    if remainder:
        raise ValueError(f"dense_basis: {dim} coefficients are not {n_out} x {n_in} field pairs")
    unit = torch.zeros(dim, device=conv.weights.device, dtype=conv.weights.dtype)
    basis = []
    for j in range(d):
        unit.zero_()
        unit[j] = 1.0
        basis.append(expansion(unit)[:size_out, :size_in].reshape(size_out, size_in, k, k))
    basis = torch.stack(basis)
    probe = torch.randn(dim, device=unit.device, dtype=unit.dtype)
    expected = expansion(probe).reshape(n_out * size_out, n_in * size_in, k, k)
    if not torch.allclose(
        expand_dense(probe[None], basis, n_out, n_in)[0],
        expected,
        rtol=0,
        atol=1e-6 * (1 + expected.abs().max()),
    ):
        raise ValueError("dense_basis: escnn's expansion is not one block per field pair for this conv")
    return basis


def expand_dense(weights: torch.Tensor, basis: torch.Tensor, n_out: int, n_in: int) -> torch.Tensor:
    """Filters (S, n_out * o, n_in * i, k, k) of coefficients (S, n_out * n_in * D) on a
    dense_basis (D, o, i, k, k): one einsum."""
    s, (d, o, i, k, _) = weights.shape[0], basis.shape
    filters = torch.einsum("sabd,doikl->saobikl", weights.view(s, n_out, n_in, d), basis)
    return filters.reshape(s, n_out * o, n_in * i, k, k)
