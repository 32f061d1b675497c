"""Solve layer widths so each arm hits a learnable-parameter budget; the preset's fixed models."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence

import numpy as np

from ablate.errors import expect_one_of
from ablate.models import paper
from ablate.models.arms import DEFAULT_STRUCTURE, NO_STRUCTURE, PRESETS, ROTATIONS, TRIVIAL_ORDER, Group
from ablate.models.backbone import Backbone, get_backbone
from ablate.models.gcnn import gcnn_params
from ablate.models.plain import plain_params
from ablate.models.repeat import MODES, STRUCTURES, repeat_params
from ablate.models.spec import ArmSpec, count_params


def solve_widths(
    count: Callable[[list[int]], int],
    relative: Sequence[int],
    budget: int,
    tolerance: float,
    upper: Sequence[int] | None = None,
    arm: str = "",
) -> tuple[list[int], int]:
    """Integer widths near m * relative whose count(widths) is within tolerance of budget.

    Scans the multiplier m on a fine geometric grid (counts need not be monotone in m: the
    repeat arm's scalars grow as its base widths shrink), then, if one integer step is too
    coarse, moves single layers by +-1 around round(m * w) (never below 1 or above `upper`).
    Returns (widths, count); ValueError naming the arm, budget and closest count otherwise.
    """
    cap = [u if u is not None else 1 << 30 for u in (upper or [None] * len(relative))]

    def widths_at(m: float) -> list[int]:
        return [max(1, min(round(m * w), u)) for w, u in zip(relative, cap)]

    hi = 1.0
    while count(widths_at(hi)) < budget * (1 + tolerance) and widths_at(hi) != cap:
        hi *= 2
    lo = 0.5 / max(relative)  # every width rounds to 1 here
    path: list[tuple[tuple[int, ...], int]] = []  # distinct width vectors in order of growing m
    for m in np.geomspace(lo, hi, 4000):
        widths = tuple(widths_at(float(m)))
        if not path or path[-1][0] != widths:
            path.append((widths, count(list(widths))))
    # Only the rising branch: below its minimum the repeat arm's scalars outgrow its weights.
    lowest = min(n for _, n in path)
    rising = path[max(i for i, (_, n) in enumerate(path) if n == lowest) :]
    centre, centre_n = min(rising, key=lambda item: abs(item[1] - budget))
    best, best_gap = list(centre), abs(centre_n - budget)
    if best_gap > tolerance * budget:
        # +-1 moves per layer; among those that land inside, the fewest moved layers win.
        choices = [[w for w in (c, c - 1, c + 1) if 1 <= w <= u] for c, u in zip(centre, cap)]
        scored = []
        for candidate in itertools.product(*choices):
            gap = abs(count(list(candidate)) - budget)
            moved = sum(a != b for a, b in zip(candidate, centre))
            scored.append(
                (gap > tolerance * budget, moved if gap <= tolerance * budget else 0, gap, candidate)
            )
        _, _, best_gap, chosen = min(scored)
        best = list(chosen)
    final = count(best)
    if best_gap > tolerance * budget:
        why = "too small for this network" if final > budget else "out of reach"
        raise ValueError(
            f"{arm}: budget {budget} is {why} within {tolerance:.1%}; the closest "
            f"reachable count is {final} learnable parameters"
        )
    return best, final


def solve_triplet(
    budget: int,
    backbone: str | Backbone = "repeatnet",
    group_order: int = 4,
    repeat_mode: str = "swish",
    tolerance: float = 0.02,
    classes: int = 10,
    repeat_structure: str = DEFAULT_STRUCTURE,
    channels: int = 1,
    group: str = ROTATIONS,
) -> dict[str, ArmSpec]:
    """Widths of the three arms at `budget` (no model is built; escnn counts come from its layers)
    for images of `channels` channels and `classes` classes; the G-CNN on C_N or D_N (`group`),
    the repeat arm at its physical widths (|G| per field: N, or 2N for D_N).
    The `augmented` arm is the plain arm's model (see ablate.models.arms.arm_spec)."""
    spec = get_backbone(backbone)
    expect_one_of("repeat_mode", repeat_mode, MODES)
    expect_one_of("repeat_structure", repeat_structure, STRUCTURES)
    if budget <= 0:
        raise ValueError(f"budget: expected a positive integer, found {budget}")
    relative = spec.relative_widths
    plain_w, plain_n = solve_widths(
        lambda w: plain_params(spec, w, classes, channels), relative, budget, tolerance, arm="plain"
    )
    fields, gcnn_n = solve_widths(
        lambda w: gcnn_params(spec, w, group_order, classes, channels, group),
        relative,
        budget,
        tolerance,
        arm="gcnn",
    )
    physical = [Group(group, group_order).size * f for f in fields]
    base, repeat_n = solve_widths(
        lambda w: repeat_params(spec, physical, w, repeat_mode, classes, repeat_structure, channels=channels),
        relative,
        budget,
        tolerance,
        upper=physical,
        arm="repeat",
    )
    common = {"group": group, "channels": channels, "classes": classes}
    return {
        "plain": ArmSpec(
            "plain", backbone, tuple(plain_w), tuple(plain_w), TRIVIAL_ORDER, None, plain_n, **common
        ),
        "repeat": ArmSpec(
            "repeat",
            backbone,
            tuple(base),
            tuple(physical),
            group_order,
            repeat_mode,
            repeat_n,
            repeat_structure,
            **common,
        ),  # fmt: skip
        "gcnn": ArmSpec(
            "gcnn", backbone, tuple(fields), tuple(physical), group_order, None, gcnn_n, **common
        ),
    }


def preset_specs(
    preset: str, group_orders: Sequence[int], classes: int = 10, width: float = 1.0
) -> list[ArmSpec]:
    """The preset's models at `width` (preset_width), baseline first, then cN and cN_rep per N;
    counts from built models (built once per process: escnn's bases take seconds)."""
    return list(_preset_specs(preset, tuple(group_orders), classes, width))


@functools.cache
def _preset_specs(
    preset: str, group_orders: tuple[int, ...], classes: int, width: float
) -> tuple[ArmSpec, ...]:
    expect_one_of("preset", preset, PRESETS)
    arms = [("plain", TRIVIAL_ORDER)] + [(arm, n) for n in group_orders for arm in ("gcnn", "repeat")]
    specs = []
    for arm, n in arms:
        model = paper.build_paper_model(arm, n, classes, width)
        mode = "swish" if arm == "repeat" else None
        structure = DEFAULT_STRUCTURE if arm == "repeat" else NO_STRUCTURE
        specs.append(
            ArmSpec(
                arm,
                model.backbone.name,
                tuple(model.learnable_widths),
                tuple(model.physical_widths),
                n,
                mode,
                count_params(model),
                structure,
                preset,
                width,
            )
        )
    return tuple(specs)
