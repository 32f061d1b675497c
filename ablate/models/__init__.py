"""Model triplets at a learnable-parameter budget: plain CNN, learnable-repetition CNN, C_N G-CNN.

The names of the arms and their interface (`ablate.models.arms`) load without torch or escnn;
the builders load on first use.
"""

from ablate.models.arms import ARMS, Arm

_BUILDERS = (
    "ArmSpec",
    "build_arm",
    "build_triplet",
    "count_macs",
    "count_params",
    "model_card",
    "preset_specs",
    "solve_triplet",
)

__all__ = ["ARMS", "Arm", *_BUILDERS]


def __getattr__(name: str):
    if name in _BUILDERS:
        from ablate.models import budget

        return getattr(budget, name)
    raise AttributeError(f"module 'ablate.models' has no attribute {name!r}")
