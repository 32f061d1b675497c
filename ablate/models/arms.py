"""The arms of a study, one registry, and the one interface every arm's model honours.

This module owns what an arm is (its name, label, colour, whether it has a group order, the
training settings it fixes) and what a design is (budget, group order, repeat control); the
study schema, the statistics, the report and the dry run all read them from here. It imports
no torch, so the statistics and the study schema load cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import nn

    from ablate.models.backbone import Backbone


@dataclass(frozen=True)
class ArmInfo:
    """One arm: `grouped` arms have a group order N of C_N (the others are C1: `TRIVIAL_GROUP`);
    `training` holds the [train] settings the arm fixes whatever the study says."""

    name: str
    label: str
    colour: str  # seaborn's colour-blind palette, in registry order
    grouped: bool
    training: dict = field(default_factory=dict)


REGISTRY = (
    ArmInfo("plain", "plain CNN", "#0173b2", grouped=False),
    ArmInfo("repeat", "learnable repetition", "#de8f05", grouped=True),
    ArmInfo("gcnn", "G-CNN", "#029e73", grouped=True),
    # the plain CNN trained with a fresh random rotation per image and step
    ArmInfo(
        "augmented", "plain CNN + augmentation", "#d55e00", grouped=False, training={"augment": "rotation"}
    ),
)
ARM_INFO = {arm.name: arm for arm in REGISTRY}
ARMS = tuple(ARM_INFO)
DEFAULT_ARMS = ("plain", "repeat", "gcnn")  # the decomposition's three; "augmented" is opt-in
GROUPED_ARMS = tuple(arm.name for arm in REGISTRY if arm.grouped)
ARM_LABELS = {arm.name: arm.label for arm in REGISTRY}
ARM_COLOURS = {arm.name: arm.colour for arm in REGISTRY}
ARM_TRAINING = {arm.name: arm.training for arm in REGISTRY if arm.training}

# "Not applicable" has one spelling per column: the group order of an arm without a group is 1
# (C1, the trivial group), and its repeat structure is NO_STRUCTURE (written "" in runs.csv).
TRIVIAL_GROUP = 1
NO_STRUCTURE = ""
DEFAULT_STRUCTURE = "paper"  # the repeat control of runs from before controls were recorded


def arm_spec(triplet: dict, arm: str):
    """The ArmSpec of `arm` from a solved triplet: the augmented arm shares the plain arm's model."""
    return replace(triplet["plain"], arm=arm) if arm == "augmented" else triplet[arm]


@dataclass(frozen=True)
class Design:
    """One design of a study: a budget, a group order N of C_N (0 when unknown) and the repeat
    arm's control ("paper" or "matched"). The plain arm is shared by every design of its budget.
    Every label of a design is made here."""

    budget: float
    group_order: int = 0
    repeat_structure: str = DEFAULT_STRUCTURE
    group: str = "C"  # C_N or D_N

    @property
    def group_label(self) -> str:
        """'C8' or 'D4'."""
        return f"{self.group}{self.group_order}"

    @property
    def phrase(self) -> str:
        """', C8, matched control'; the default control and an unknown N are left out."""
        order = f", {self.group_label}" if self.group_order > 0 else ""
        control = f", {self.repeat_structure} control" if self.repeat_structure != DEFAULT_STRUCTURE else ""
        return order + control

    @property
    def label(self) -> str:
        """'budget 20,000, C4, matched control'."""
        return f"budget {int(self.budget):,}{self.phrase}"

    def short(self, orders: bool, structures: bool) -> str:
        """'20,000 C4 matched': the budget, and N and the control where a study varies them."""
        return (
            f"{int(self.budget):,}"
            + (f" {self.group_label}" if orders else "")
            + (f" {self.repeat_structure}" if structures else "")
        )

    @classmethod
    def of(cls, row) -> Design:
        """The design of a decomposition row: a mapping with group_order, repeat_structure and
        budget (absent from a pooled row, whose `phrase` is all it has)."""
        return cls(
            row.get("budget"),
            int(row.get("group_order", 0) or 0),
            row.get("repeat_structure", DEFAULT_STRUCTURE) or DEFAULT_STRUCTURE,
            row.get("group", "C") or "C",
        )


@runtime_checkable
class Arm(Protocol):
    """What training, evaluation and counting may ask of any arm's model.

    learnable_widths: per layer, plain channels / repeat base channels / G-CNN fields.
    physical_widths: per layer, channels the convolutions compute. group_order: N of C_N
    (TRIVIAL_GROUP for the plain arm); repeat_mode and repeat_structure: the repeat arm's block
    formula and its "paper" or "matched" norm-and-head structure, else None.
    """

    arm: str
    backbone: Backbone
    learnable_widths: Sequence[int]
    physical_widths: Sequence[int]
    group_order: int
    repeat_mode: str | None
    repeat_structure: str

    def export(self) -> nn.Module:
        """A plain-torch module in eval mode with this model's eval-mode outputs, (N, 1, H, W) ->
        (N, classes); it may share parameters with the model."""
        ...
