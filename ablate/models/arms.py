"""The arms of a study and the one interface every arm's model honours.

This module owns the list of arm names; everything else (study schema, statistics, report)
derives from it. It imports no torch, so the statistics can use the names cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

    from ablate.models.backbone import Backbone

ARMS = ("plain", "repeat", "gcnn", "augmented")
DEFAULT_ARMS = ("plain", "repeat", "gcnn")  # the decomposition's three; "augmented" is opt-in
# Training settings an arm fixes whatever the study says: the augmented arm is the plain CNN
# trained with a fresh random rotation per image and step.
ARM_TRAINING: dict[str, dict] = {"augmented": {"augment": "rotation"}}


def arm_spec(triplet: dict, arm: str):
    """The ArmSpec of `arm` from a solved triplet: the augmented arm shares the plain arm's model."""
    return replace(triplet["plain"], arm=arm) if arm == "augmented" else triplet[arm]


@runtime_checkable
class Arm(Protocol):
    """What training, evaluation and counting may ask of any arm's model.

    learnable_widths: per layer, plain channels / repeat base channels / G-CNN fields.
    physical_widths: per layer, channels the convolutions compute. group_order: N of C_N
    (1 for the plain arm); repeat_mode and repeat_structure: the repeat arm's block formula and
    its "paper" or "matched" norm-and-head structure, else None.
    """

    arm: str
    backbone: Backbone
    learnable_widths: Sequence[int]
    physical_widths: Sequence[int]
    group_order: int | None
    repeat_mode: str | None
    repeat_structure: str | None

    def export(self) -> nn.Module:
        """A plain-torch module in eval mode with this model's eval-mode outputs, (N, 1, H, W) ->
        (N, classes); it may share parameters with the model."""
        ...
