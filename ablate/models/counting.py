"""Counting a built model: learnable parameters (the only count budgets are matched on; every
count of the package is `count_params`) and multiply-accumulates."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablate.models.arms import Arm


def count_params(model: nn.Module) -> int:
    """Learnable parameters of a built model: sum(p.numel() for p in model.parameters() if
    p.requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: Arm, image_size: int = 28, channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass on one (1, channels, size, size) image (convs and
    linears), counted on the model's plain-torch export."""
    net = model.export()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros(1, channels, image_size, image_size, device=next(net.parameters()).device))
    return counter.get_total_flops() // 2
