"""The symmetry group of a G-CNN as one value: its kind and order, |G|, label, escnn gspace and the
transformations of the pixel grid it holds exactly. Every group label and every exact
transformation of an image is made here.

Torch-free at import: `Group.gspace()` loads escnn and `GridSymmetry.apply` torch when called,
so the study schema and the statistics read groups cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

ROTATIONS, ROTATIONS_AND_MIRRORS = "C", "D"  # the group kinds: C_N and D_N
GROUP_KINDS = (ROTATIONS, ROTATIONS_AND_MIRRORS)  # [models].group
TRIVIAL_ORDER = 1


@dataclass(frozen=True, order=True)
class GridSymmetry:
    """One symmetry of the square pixel grid other than the identity: `mirrored` left-right
    (x.flip(-1), the reflection of escnn's flipRot2dOnR2 with its default axis), then turned by
    `quarter_turns` x 90 degrees (torch.rot90's direction; invariance does not depend on it)."""

    quarter_turns: int
    mirrored: bool = False

    @property
    def name(self) -> str:
        """'a 90-degree turn', 'the mirror', 'the mirror and a 180-degree turn'."""
        turn = f"a {90 * self.quarter_turns}-degree turn" if self.quarter_turns else ""
        return " and ".join(part for part in ("the mirror" if self.mirrored else "", turn) if part)

    def apply(self, x):
        """The transformed images: x (..., H, W) -> (..., W, H) for odd quarter turns, else (..., H, W)."""
        import torch

        x = x.flip(-1) if self.mirrored else x
        return torch.rot90(x, self.quarter_turns, dims=(-2, -1)) if self.quarter_turns else x


@dataclass(frozen=True, order=True)
class Group:
    """A planar symmetry group: kind "C" (N rotations by 360/N) or "D" (N rotations and N mirrors,
    escnn's flipRot2dOnR2), and N. C1 is the trivial group of the arms without one; D1 is the
    mirror group, C2 the half turn."""

    kind: str = ROTATIONS
    order: int = 4

    def __post_init__(self) -> None:
        if self.kind not in GROUP_KINDS or int(self.order) < 1:
            raise ValueError(
                f"group: expected C or D with an order >= 1, found {self.kind!r}, {self.order!r}"
            )
        object.__setattr__(self, "order", int(self.order))

    @property
    def size(self) -> int:
        """|G|: N for C_N, 2N for D_N (the copies of each filter a regular G-CNN layer holds)."""
        return self.order if self.kind == ROTATIONS else 2 * self.order

    @property
    def label(self) -> str:
        """'C4', 'D4', 'D1', 'C1'."""
        return f"{self.kind}{self.order}"

    @property
    def trivial(self) -> bool:
        """Whether this is C1, the group of the arms without one."""
        return self.size == 1

    def gspace(self):
        """escnn's gspace: trivialOnR2 (C1), rot2dOnR2(N) (C_N) or flipRot2dOnR2(N) (D_N, D1 included)."""
        from escnn import gspaces

        if self.trivial:
            return gspaces.trivialOnR2()
        if self.kind == ROTATIONS:
            return gspaces.rot2dOnR2(N=self.order)
        return gspaces.flipRot2dOnR2(N=self.order)

    @cached_property
    def exact(self) -> Group:
        """The subgroup whose elements map the pixel grid onto itself (turns by multiples of 90
        degrees, and the mirrors composed with them): C1, C2, C4, D1, D2 or D4."""
        quarter = 4 if self.order % 4 == 0 else 2 if self.order % 2 == 0 else 1
        return Group(self.kind, quarter)

    @cached_property
    def transformations(self) -> tuple[GridSymmetry, ...]:
        """The group's exact transformations of an image other than the identity: () when it has
        none (C1, and C_N for odd N > 1: see `no_exact_note`)."""
        turns = {4: (1, 2, 3), 2: (2,), 1: ()}[self.exact.order]
        rotations = tuple(GridSymmetry(k) for k in turns)
        if self.kind == ROTATIONS:
            return rotations
        return rotations + tuple(GridSymmetry(k, mirrored=True) for k in (0, *turns))

    @property
    def invariance_column(self) -> str:
        """The runs.csv column of the fraction of test predictions changed by some exact
        transformation of this group ('invariance_C4'); '' when it has none."""
        return f"invariance_{self.exact.label}" if self.transformations else ""

    @property
    def orbit_error_column(self) -> str:
        """The runs.csv column of the test error of logits averaged over this group's exact
        transformations (the identity included: 'orbit_error_C4'); '' when it has none."""
        return f"orbit_error_{self.exact.label}" if self.transformations else ""

    @property
    def no_exact_note(self) -> str:
        """Why a group without exact transformations is not tested with one ('' when it has some)."""
        if self.transformations or self.trivial:
            return ""
        return (
            f"{self.label} holds no transformation of the pixel grid but the identity (its turns by "
            f"{360 / self.order:g} degrees interpolate), so its invariance is measured under turns by "
            "random angles only"
        )

    def outside(self, other: Group) -> tuple[GridSymmetry, ...]:
        """This group's exact transformations that `other` does not hold (D2 against C4: the
        90- and 270-degree turns)."""
        theirs = set(other.transformations)
        return tuple(t for t in self.transformations if t not in theirs)

    @classmethod
    def of_gspace(cls, space) -> Group:
        """The Group of an escnn gspace on the plane: rot2dOnR2(N), flipRot2dOnR2(N) (escnn's default
        mirror axis) or trivialOnR2; ValueError naming the gspace otherwise."""
        fiber = space.fibergroup
        dihedral = type(fiber).__name__ == "DihedralGroup"
        kind, order = (ROTATIONS_AND_MIRRORS, fiber.order() // 2) if dihedral else (ROTATIONS, fiber.order())
        for candidate in (cls(kind, order), cls(ROTATIONS_AND_MIRRORS, max(1, order // 2))):
            if candidate.gspace().name == space.name:
                return candidate
        raise ValueError(
            f"group: expected an escnn gspace rot2dOnR2(N), flipRot2dOnR2(N) with its default axis, or "
            f"trivialOnR2, found {space.name}"
        )

    @classmethod
    def of(cls, row) -> Group | None:
        """The group of a mapping with group_order (and group): None when N is unknown (0)."""
        order = int(row.get("group_order", 0) or 0)
        return cls(row.get("group") or ROTATIONS, order) if order > 0 else None

    @classmethod
    def parse(cls, label) -> Group:
        """Group.parse('D4') == Group('D', 4); a Group is returned as it is, an escnn gspace as its
        Group (of_gspace). C_N needs N >= 2 (C1 is no group); D1, the mirror group, is one.
        ValueError naming what was found otherwise."""
        if isinstance(label, Group):
            return label
        if hasattr(label, "fibergroup"):
            return cls.of_gspace(label)
        kind, order = str(label)[:1], str(label)[1:]
        if kind not in GROUP_KINDS or not order.isdigit() or int(order) < (2 if kind == ROTATIONS else 1):
            raise ValueError(
                "group: expected C and an order >= 2 or D and an order >= 1, e.g. 'C4', 'D4' or 'D1', "
                f"found {label!r}"
            )
        return cls(kind, int(order))

    @classmethod
    def labels(cls, kind: str, orders) -> str:
        """'C2/C4/C8': the labels of several orders of one kind."""
        return "/".join(cls(kind, n).label for n in orders)


TRIVIAL_GROUP = Group(ROTATIONS, TRIVIAL_ORDER)
DEFAULT_GROUP = Group(ROTATIONS, 4)  # C4 (P4): a study's G-CNN when it names no group
# The subgroups of the pixel grid's symmetries that a group's exact part can be: each run records
# the fraction of test predictions changed under each (runs.csv's invariance_<label> columns), so
# one plain run serves every design of its budget and each design reads its own group's column.
EXACT_GROUPS = tuple(
    Group(kind, n)
    for kind, orders in ((ROTATIONS, (2, 4)), (ROTATIONS_AND_MIRRORS, (1, 2, 4)))
    for n in orders
)
INVARIANCE_COLUMNS = tuple(g.invariance_column for g in EXACT_GROUPS)
ORBIT_ERROR_COLUMNS = tuple(g.orbit_error_column for g in EXACT_GROUPS)
