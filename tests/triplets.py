"""A test helper: the three built models of a budget (the package builds arms from their specs,
ablate.models.spec.build_arm, through the grid)."""

from ablate.models.build import build_arm, solve_triplet


def build_triplet(budget: int, **settings) -> dict:
    """{"plain", "repeat", "gcnn"} models solved to `budget` (settings: solve_triplet's)."""
    return {arm: build_arm(spec) for arm, spec in solve_triplet(budget, **settings).items()}
