"""What defines one arm's model: `ArmSpec`, integer widths and settings at a budget. Building its
model is `models.build.build_arm`; counting one is `models.counting`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ablate.models import paper
from ablate.models.arms import NO_STRUCTURE, TRIVIAL_GROUP, Group
from ablate.models.backbone import Backbone


@dataclass(frozen=True)
class ArmSpec:
    """Integer widths that define one arm's model at a budget."""

    arm: str
    backbone: str | Backbone  # a built-in's name, or a study file's [models.backbone]
    learnable_widths: tuple[int, ...]  # plain channels / repeat base channels / G-CNN fields
    physical_widths: tuple[int, ...]
    n_params: int
    group: Group = field(default=TRIVIAL_GROUP)  # the arm's symmetry group: C1 for the arms without one
    repeat_mode: str | None = None  # the repeat arm's block formula; None for the others
    repeat_structure: str = NO_STRUCTURE  # the repeat arm's "paper" or "matched"; "" for the others
    preset: str | None = None  # a fixed model set (ablate.models.paper) instead of a solved budget
    preset_width: float = 1.0  # the preset's width multiplier ([models] preset_width)
    channels: int = 1  # input channels (from the data)
    classes: int = 10  # classes (from the data's labels)
    # a user's network ([models] builder, models.builder): its import path, a hash of its source
    # file, the width it is built at and the repeat twin's base scale; "" / 0.0 for built-in arms
    builder: str = ""
    builder_source: str = ""
    width: float = 0.0
    base_scale: float = 0.0
    builder_folder: str = ""  # where the builder imports from (the study's folder): in no key or row
    # the wrong arm's own group ('D1'), the one its network is built on; `group` is its design's
    wrong_group: str = ""

    @property
    def model_name(self) -> str:
        """The preset's name of the model ('baseline', 'c4_rep', ...); empty for solved arms."""
        return paper.model_name(self.arm, self.group) if self.preset else ""

    def flat(self) -> dict:
        """The spec's fields as flat values, as runs.csv's columns and the run key spell them: the
        group as `group` (its kind, "C" or "D") and `group_order` (N)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Group):
                out.update(group_order=value.order, group=value.kind)
            else:
                out[f.name] = value
        return out
