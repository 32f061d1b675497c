"""Builders for the tests of ablate.models.builder: the built-in repeatnet backbone written to the
builder contract, and networks each of which breaks the contract one way."""

import torch
from escnn import nn as enn
from torch import nn

from ablate.models.activation import mlp_head
from ablate.models.backbone import get_backbone
from ablate.models.gcnn import FieldELU

NOT_CALLABLE = 3


class RepeatNet(nn.Module):
    """The repeatnet backbone as models.gcnn.GCNN builds it, on any gspace: per layer R2Conv ->
    InnerBatchNorm -> ELU [-> max pool], GroupPooling, the MLP head."""

    def __init__(self, gspace, fields: list[int], in_channels: int, classes: int):
        super().__init__()
        backbone = get_backbone("repeatnet")
        self.in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)
        modules, field_in = [], self.in_type
        for layer, n in zip(backbone.layers, fields):
            field_out = enn.FieldType(gspace, [gspace.regular_repr] * n)
            modules += [
                enn.R2Conv(field_in, field_out, layer.kernel, padding=layer.padding, bias=False),
                enn.InnerBatchNorm(field_out),
                FieldELU(field_out),
            ]
            if layer.pool_after:
                modules.append(enn.PointwiseMaxPool2D(field_out, 2))
            field_in = field_out
        modules.append(enn.GroupPooling(field_in))
        self.features = enn.SequentialModule(*modules)
        self.head = mlp_head(len(field_in), backbone.hidden, classes, backbone.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(enn.GeometricTensor(x, self.in_type)).tensor)


def repeatnet(gspace, width: float, in_channels: int, classes: int) -> nn.Module:
    """The repeatnet backbone's relative widths (16, 24, 32, 32, 48, 64) times `width` fields."""
    relative = [layer.width for layer in get_backbone("repeatnet").layers]
    return RepeatNet(gspace, [max(1, round(width * r)) for r in relative], in_channels, classes)


def raises(gspace, width, in_channels, classes):
    raise RuntimeError("my network is broken")


def wrong_shape(gspace, width, in_channels, classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, classes + 1))


class NotInvariant(nn.Module):
    """The repeatnet G-CNN after a plain convolution of the raw image: not invariant."""

    def __init__(self, inner: nn.Module, in_channels: int):
        super().__init__()
        self.inner, self.pre = inner, nn.Conv2d(in_channels, in_channels, 3, padding=1)

    def forward(self, x):
        return self.inner(self.pre(x))


def not_invariant(gspace, width, in_channels, classes):
    return NotInvariant(repeatnet(gspace, width, in_channels, classes), in_channels)


class NormNet(nn.Module):
    """A G-CNN with a norm nonlinearity on irreducible fields: no twin exists."""

    def __init__(self, gspace, width, in_channels, classes):
        super().__init__()
        self.in_type = enn.FieldType(gspace, [gspace.trivial_repr] * in_channels)
        fields = enn.FieldType(gspace, [gspace.irrep(1)] * max(1, round(4 * width)))
        self.conv = enn.R2Conv(self.in_type, fields, 5, padding=2)
        self.norm = enn.NormNonLinearity(fields)
        self.pool = enn.NormPool(fields)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(len(fields), classes))

    def forward(self, x):
        return self.head(self.pool(self.norm(self.conv(enn.GeometricTensor(x, self.in_type)))).tensor)


def untwinnable(gspace, width, in_channels, classes):
    return NormNet(gspace, width, in_channels, classes)


class NormPooled(RepeatNet):
    """RepeatNet with a NormPool (the norm of each field) in place of GroupPooling: regular fields
    throughout, but a module that acts on whole fields, so no twin."""

    def __init__(self, gspace, fields, in_channels, classes):
        super().__init__(gspace, fields, in_channels, classes)
        *body, pooling = list(self.features.children())
        self.features = enn.SequentialModule(*body, enn.NormPool(pooling.in_type))


def norm_pooled(gspace, width, in_channels, classes):
    relative = [layer.width for layer in get_backbone("repeatnet").layers]
    return NormPooled(gspace, [max(1, round(width * r)) for r in relative], in_channels, classes)
