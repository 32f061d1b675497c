"""The `plain` arm: an ordinary CNN on the shared backbone, and the generic conv network it uses."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ablate.models.activation import activation, mlp_head
from ablate.models.arms import NO_STRUCTURE, TRIVIAL_GROUP
from ablate.models.backbone import Backbone, mlp_head_params

# conv_factory(layer_index, in_channels, out_channels, kernel, padding, bias) -> module
ConvFactory = Callable[[int, int, int, int, int, bool], nn.Module]
# norm_factory(layer_index, channels) -> module
NormFactory = Callable[[int, int], nn.Module]


def batch_norm(index: int, channels: int) -> nn.Module:
    """The default norm: BatchNorm2d with its own scale and shift per channel."""
    return nn.BatchNorm2d(channels)


class ConvNet(nn.Module):
    """conv -> norm -> activation [-> max-pool] per backbone layer [-> pre_head], then the head.

    widths: physical output channels per conv layer. norm_factory: BatchNorm2d unless given.
    pre_head: a module between the last block and the head that maps its channels to
    head_channels (the matched repeat arm's max over copies). conv_bias: a bias in every block's
    conv (BatchNorm follows, so off by default). Input (N, 1, H, W); output (N, classes).
    """

    def __init__(
        self,
        backbone: Backbone,
        widths: Sequence[int],
        conv_factory: ConvFactory,
        classes: int = 10,
        in_channels: int = 1,
        norm_factory: NormFactory = batch_norm,
        pre_head: nn.Module | None = None,
        head_channels: int | None = None,
        conv_bias: bool = False,
    ):
        super().__init__()
        if len(widths) != len(backbone.layers):
            raise ValueError(f"{backbone.name}: expected {len(backbone.layers)} widths, found {len(widths)}")
        self.backbone = backbone
        self.physical_widths = [int(w) for w in widths]
        blocks: list[nn.Module] = []
        channels = in_channels
        for index, (layer, width) in enumerate(zip(backbone.layers, self.physical_widths)):
            blocks += [
                conv_factory(index, channels, width, layer.kernel, layer.padding, conv_bias),
                norm_factory(index, width),
                activation(backbone.activation),
            ]
            if layer.pool_after:
                blocks.append(nn.MaxPool2d(2))
            channels = width
        if pre_head is not None:
            blocks.append(pre_head)
            channels = head_channels
        self.features = nn.Sequential(*blocks)
        if backbone.head == "mlp":
            self.head = mlp_head(channels, backbone.hidden, classes, backbone.activation)
        else:
            last = conv_factory(len(backbone.layers), channels, classes, backbone.head_kernel, 0, True)
            self.head = nn.Sequential(last, nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 1, H, W) images -> (N, classes) logits."""
        return self.head(self.features(x))

    def export(self) -> nn.Sequential:
        """A copy of features and head in eval mode (same outputs as this model in eval mode)."""
        return nn.Sequential(copy.deepcopy(self.features), copy.deepcopy(self.head)).eval()


class PlainCNN(ConvNet):
    """Ordinary CNN: `nn.Conv2d` layers with `widths` output channels. arm: "plain", or
    "augmented" (the same network, trained with rotation augmentation)."""

    group = TRIVIAL_GROUP
    repeat_mode = None
    repeat_structure = NO_STRUCTURE

    def __init__(
        self,
        backbone: Backbone,
        widths: Sequence[int],
        classes: int = 10,
        arm: str = "plain",
        channels: int = 1,
    ):
        def conv(index, c_in, c_out, kernel, padding, bias):
            return nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=bias)

        super().__init__(backbone, widths, conv, classes, in_channels=channels)
        self.arm = arm
        self.learnable_widths = list(self.physical_widths)


def plain_params(backbone: Backbone, widths: Sequence[int], classes: int = 10, channels: int = 1) -> int:
    """Learnable parameters of PlainCNN(backbone, widths) without building it."""
    total, c_in = 0, channels
    for layer, width in zip(backbone.layers, widths):
        total += c_in * width * layer.kernel**2 + 2 * width
        c_in = width
    if backbone.head == "mlp":
        return total + mlp_head_params(c_in, backbone.hidden, classes)
    return total + c_in * classes * backbone.head_kernel**2 + classes
