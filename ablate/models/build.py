"""Every arm's model built in one place: `solve_triplet` (a budget's three ArmSpecs, built-in
backbone or a user's builder, one keyword-only signature) and `build_arm` (an ArmSpec's model,
its count checked against the solved one). Above the arms it builds: no arm module imports it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ablate.errors import expect_one_of
from ablate.models import paper
from ablate.models.arms import ARM_INFO, ARMS, DEFAULT_ARMS, DEFAULT_GROUP, DEFAULT_STRUCTURE, Arm, Group
from ablate.models.backbone import Backbone, get_backbone
from ablate.models.budget import solve_builtin_triplet
from ablate.models.builder import build_builder_arm, builder_triplet
from ablate.models.counting import count_params
from ablate.models.gcnn import GCNN
from ablate.models.plain import PlainCNN
from ablate.models.repeat import RepeatCNN
from ablate.models.spec import ArmSpec
from ablate.models.wide import WideCNN


def solve_triplet(
    budget: int,
    *,
    group: Group | str = DEFAULT_GROUP,
    repeat_structure: str = DEFAULT_STRUCTURE,
    repeat_mode: str = "swish",
    tolerance: float = 0.02,
    channels: int = 1,
    classes: int = 10,
    size: int = 28,
    backbone: str | Backbone = "repeatnet",
    builder: str | Callable | None = None,
    folder: str | None = None,
    arms: Sequence[str] = DEFAULT_ARMS,
    wrong_group: Group | str | None = None,
) -> dict[str, ArmSpec]:
    """The plain, repeat and gcnn ArmSpecs at `budget` learnable parameters (each within
    `tolerance`), with the wrong-group G-CNN (on `wrong_group`, solved to the budget) and the wide
    plain CNN (the G-CNN's physical widths) where `arms` names them: of the built-in `backbone`, or
    of `builder` (a function with the builder signature of ablate.models.builder, or its
    "package.module:function" path imported with `folder` on sys.path), probed on (channels, size,
    size) images. `group`, `wrong_group`: a Group, its label or an escnn gspace."""
    group = Group.parse(group)
    wrong = Group.parse(wrong_group) if wrong_group is not None else None
    settings = {
        "group": group, "repeat_structure": repeat_structure, "repeat_mode": repeat_mode,
        "tolerance": tolerance, "channels": channels, "classes": classes, "arms": tuple(arms),
        "wrong_group": wrong,
    }  # fmt: skip
    if builder is not None:
        return builder_triplet(budget, builder=builder, folder=folder, size=size, **settings)
    return solve_builtin_triplet(budget, backbone=backbone, **settings)


def build_arm(spec: ArmSpec, build: Callable | None = None) -> Arm:
    """The model an ArmSpec describes (initialised from torch's current random state); checks that
    its built count equals the solved count. `build`: a builder spec's function, where the caller
    holds it (else imported from the spec's path)."""
    expect_one_of("arm", spec.arm, ARMS)
    if spec.builder:
        return _checked(build_builder_arm(spec, build), spec)
    backbone: Backbone = get_backbone(spec.backbone)
    classes, channels = spec.classes, spec.channels
    if spec.preset:
        model = paper.build_paper_model(spec.arm, spec.group, classes, spec.preset_width)
    elif not ARM_INFO[spec.arm].grouped:
        model = PlainCNN(backbone, spec.learnable_widths, classes, arm=spec.arm, channels=channels)
    elif spec.arm == "wrong":
        model = GCNN(
            backbone,
            spec.learnable_widths,
            Group.parse(spec.wrong_group),
            classes,
            channels=channels,
            arm="wrong",
        )
    elif spec.arm == "wide":
        model = WideCNN(backbone, spec.physical_widths, spec.group, classes, channels)
    elif spec.arm == "repeat":
        model = RepeatCNN(
            backbone, spec.physical_widths, spec.learnable_widths, spec.repeat_mode, classes,
            group=spec.group, repeat_structure=spec.repeat_structure, channels=channels,
        )  # fmt: skip
    else:
        model = GCNN(backbone, spec.learnable_widths, spec.group, classes, channels=channels)
    return _checked(model, spec)


def _checked(model: Arm, spec: ArmSpec) -> Arm:
    """The model, after checking that its built count equals the solved count."""
    built = count_params(model)
    if built != spec.n_params:
        raise RuntimeError(f"{spec.arm}: solver predicted {spec.n_params} parameters, model has {built}")
    return model
