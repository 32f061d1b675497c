"""A cohort: S runs of one cell trained as one computation (eager or compiled), and the
runs' optimizer.

The computation's form: a built-in arm's seeds as one grouped network (training.fused.FusedSeeds,
written layer type by layer type), any other network's through torch.func (training.vmapped.
VmappedSeeds). Both give each seed its own numbers to float rounding (tests/test_vmapped.py); the
grouped form stays where it exists because it measured faster on the CPU: at S = 3 the vmapped
form ran at 0.81-0.84x of its images per second on the built-in 20k arms (docs/speed.md)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ablate.models.arms import Arm
from ablate.training.compiled import compiled
from ablate.training.fused import FusedSeeds, NoFusedForm
from ablate.training.stacked import StackedSeeds
from ablate.training.vmapped import VmappedSeeds


def run_losses(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, fused: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each run's mean cross-entropy (S,) and the logits (B, S, classes) of `net` (a StackedSeeds
    when `fused`, else one model) on x (B, S C, H, W), labels y (S, B)."""
    logits = net(x) if fused else net(x).unsqueeze(1)
    losses = F.cross_entropy(logits.float().permute(0, 2, 1), y.T, reduction="none").mean(0)
    return losses, logits


class Cohort:
    """S runs of one cell (same spec, different seeds) trained as one computation: the model
    itself when S = 1 and eager, else a FusedSeeds of the S models where the arm has a grouped
    form, a VmappedSeeds where it has none. `compile`: the forward and the losses through
    torch.compile (training.compiled), on the grouped form only (for one seed too); a model
    without one trains eager (`compiled` then says False). `models` stay the per-seed view:
    `sync()` copies the fused weights back into them for evaluation and checkpoints. `form`:
    "auto" (as above) or "vmapped" (VmappedSeeds whatever the arm, for one seed too)."""

    def __init__(self, models: Sequence[Arm], compile: bool = False, form: str = "auto"):
        self.models = list(models)
        self.seeds = len(models)
        self.net: nn.Module = models[0]
        if form == "vmapped":  # a test's or the bench's choice; "auto" is the module docstring's
            self.net = VmappedSeeds(models)
        elif self.seeds > 1 or compile:
            try:
                self.net = FusedSeeds(models)
            except NoFusedForm:
                if self.seeds > 1:
                    self.net = VmappedSeeds(models)
        self.fused = isinstance(self.net, StackedSeeds)
        self.compiled = compile and isinstance(self.net, FusedSeeds)
        self.keys = [name for name, _ in models[0].named_parameters()]
        self._shape: torch.Size | None = None  # the batch shape the compiled step is traced for

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, S C, H, W), channels s C ... (s + 1) C - 1 for run s -> (B, S, classes) logits."""
        return self.net(x) if self.fused else self.net(x).unsqueeze(1)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(S,) mean cross-entropies and (B, S, classes) logits on x, labels y (S, B). Compiled for
        the first batch shape only: an epoch's last, partial batch runs eager rather than paying
        a second warm-up."""
        if self.compiled and self._shape in (None, x.shape):
            self._shape = x.shape
            return compiled(run_losses)(self.net, x, y, True)
        return run_losses(self.net, x, y, self.fused)

    def clip_grad_norm_(self, max_norm: float) -> None:
        """Clip each run's gradients to `max_norm` (its own norm, as unfused)."""
        if not self.fused:
            nn.utils.clip_grad_norm_(self.net.parameters(), max_norm)
        else:
            self.net.clip_grad_norm_(max_norm)

    def sync(self) -> None:
        """Copy the fused weights and statistics into the per-seed models."""
        if self.fused:
            for s, model in enumerate(self.models):
                model.load_state_dict(self.net.seed_state(s, model.state_dict()))

    def optimizer_state(self, optimizer: torch.optim.Optimizer, seed: int) -> dict:
        """Run `seed`'s optimizer state dict, as for its unfused model."""
        if not self.fused:
            return optimizer.state_dict()
        return self.net.seed_optimizer_state(optimizer, seed, self.keys)

    def load_optimizer_states(self, optimizer: torch.optim.Optimizer, states: list[dict]) -> None:
        """Set the optimizer from one unfused optimizer state dict per run."""
        if not self.fused:
            optimizer.load_state_dict(states[0])
        else:
            self.net.load_seed_optimizer_state(optimizer, states, self.keys)


def adam(params, lr: float, weight_decay: float) -> torch.optim.Adam:
    """The runs' optimizer: Adam with its multi-tensor (foreach) step, whose updates equal the
    per-tensor loop's bit for bit (tests/test_compiled.py) in a few operations per step."""
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
