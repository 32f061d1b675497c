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

from ablate.models.groups import (  # noqa: F401 (the registry's vocabulary: arms, groups, designs)
    DEFAULT_GROUP,
    GROUP_KINDS,
    ROTATIONS,
    ROTATIONS_AND_MIRRORS,
    TRIVIAL_GROUP,
    TRIVIAL_ORDER,
    Group,
)

if TYPE_CHECKING:
    from torch import nn

    from ablate.models.backbone import Backbone


@dataclass(frozen=True)
class ArmInfo:
    """One arm: `grouped` arms belong to a design's group (C_N or D_N: their rows carry it; the
    others have C1: `TRIVIAL_GROUP`); `training` holds the [train] settings the arm fixes
    whatever the study says; `matched` arms are solved to the budget (the wide arm is not)."""

    name: str
    label: str
    colour: str  # seaborn's colour-blind palette, in registry order
    grouped: bool
    training: dict = field(default_factory=dict)
    matched: bool = True


REGISTRY = (
    ArmInfo("plain", "plain CNN", "#0173b2", grouped=False),
    ArmInfo("repeat", "learnable repetition", "#de8f05", grouped=True),
    ArmInfo("gcnn", "G-CNN", "#029e73", grouped=True),
    # the plain CNN trained with a fresh random rotation per image and step
    ArmInfo(
        "augmented", "plain CNN + augmentation", "#d55e00", grouped=False, training={"augment": "rotation"}
    ),
    # the G-CNN on a group of the same order that is not a symmetry of the data ([models] wrong_group)
    ArmInfo("wrong", "wrong-group G-CNN", "#cc78bc", grouped=True),
    # a plain CNN at the G-CNN's physical widths, every weight free: compute-matched, not budget-matched
    ArmInfo("wide", "wide plain CNN", "#949494", grouped=True, matched=False),
)
ARM_INFO = {arm.name: arm for arm in REGISTRY}
ARMS = tuple(ARM_INFO)
DEFAULT_ARMS = ("plain", "repeat", "gcnn")  # the decomposition's three; the others are opt-in
GROUPED_ARMS = tuple(arm.name for arm in REGISTRY if arm.grouped)
ARM_LABELS = {arm.name: arm.label for arm in REGISTRY}
ARM_COLOURS = {arm.name: arm.colour for arm in REGISTRY}
ARM_TRAINING = {arm.name: arm.training for arm in REGISTRY if arm.training}

# "Not applicable" has one spelling per column of runs.csv (docs/study.md's columns table): an
# arm without a group has the trivial group C1 (group "C", group_order 1), an arm without a repeat
# control has NO_STRUCTURE (written ""); a report's cell with no number shows NOT_APPLICABLE.
NO_STRUCTURE = ""
DEFAULT_STRUCTURE = "paper"  # the repeat control of runs from before controls were recorded
NOT_APPLICABLE = "–"  # a table cell or a figure label with no value
STRUCTURES = ("paper", "matched")  # [models].repeat_structure: the repeat arm's controls (models.repeat)
REPEAT_MODES = ("swish", "scale", "tile")  # [models].repeat_mode: how a block's copy is made (models.repeat)
PRESETS = ("repeatnet-paper",)  # [models].preset: the seed paper's fixed models (models.paper)
PRESET_GROUP_ORDERS = (4, 8, 16)  # the orders N of C_N the preset has models for


# The columns that name one cell of a study: a budget, an arm, its group order and its repeat
# control (stats.table.prepare fills them with the one spelling of "not applicable").
CELL_KEY = ("budget", "arm", "group_order", "repeat_structure")


def control_phrase(repeat_structure: str) -> str:
    """'matched control': the words for a repeat control."""
    return f"{repeat_structure} control"


def arm_spec(triplet: dict, arm: str):
    """The ArmSpec of `arm` from a solved triplet: the augmented arm shares the plain arm's model."""
    return replace(triplet["plain"], arm=arm) if arm == "augmented" else triplet[arm]


@dataclass(frozen=True)
class Design:
    """One design of a study: a budget, the G-CNN's group (None when unknown) and the repeat
    arm's control ("paper" or "matched"). The plain arm is shared by every design of its budget.
    Every label, row mask and cell key of a design is made here."""

    budget: float | None
    group: Group | None = None
    repeat_structure: str = DEFAULT_STRUCTURE

    @property
    def group_order(self) -> int:
        """N, 0 when unknown."""
        return self.group.order if self.group else 0

    @property
    def group_label(self) -> str:
        """'C8' or 'D4' ('' when unknown)."""
        return self.group.label if self.group else ""

    @property
    def phrase(self) -> str:
        """', C8, matched control'; the default control and an unknown group are left out."""
        order = f", {self.group_label}" if self.group else ""
        control = (
            f", {control_phrase(self.repeat_structure)}" if self.repeat_structure != DEFAULT_STRUCTURE else ""
        )
        return order + control

    @property
    def budget_text(self) -> str:
        """'20,000'; NOT_APPLICABLE for budget 0, a runs table of your own that names no budget."""
        return f"{int(self.budget):,}" if self.budget else NOT_APPLICABLE

    @property
    def label(self) -> str:
        """'budget 20,000, C4, matched control'."""
        return f"budget {self.budget_text}{self.phrase}"

    def short(self, orders: bool, repeat_structures: bool) -> str:
        """'20,000 C4 matched': the budget, and the group and the control where a study varies them
        (without a budget, a table of your own: the group and the control, 'C4' at least)."""
        parts = [
            self.budget_text if self.budget else "",
            self.group_label if orders or not self.budget else "",
            self.repeat_structure if repeat_structures else "",
        ]
        return " ".join(part for part in parts if part) or NOT_APPLICABLE

    def name(self, controls: bool) -> str:
        """'C4, matched control' (the control named when `controls`), else 'C4'."""
        return self.group_label + (f", {control_phrase(self.repeat_structure)}" if controls else "")

    @property
    def columns(self) -> dict:
        """The design's columns of a statistics row: budget, group (its kind), group_order (0
        when unknown) and repeat_structure."""
        kind = self.group.kind if self.group else TRIVIAL_GROUP.kind
        return {
            "budget": self.budget,
            "group": kind,
            "group_order": self.group_order,
            "repeat_structure": self.repeat_structure,
        }

    def cell_key(self, arm: str) -> tuple:
        """The CELL_KEY values of `arm`'s cell in this design (the wrong and wide arms belong to
        the design whose G-CNN they control, like the repeat arm, without a control)."""
        order = self.group_order if ARM_INFO[arm].grouped else TRIVIAL_ORDER
        return (self.budget, arm, order, self.repeat_structure if arm == "repeat" else NO_STRUCTURE)

    def rows(self, table, any_control: bool = False):
        """Boolean mask of the rows of a runs-like table (arm, group_order, repeat_structure and,
        where the design has one, budget; as stats.table.prepare leaves them) in this design: the
        shared plain and augmented arms, the G-CNN of its group with its wrong-group and wide
        controls, and the repeat arm of its control
        (of every control with `any_control`)."""
        arm = table["arm"]
        grouped = table["group_order"] == self.group_order
        mine = ~arm.isin(GROUPED_ARMS) | (grouped & arm.isin(["gcnn", "wrong", "wide"]))
        control = True if any_control else table["repeat_structure"] == self.repeat_structure
        mine |= grouped & (arm == "repeat") & control
        if self.budget is not None:
            mine &= table["budget"] == self.budget
        return mine

    @classmethod
    def of(cls, row) -> Design:
        """The design of a decomposition row: a mapping with group_order, repeat_structure (and
        group) and budget (absent from a pooled row, whose `phrase` is all it has)."""
        return cls(
            row.get("budget"),
            Group.of(row),
            row.get("repeat_structure", DEFAULT_STRUCTURE) or DEFAULT_STRUCTURE,
        )


@runtime_checkable
class Arm(Protocol):
    """What training, evaluation and counting may ask of any arm's model.

    learnable_widths: per layer, plain channels / repeat base channels / G-CNN fields.
    physical_widths: per layer, channels the convolutions compute. group: the arm's symmetry
    group (TRIVIAL_GROUP for the plain arm; the G-CNN's for its repeat twin, whose widths it has);
    repeat_mode and repeat_structure: the repeat arm's block formula and its "paper" or "matched"
    norm-and-head structure, else None and NO_STRUCTURE.
    """

    arm: str
    backbone: Backbone
    learnable_widths: Sequence[int]
    physical_widths: Sequence[int]
    group: Group
    repeat_mode: str | None
    repeat_structure: str

    def export(self) -> nn.Module:
        """A plain-torch module in eval mode with this model's eval-mode outputs, (B, channels, H,
        W) -> (B, classes); it may share parameters with the model."""
        ...
