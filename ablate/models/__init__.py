"""Model triplets at a learnable-parameter budget: plain CNN, learnable-repetition CNN, C_N G-CNN."""

from ablate.models.budget import (ARMS, ArmSpec, build_arm, build_triplet, count_macs, count_params,
                                  model_card, solve_triplet)

__all__ = ["ARMS", "ArmSpec", "build_arm", "build_triplet", "count_macs", "count_params",
           "model_card", "solve_triplet"]
