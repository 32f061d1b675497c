"""The width solver (a multiplier of every width, to a learnable-parameter budget), the built-in
triplet solved with it, and the preset's fixed models."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ablate.errors import expect_one_of
from ablate.models import paper
from ablate.models.arms import (
    DEFAULT_ARMS,
    DEFAULT_GROUP,
    DEFAULT_STRUCTURE,
    NO_STRUCTURE,
    PRESETS,
    ROTATIONS,
    TRIVIAL_GROUP,
    Group,
)
from ablate.models.backbone import Backbone, get_backbone
from ablate.models.counting import count_params
from ablate.models.gcnn import gcnn_params
from ablate.models.plain import plain_params
from ablate.models.repeat import MODES, STRUCTURES, repeat_params
from ablate.models.spec import ArmSpec
from ablate.models.wide import WideCNN


class BudgetError(ValueError):
    """A budget no width reaches within the tolerance: names the arm, the reachable counts around
    the budget and the tolerance that would admit the nearest."""


@dataclass(frozen=True)
class Solution:
    """A solved multiplier, its learnable count, and the reachable counts nearest the budget from
    below and above on the count's rising branch (None where none was seen)."""

    multiplier: float
    count: int
    below: int | None
    above: int | None

    def within(self, budget: int, tolerance: float) -> bool:
        return abs(self.count - budget) <= tolerance * budget

    def error(self, what: str, budget: int, tolerance: float, hint: str = "") -> BudgetError:
        """'repeat C4: budget 20000 is out of reach within 2.0%: the nearest reachable counts are
        19572 and 20526 learnable parameters; tolerance = 0.03 admits 20526, or take a budget of
        19572 or 20526'."""
        if self.below is None:
            why = "too small for this network"
        elif self.above is None:
            why = "too large for this network"
        else:
            why = "out of reach"
        around = [n for n in (self.below, self.above) if n is not None]
        nearest = min(around, key=lambda n: abs(n - budget))
        needed = math.ceil(1000 * abs(nearest - budget) / budget) / 1000
        plural, counts = len(around) > 1, [str(n) for n in around]
        return BudgetError(
            f"{what}: budget {budget} is {why} within {tolerance:.1%}: the nearest reachable "
            f"count{'s are' if plural else ' is'} {' and '.join(counts)} learnable parameters; "
            f"tolerance = {needed:g} admits {nearest}, or take a budget of {' or '.join(counts)}{hint}"
        )


def solve_multiplier(
    count: Callable[[float], int], budget: int, tolerance: float, *, lo: float, hi: float, points: int,
    top: float | None = None,
) -> Solution:  # fmt: skip
    """The multiplier m (of every width of a network) whose learnable count(m) is closest to
    `budget`: the one width solver of the package (the built-in triplet's multiplier, a builder's
    width, the repeat twin's base scale).

    count(m) is piecewise constant and rises for large m; it may fall first (the repeat arm's
    scalars grow as its bases shrink), so only the rising branch counts: from the last minimum on.
    Grows `hi` by doubling (never past `top`) until count(hi) reaches the budget, scans `points`
    multipliers on a geometric grid in [lo, hi], then, while the closest count is outside the
    tolerance, bisects the grid step where the count crosses the budget. Each count is taken once.
    """
    counts: dict[float, int] = {}

    def at(m: float) -> int:
        if m not in counts:
            counts[m] = count(m)
        return counts[m]

    while at(hi) < budget * (1 + tolerance) and (top is None or hi < top) and hi < 2**20:
        grown = min(2 * hi, top) if top is not None else 2 * hi
        if at(grown) == at(hi) and hi > 1:  # every width at its ceiling: nothing grows any more
            break
        hi = grown
    for m in np.geomspace(lo, hi, points):
        at(float(m))
    for _ in range(60):
        best, crossing = _closest_on_rising_branch(counts, budget)
        if best.within(budget, tolerance) or crossing is None or crossing[1] / crossing[0] < 1 + 1e-9:
            return best
        at(math.sqrt(crossing[0] * crossing[1]))
    return best


def _closest_on_rising_branch(counts: dict[float, int], budget: int) -> tuple[Solution, tuple | None]:
    """The closest count to `budget` among counts (multiplier -> count) on the rising branch (ties:
    the smallest multiplier), and the adjacent multipliers whose counts straddle the budget."""
    ms = sorted(counts)
    lowest = min(counts.values())
    start = max(i for i, m in enumerate(ms) if counts[m] == lowest)
    rising = ms[start:]
    best = min(rising, key=lambda m: abs(counts[m] - budget))
    below = [counts[m] for m in rising if counts[m] < budget]
    above = [counts[m] for m in rising if counts[m] >= budget]
    crossing = next(((a, b) for a, b in zip(rising, rising[1:]) if counts[a] < budget <= counts[b]), None)
    solution = Solution(best, counts[best], max(below) if below else None, min(above) if above else None)
    return solution, crossing


def solve_widths(
    count: Callable[[list[int]], int],
    relative: Sequence[int],
    budget: int,
    tolerance: float,
    upper: Sequence[int] | None = None,
    arm: str = "",
) -> tuple[list[int], int]:
    """Integer widths near m * relative whose count(widths) is within tolerance of budget: the
    multiplier m from solve_multiplier (4000 grid points: counts here are arithmetic), then, if one
    integer step is too coarse, single layers moved by +-1 around round(m * w) (never below 1 or
    above `upper`). Returns (widths, count); BudgetError otherwise."""
    cap = [u if u is not None else 1 << 30 for u in (upper or [None] * len(relative))]

    def widths_at(m: float) -> list[int]:
        return [max(1, min(round(m * w), u)) for w, u in zip(relative, cap)]

    solved = solve_multiplier(
        lambda m: count(widths_at(m)), budget, tolerance, lo=0.5 / max(relative), hi=1.0, points=4000
    )
    centre = widths_at(solved.multiplier)
    if solved.within(budget, tolerance):
        return centre, solved.count
    # +-1 moves per layer; among those that land inside, the fewest moved layers win.
    choices = [[w for w in (c, c - 1, c + 1) if 1 <= w <= u] for c, u in zip(centre, cap)]
    scored = []
    for candidate in itertools.product(*choices):
        gap = abs(count(list(candidate)) - budget)
        moved = sum(a != b for a, b in zip(candidate, centre))
        scored.append((gap > tolerance * budget, moved if gap <= tolerance * budget else 0, gap, candidate))
    _, _, best_gap, chosen = min(scored)
    if best_gap > tolerance * budget:
        raise solved.error(arm, budget, tolerance)
    return list(chosen), count(list(chosen))


def solve_builtin_triplet(
    budget: int,
    *,
    group: Group = DEFAULT_GROUP,
    repeat_structure: str = DEFAULT_STRUCTURE,
    repeat_mode: str = "swish",
    tolerance: float = 0.02,
    channels: int = 1,
    classes: int = 10,
    backbone: str | Backbone = "repeatnet",
    arms: Sequence[str] = DEFAULT_ARMS,
    wrong_group: Group | None = None,
) -> dict[str, ArmSpec]:
    """Widths of the three arms of a built-in or [models.backbone] network at `budget` (no model is
    built; escnn counts come from its layers) for images of `channels` channels and `classes`
    classes: the G-CNN on `group`, the repeat arm at its physical widths (|G| per field); with
    "wrong" in `arms` the G-CNN on `wrong_group` solved to the budget, with "wide" the plain CNN at
    the G-CNN's physical widths (not solved: its count is what those widths give). The
    `augmented` arm is the plain arm's model (see ablate.models.arms.arm_spec)."""
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
        lambda w: gcnn_params(spec, w, group, classes, channels), relative, budget, tolerance, arm="gcnn"
    )
    physical = [group.size * f for f in fields]
    base, repeat_n = solve_widths(
        lambda w: repeat_params(spec, physical, w, repeat_mode, classes, repeat_structure, channels=channels),
        relative,
        budget,
        tolerance,
        upper=physical,
        arm="repeat",
    )
    common = {"backbone": backbone, "channels": channels, "classes": classes}
    grouped = {"group": group, "physical_widths": tuple(physical), **common}
    extra = {}
    if "wrong" in arms:
        extra["wrong"] = _wrong_spec(spec, budget, group, wrong_group, tolerance, common)
    if "wide" in arms:
        n_wide = count_params(WideCNN(spec, physical, group, classes, channels))
        extra["wide"] = ArmSpec("wide", learnable_widths=tuple(physical), n_params=n_wide, **grouped)
    triplet = {
        "plain": ArmSpec(
            "plain", learnable_widths=tuple(plain_w), physical_widths=tuple(plain_w), n_params=plain_n,
            **common,
        ),
        "repeat": ArmSpec(
            "repeat", learnable_widths=tuple(base), n_params=repeat_n, repeat_mode=repeat_mode,
            repeat_structure=repeat_structure, **grouped,
        ),
        "gcnn": ArmSpec("gcnn", learnable_widths=tuple(fields), n_params=gcnn_n, **grouped),
    }  # fmt: skip
    return triplet | extra


def _wrong_spec(
    spec: Backbone, budget: int, group: Group, wrong: Group | None, tolerance: float, common: dict
) -> ArmSpec:
    """The wrong arm's ArmSpec: the G-CNN on `wrong` solved to the budget, in `group`'s design."""
    if wrong is None:
        raise ValueError(f"wrong: the wrong arm needs [models] wrong_group for {group.label}, found none")
    if wrong.trivial:
        raise ValueError(
            f"wrong: expected a group with more than one element for {group.label}, found {wrong.label}"
        )
    classes, channels = common["classes"], common["channels"]
    fields, n = solve_widths(
        lambda w: gcnn_params(spec, w, wrong, classes, channels), spec.relative_widths, budget, tolerance,
        arm=f"wrong {wrong.label}",
    )  # fmt: skip
    return ArmSpec(
        "wrong", learnable_widths=tuple(fields), physical_widths=tuple(wrong.size * f for f in fields),
        n_params=n, group=group, wrong_group=wrong.label, **common,
    )  # fmt: skip


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
    arms = [("plain", TRIVIAL_GROUP)] + [
        (arm, Group(ROTATIONS, n)) for n in group_orders for arm in ("gcnn", "repeat")
    ]
    specs = []
    for arm, group in arms:
        model = paper.build_paper_model(arm, group, classes, width)
        specs.append(
            ArmSpec(
                arm,
                model.backbone.name,
                tuple(model.learnable_widths),
                tuple(model.physical_widths),
                count_params(model),
                group=group,
                repeat_mode="swish" if arm == "repeat" else None,
                repeat_structure=DEFAULT_STRUCTURE if arm == "repeat" else NO_STRUCTURE,
                preset=preset,
                preset_width=width,
            )
        )
    return tuple(specs)
