"""The `wide` arm: a plain CNN at the G-CNN's physical widths with every weight free, the
compute-matched reference (e2cnn's "channel-matched" CNN; Brehmer et al.'s equal compute). It is
the repeat arm's network without its weight tying: every conv a full k x k nn.Conv2d of the
G-CNN's physical shape, BatchNorm per physical channel, and a max over each field's |G| channels
before the head, so the head sees as many features as the G-CNN's. Not solved to a budget: at
20,000 parameters it has 82,636 learnable parameters at C2 and 167,810 at C4 (repeatnet, matched)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ablate.models.arms import NO_STRUCTURE, Group
from ablate.models.backbone import Backbone
from ablate.models.copies import CopyMax
from ablate.models.plain import ConvNet


class WideCNN(ConvNet):
    """The plain backbone at `physical_widths` (the G-CNN's |G| x fields per layer), full
    nn.Conv2d filters, then the max over each field's |G| channels and the backbone's head on the
    last layer's fields. group: the G-CNN's, whose widths it has. (B, channels, H, W) -> (B, classes)."""

    arm = "wide"
    repeat_mode = None
    repeat_structure = NO_STRUCTURE

    def __init__(
        self,
        backbone: Backbone,
        physical_widths: Sequence[int],
        group: Group,
        classes: int = 10,
        channels: int = 1,
    ):
        last = int(physical_widths[-1])
        if any(int(w) % group.size for w in physical_widths):
            raise ValueError(
                f"wide: physical widths {list(physical_widths)} are not multiples of |{group.label}|"
            )

        def conv(index, c_in, c_out, kernel, padding, bias):
            return nn.Conv2d(c_in, c_out, kernel, padding=padding, bias=bias)

        fields = last // group.size
        super().__init__(
            backbone,
            physical_widths,
            conv,
            classes,
            channels,
            pre_head=CopyMax(last, fields),
            head_channels=fields,
        )
        self.group = group
        self.learnable_widths = list(self.physical_widths)  # every channel's filters are free
