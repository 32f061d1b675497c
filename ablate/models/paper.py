"""The seed paper's own models (`[models] preset = "repeatnet-paper"`), rebuilt from the
description of its public code (RepeatNet): not parameter-matched, unlike this package's triplets.

- `baseline` (the plain arm): the repeatnet backbone at int(w/sqrt 2) channels for
  w = 32, 48, 64, 64, 96, 128 (22-33-45-45-67-90).
- `cN` (the gcnn arm), N = 4, 8, 16: escnn C_N with round(k w) regular fields for
  w = 16, 24, 32, 32, 48, 64 and k = 1, sqrt 2 / 2, 1/2; its own steerable bases
  (paper_r2conv_options); spatial average before GroupPooling.
- `cN_rep` (the repeat arm): base channels = the baseline's, physical channels int(w/sqrt 2 f)
  for f = 2 sqrt 2, 4, 4 sqrt 2 (= cN's channels, within rounding); swish RepeatConv2d with a
  bias per physical channel, the paper's remainder rule and initialisation (remainder "floor"),
  BatchNorm on physical channels, head on all of them.

`width` (the study's [models] preset_width, s) multiplies every width before the paper's own
rounding, the head's hidden width (64) included, so the structure is kept at a size a CPU trains
and the parameters scale as about s^2. What does not scale: the 10 classes, and the repetition
scalars (their number is set by the repetition factor, not by the width); biases and norms scale
as s. Every width is at least 1.
"""

from __future__ import annotations

import math
from dataclasses import replace

from ablate.models.arms import PRESET_GROUP_ORDERS as GROUP_ORDERS
from ablate.models.arms import ROTATIONS, TRIVIAL_GROUP, Arm, Group
from ablate.models.backbone import REPEATNET, Backbone
from ablate.models.gcnn import GCNN
from ablate.models.plain import PlainCNN
from ablate.models.repeat import RepeatCNN

BASELINE_WIDTHS = (32, 48, 64, 64, 96, 128)  # divided by sqrt 2
GCNN_WIDTHS = (16, 24, 32, 32, 48, 64)  # times FIELD_SCALE[N]
FIELD_SCALE = {4: 1.0, 8: math.sqrt(2) / 2, 16: 0.5}
PHYSICAL_FACTOR = {4: 2 * math.sqrt(2), 8: 4.0, 16: 4 * math.sqrt(2)}
MODEL_ARMS = {"plain": "baseline", "gcnn": "c{n}", "repeat": "c{n}_rep"}
# the paper's table order: the baseline, then per N the G-CNN and its repeat control
PAPER_ORDER = ["baseline"] + [MODEL_ARMS[a].format(n=n) for n in GROUP_ORDERS for a in ("gcnn", "repeat")]
PAPER_SEED = 42  # the one seed of the seed paper's runs


def model_name(arm: str, group: Group) -> str:
    """'baseline', 'c4', 'c4_rep', ... for an arm of the preset on `group` (C1 for the baseline)."""
    return MODEL_ARMS[arm].format(n=group.order)


def backbone(width: float = 1.0) -> Backbone:
    """The repeatnet backbone with its head's hidden width scaled by `width`."""
    return REPEATNET if width == 1.0 else replace(REPEATNET, hidden=max(1, round(width * REPEATNET.hidden)))


def baseline_widths(width: float = 1.0) -> list[int]:
    return [max(1, int(width * w / math.sqrt(2))) for w in BASELINE_WIDTHS]


def gcnn_fields(group_order: int, width: float = 1.0) -> list[int]:
    return [max(1, round(FIELD_SCALE[group_order] * width * w)) for w in GCNN_WIDTHS]


def repeat_physical_widths(group_order: int, width: float = 1.0) -> list[int]:
    return [max(1, int(width * w / math.sqrt(2) * PHYSICAL_FACTOR[group_order])) for w in BASELINE_WIDTHS]


def _first_cutoff(radius: float) -> int:
    """Maximum angular frequency of the 7x7 first layer's basis at a ring radius (pixels)."""
    return 0 if radius == 0 else (3 if radius == 2 else 2)


def _cutoff(radius: float) -> int:
    """Maximum angular frequency of the 5x5 layers' basis at a ring radius (pixels)."""
    return 0 if radius == 0 else 2


def paper_r2conv_options(index: int) -> dict:
    """The R2Conv basis of layer `index`: rings at radii 0..3 (first, 7x7) or 0..2 (5x5) pixels,
    their Gaussian widths, and the frequency cut-off per radius."""
    if index == 0:
        return {"sigma": [0.6, 0.6, 0.6, 0.4], "rings": [0, 1, 2, 3], "frequencies_cutoff": _first_cutoff}
    return {"sigma": [0.6, 0.6, 0.4], "rings": [0, 1, 2], "frequencies_cutoff": _cutoff}


def build_paper_model(arm: str, group: Group = TRIVIAL_GROUP, classes: int = 10, width: float = 1.0) -> Arm:
    """One of the preset's models: arm "plain" (baseline), "gcnn" (cN) or "repeat" (cN_rep) on
    `group` (C4, C8 or C16), every width scaled by `width` (preset_width)."""
    if arm == "plain":
        return PlainCNN(backbone(width), baseline_widths(width), classes)
    if group.kind != ROTATIONS or group.order not in GROUP_ORDERS:
        raise ValueError(
            f"group_order: the repeatnet-paper preset has {Group.labels(ROTATIONS, GROUP_ORDERS)}, "
            f"found {group.label}"
        )
    group_order = group.order
    if arm == "gcnn":
        return GCNN(
            backbone(width),
            gcnn_fields(group_order, width),
            group,
            classes,
            r2conv_options=paper_r2conv_options,
            pool_space_first=True,
        )
    if arm == "repeat":
        return RepeatCNN(
            backbone(width),
            repeat_physical_widths(group_order, width),
            baseline_widths(width),
            "swish",
            classes,
            group=group,
            conv_bias=True,
            remainder="floor",
        )
    raise ValueError(f"arm: the repeatnet-paper preset has plain, repeat and gcnn, found {arm!r}")
