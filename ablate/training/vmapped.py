"""S seeds of any arm as one computation through torch.func: `VmappedSeeds`.

The S models' parameters and floating buffers are stacked on a leading seed axis
(torch.func.stack_module_state) and one template model runs them all under torch.func.vmap
(functional_call), PyTorch's model-ensembling recipe: no fused form per layer type, so a user's
escnn network, its repeat and plain twins included, fuses as the built-in arms do. Each seed keeps
its own BatchNorm statistics (its slice of the stacked buffers, updated in place under vmap), its
data (x's seed axis), its loss, and, through training.stacked, its gradient clipping, optimizer
state and checkpoints.

What vmap cannot run as written, each worked around once on the template (docs/training.md):
- escnn's GroupPooling fills a torch.empty by slices: on the template it computes the same max
  over each field's channels as one reshape (fields of one size; GroupPooling over fields of
  several sizes is left as escnn wrote it);
- integer buffers (escnn's InnerBatchNorm keeps index tensors) are not stacked: every seed's are
  equal, so the template's are shared (stacked, vmap would turn them into batched tensors that end
  in `.item()`); BatchNorm's `num_batches_tracked` is stacked (each seed counts its own);
- the package's CPU ELU is an autograd.Function with `setup_context` and a generated vmap rule,
  and RepeatConv2d asks a tensor's memory format only outside vmap (models.activation, models.repeat);
- what vmap cannot run at all (a branch on a tensor's values) is found before training by
  training.fusion.vmap_problem, and that cell trains one seed at a time.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Sequence

import torch
from escnn import nn as enn
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ablate.training.stacked import StackedSeeds


def _group_pooling(self: enn.GroupPooling, x: enn.GeometricTensor) -> enn.GeometricTensor:
    """escnn's GroupPooling as one reshape and max (fields of one size): vmap can batch it."""
    (size,) = {r.size for r in self.in_type.representations}
    t = x.tensor
    # max(dim).values keeps only the indices for backward (amax keeps its output, which an
    # in-place activation after the pooling would then change)
    pooled = t.reshape(t.shape[0], -1, size, *t.shape[2:]).max(dim=2).values
    return enn.GeometricTensor(pooled, self.out_type, x.coords)


def vmappable(model: nn.Module) -> nn.Module:
    """A copy of `model` whose modules vmap can batch (module docstring); its own tensors are
    never used, the stacked ones are passed in."""
    template = copy.deepcopy(model)
    for module in template.modules():
        if (
            isinstance(module, enn.GroupPooling)
            and len({r.size for r in module.in_type.representations}) == 1
        ):
            module.forward = types.MethodType(_group_pooling, module)
    return template


def _stacked_buffer(name: str, tensor: torch.Tensor) -> bool:
    """Whether a buffer is stacked per seed: floating statistics and BatchNorm's batch counter."""
    return tensor.is_floating_point() or name.endswith("num_batches_tracked")


class VmappedSeeds(StackedSeeds):
    """S models of one arm and spec (different seeds) trained as one torch.func computation.
    Input (B, S C, H, W), channels s C ... (s + 1) C - 1 for seed s; output (B, S, classes)."""

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        self.seeds = len(models)
        for model in models:  # in train mode escnn keeps no expanded filters among its buffers
            model.train()
        self.template = [vmappable(models[0])]  # in a list: not a submodule, its tensors stay out
        params, buffers = stack_module_state(list(models))
        self.names = list(params)
        self.weights = nn.ParameterList(nn.Parameter(params[k]) for k in self.names)
        self.buffer_names = [k for k, v in buffers.items() if _stacked_buffer(k, v)]
        for i, key in enumerate(self.buffer_names):
            self.register_buffer(f"stacked_{i}", buffers[key])
        self.shared = {k: v[0] for k, v in buffers.items() if not _stacked_buffer(k, v)}

    def stacked(self) -> dict[str, torch.Tensor]:
        out = dict(zip(self.names, self.weights))
        out.update({key: getattr(self, f"stacked_{i}") for i, key in enumerate(self.buffer_names)})
        return out

    def _apply(self, fn, recurse=True):
        """Moves the template and the shared buffers with the module (to(device) and the like)."""
        super()._apply(fn, recurse)
        self.template[0]._apply(fn, recurse)
        self.shared = {k: fn(v) for k, v in self.shared.items()}
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.template[0].train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, S C, H, W) -> (B, S, classes) logits. Train mode only: in eval mode escnn's R2Conv
        would use the filters it expanded from the template's own weights."""
        if not self.training:
            raise RuntimeError("VmappedSeeds trains only; evaluate each seed's model (Cohort.sync)")
        b, _, h, w = x.shape
        x = x.reshape(b, self.seeds, -1, h, w).transpose(0, 1)  # (S, B, C, H, W)
        template, shared = self.template[0], self.shared

        def one(state, images):
            return functional_call(template, {**state, **shared}, (images,))

        return vmap(one)(self.stacked(), x).transpose(0, 1)
