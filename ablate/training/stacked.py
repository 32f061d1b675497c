"""What every form of S seeds trained as one computation shares: each fused tensor is stacked on a
leading seed axis, (S, ...), so seed s's tensor is `t[s]`. From that alone come each seed's state
dict (which loads into its unfused model), its slice of an elementwise optimizer's state and back,
and per-seed gradient clipping. `training.fused.FusedSeeds` (hand-written grouped layers) and
`training.vmapped.VmappedSeeds` (torch.func) provide `stacked()`."""

from __future__ import annotations

import torch
from torch import nn


class StackedSeeds(nn.Module):
    """Base of the fused forms: subclasses set `seeds` and implement `stacked()`; their
    parameters() are exactly the stacked parameters, in parameter_keys() order."""

    seeds: int

    def stacked(self) -> dict[str, torch.Tensor]:
        """{seed-model state key: stacked (S, ...) tensor} for every fused parameter and statistic."""
        raise NotImplementedError

    def parameter_keys(self) -> list[str]:
        """The seed-model state key of each of self.parameters(), in order."""
        names = {id(tensor): key for key, tensor in self.stacked().items()}
        return [names[id(p)] for p in self.parameters()]

    def seed_state(self, seed: int, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Seed `seed`'s state dict, for a model of the arm: `template` (that model's state dict)
        with every fused tensor replaced by its slice."""
        state = dict(template)
        state.update({key: tensor[seed].detach().clone() for key, tensor in self.stacked().items()})
        return state

    def seed_optimizer_state(self, optimizer: torch.optim.Optimizer, seed: int, order: list[str]) -> dict:
        """Seed `seed`'s slice of an (elementwise) optimizer's state, as the state dict of the same
        optimizer over the unfused model whose parameters have the state keys `order`."""
        full = optimizer.state_dict()
        index = {key: i for i, key in enumerate(order)}
        keys = self.parameter_keys()
        state = {
            index[keys[i]]: {k: v[seed].clone() if v.dim() > 0 else v.clone() for k, v in entry.items()}
            for i, entry in full["state"].items()
        }
        (param_group,) = full["param_groups"]
        return {"state": state, "param_groups": [{**param_group, "params": list(range(len(order)))}]}

    @torch.no_grad()
    def load_seed_optimizer_state(
        self, optimizer: torch.optim.Optimizer, states: list[dict], order: list[str]
    ) -> None:
        """Set the optimizer's state from one unfused state dict per seed (seed_optimizer_state's form)."""
        index = {key: i for i, key in enumerate(order)}
        stacked = {}
        for i, key in enumerate(self.parameter_keys()):
            entries = [s["state"][index[key]] for s in states]
            stacked[i] = {
                k: torch.stack([e[k] for e in entries]) if entries[0][k].dim() > 0 else entries[0][k].clone()
                for k in entries[0]
            }
        (param_group,) = states[0]["param_groups"]
        n = len(self.parameter_keys())
        optimizer.load_state_dict(
            {"state": stacked, "param_groups": [{**param_group, "params": list(range(n))}]}
        )

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Per-seed gradient clipping, as nn.utils.clip_grad_norm_ on each seed's model: each seed's
        gradients are scaled by min(1, max_norm / (norm + 1e-6)). Returns the (S,) norms."""
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch.stack([g.reshape(self.seeds, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
        return norms
