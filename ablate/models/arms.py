"""The arms of a study and the one interface every arm's model honours.

This module owns the list of arm names; everything else (study schema, statistics, report)
derives from it. It imports no torch, so the statistics can use the names cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

    from ablate.models.backbone import Backbone

ARMS = ("plain", "repeat", "gcnn")


@runtime_checkable
class Arm(Protocol):
    """What training, evaluation and counting may ask of any arm's model.

    learnable_widths: per layer, plain channels / repeat base channels / G-CNN fields.
    physical_widths: per layer, channels the convolutions compute. group_order: N of C_N
    (1 for the plain arm); repeat_mode: the repeat arm's block formula, else None.
    """

    arm: str
    backbone: Backbone
    learnable_widths: Sequence[int]
    physical_widths: Sequence[int]
    group_order: int | None
    repeat_mode: str | None

    def export(self) -> nn.Module:
        """A plain-torch module in eval mode with this model's eval-mode outputs, (N, 1, H, W) ->
        (N, classes); it may share parameters with the model."""
        ...
