"""What defines one arm's model (`ArmSpec`), building it (`build_arm`), and counting it:
learnable parameters (the only count budgets are matched on) and multiply-accumulates."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ablate.errors import expect_one_of
from ablate.models import paper
from ablate.models.arms import ARM_INFO, ARMS, NO_STRUCTURE, ROTATIONS, Arm
from ablate.models.backbone import Backbone, get_backbone
from ablate.models.gcnn import GCNN
from ablate.models.plain import PlainCNN
from ablate.models.repeat import RepeatCNN


def count_params(model: nn.Module) -> int:
    """Learnable parameters of a built model: the only count budgets are matched on."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class ArmSpec:
    """Integer widths that define one arm's model at a budget."""

    arm: str
    backbone: str | Backbone  # a built-in's name, or a study file's [models.backbone]
    learnable_widths: tuple[int, ...]  # plain channels / repeat base channels / G-CNN fields
    physical_widths: tuple[int, ...]
    group_order: int
    repeat_mode: str | None
    n_params: int
    repeat_structure: str = NO_STRUCTURE  # the repeat arm's "paper" or "matched"; "" for the others
    preset: str | None = None  # a fixed model set (ablate.models.paper) instead of a solved budget
    preset_width: float = 1.0  # the preset's width multiplier ([models] preset_width)
    group: str = ROTATIONS  # C_N or D_N ([models] group); every arm carries it (for invariance_error)
    channels: int = 1  # input channels (from the data)
    classes: int = 10  # classes (from the data's labels)
    # a user's network ([models] builder, models.builder): its import path, a hash of its source
    # file, the width it is built at and the repeat twin's base scale; "" / 0.0 for built-in arms
    builder: str = ""
    builder_source: str = ""
    width: float = 0.0
    base_scale: float = 0.0
    builder_folder: str = ""  # where the builder imports from (the study's folder): in no key or row

    @property
    def model_name(self) -> str:
        """The preset's name of the model ('baseline', 'c4_rep', ...); empty for solved arms."""
        return paper.model_name(self.arm, self.group_order) if self.preset else ""


def build_arm(spec: ArmSpec) -> Arm:
    """The model an ArmSpec describes; checks that its built count equals the solved count."""
    expect_one_of("arm", spec.arm, ARMS)
    if spec.builder:
        from ablate.models.builder import build_builder_arm

        model = build_builder_arm(spec)
        return _checked(model, spec)
    backbone: Backbone = get_backbone(spec.backbone)
    classes, channels = spec.classes, spec.channels
    if spec.preset:
        model = paper.build_paper_model(spec.arm, spec.group_order, classes, spec.preset_width)
    elif not ARM_INFO[spec.arm].grouped:
        model = PlainCNN(backbone, spec.learnable_widths, classes, arm=spec.arm, channels=channels)
    elif spec.arm == "repeat":
        model = RepeatCNN(
            backbone,
            spec.physical_widths,
            spec.learnable_widths,
            spec.repeat_mode,
            classes,
            group_order=spec.group_order,
            structure=spec.repeat_structure,
            channels=channels,
        )
    else:
        model = GCNN(
            backbone, spec.learnable_widths, spec.group_order, classes, channels=channels, group=spec.group
        )
    return _checked(model, spec)


def _checked(model: Arm, spec: ArmSpec) -> Arm:
    """The model, after checking that its built count equals the solved count."""
    built = count_params(model)
    if built != spec.n_params:
        raise RuntimeError(f"{spec.arm}: solver predicted {spec.n_params} parameters, model has {built}")
    return model


def count_macs(model: Arm, image_size: int = 28, channels: int = 1) -> int:
    """Multiply-accumulates of one forward pass on one (1, channels, size, size) image (convs and
    linears), counted on the model's plain-torch export."""
    net = model.export()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(torch.zeros(1, channels, image_size, image_size, device=next(net.parameters()).device))
    return counter.get_total_flops() // 2
