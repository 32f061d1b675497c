"""Networks written to the builder contract (docs/models.md, "Your own network"):

    build(gspace, width: float, in_channels: int, classes: int) -> torch.nn.Module

maps images (B, in_channels, H, W) to logits (B, classes), invariant to `gspace`'s group. Name one
in a study as `[models] builder = "ablate.models.zoo:equivariant_resnet"`.
"""

from __future__ import annotations

import torch
from escnn import nn as enn
from torch import nn


class ResidualBlock(enn.EquivariantModule):
    """conv 3x3 (to `mid_type`) -> norm -> ReLU -> conv 3x3 -> norm, plus the input (through a 1x1
    conv and norm where the width changes), then ReLU. Regular fields in and out; size kept."""

    def __init__(self, in_type: enn.FieldType, mid_type: enn.FieldType, out_type: enn.FieldType):
        super().__init__()
        self.in_type, self.out_type = in_type, out_type
        self.body = enn.SequentialModule(
            enn.R2Conv(in_type, mid_type, 3, padding=1, bias=False),
            enn.InnerBatchNorm(mid_type),
            enn.ReLU(mid_type, inplace=True),
            enn.R2Conv(mid_type, out_type, 3, padding=1, bias=False),
            enn.InnerBatchNorm(out_type),
        )
        self.shortcut = (
            enn.IdentityModule(in_type)
            if in_type == out_type
            else enn.SequentialModule(
                enn.R2Conv(in_type, out_type, 1, bias=False), enn.InnerBatchNorm(out_type)
            )
        )
        self.relu = enn.ReLU(out_type, inplace=True)

    def forward(self, x: enn.GeometricTensor) -> enn.GeometricTensor:
        return self.relu(self.body(x) + self.shortcut(x))

    def evaluate_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape[:1] + (self.out_type.size,) + input_shape[2:]


class EquivariantResNet(nn.Module):
    """A stem (4x4 conv: 28x28 inputs become 29x29, so the stride-2 anti-aliased pools sample a
    grid that 90-degree turns map onto itself), stages of residual blocks with an anti-aliased
    max pool between them, GroupPooling, a global average and a linear head.

    widths: regular fields per stage; inner: per stage, the regular fields inside each of its
    residual blocks (one block per entry). Input (B, in_channels, H, W) -> (B, classes) logits.
    """

    def __init__(self, gspace, widths: list[int], inner: list[list[int]], in_channels: int, classes: int):
        super().__init__()
        self.in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)

        def regular(n: int) -> enn.FieldType:
            return enn.FieldType(gspace, [gspace.regular_repr] * n)

        types = [regular(w) for w in widths]
        layers: list[enn.EquivariantModule] = [
            enn.R2Conv(self.in_type, types[0], 4, padding=2, bias=False),
            enn.InnerBatchNorm(types[0]),
            enn.ReLU(types[0], inplace=True),
        ]
        previous = types[0]
        for stage, field_type in enumerate(types):
            if stage:
                layers.append(enn.PointwiseMaxPoolAntialiased2D(previous, kernel_size=3, stride=2, padding=1))
            for mid in inner[stage]:
                layers.append(ResidualBlock(previous, regular(mid), field_type))
                previous = field_type
        layers.append(enn.GroupPooling(previous))
        self.features = enn.SequentialModule(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(len(previous), classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(enn.GeometricTensor(x, self.in_type)).tensor)


STAGES = (6.0, 12.0)  # regular fields per stage at width 1
INNER = ((5.0, 7.0), (9.5, 13.5))  # fields inside each stage's two blocks at width 1: distinct
# multipliers, so the learnable count rises in small steps with the width and a budget is met closely


def equivariant_resnet(gspace, width: float, in_channels: int, classes: int) -> nn.Module:
    """Two stages of two residual blocks (STAGES and INNER times `width` regular fields)."""

    def fields(m: float) -> int:
        return max(1, round(m * width))

    return EquivariantResNet(
        gspace, [fields(m) for m in STAGES], [[fields(m) for m in s] for s in INNER], in_channels, classes
    )
