"""Training loop and evaluation for one run; checkpoint state for mid-run resume.

Data stay on the training device as tensors; a batch is an index slice; augmentation is a
batched rotation on the device. Three generators derived from the run's seed drive model
initialisation, data order and augmentation separately.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ablate.data import Dataset, random_rotate
from ablate.models import Arm, ArmSpec, build_arm
from ablate.study import TrainConfig


@dataclass
class FitResult:
    status: str  # "ok" or "diverged"
    test_error: float  # fraction in [0, 1]; NaN when diverged
    invariance_error: float  # fraction of test digits whose class changes under a 90-degree turn
    train_seconds: float
    history: list[dict] = field(default_factory=list)


class CheckpointStore(Protocol):
    """Where a run's mid-training state lives (see ablate.results)."""

    def load(self) -> dict | None: ...

    def save(self, state: dict) -> None: ...


def derive_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for initialisation, data order and augmentation, from one integer."""
    init, order, augment = np.random.SeedSequence(seed).generate_state(3)
    return {"init": int(init), "order": int(order), "augment": int(augment)}


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; otherwise torch.device(name)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(spec: ArmSpec, seed: int, device: torch.device) -> nn.Module:
    """The arm's model, initialised from the run's init seed, on `device`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seeds(seed)["init"])
        model = build_arm(spec)
    return model.to(device)


def lr_factor(epoch: int, config: TrainConfig) -> float:
    """Learning-rate multiplier for 0-based `epoch`."""
    return 1.0 if epoch < config.constant_epochs else config.decay ** (epoch - config.constant_epochs + 1)


@torch.no_grad()
def _predict(net: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes (N,) for images (N, 1, H, W) from a network in eval mode."""
    return torch.cat([net(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)])


def evaluate(model: Arm, data: Dataset, invariance: bool = False) -> dict[str, float]:
    """Test error, and optionally the invariance error under a 90-degree turn (fractions).

    Runs the model's plain-torch export (eval mode); the model itself is left as it was.
    """
    net = model.export()
    preds = _predict(net, data.x_test)
    out = {"test_error": float((preds != data.y_test).float().mean())}
    if invariance:
        turned = _predict(net, torch.rot90(data.x_test, 1, dims=(2, 3)))
        out["invariance_error"] = float((turned != preds).float().mean())
    return out


@dataclass
class _Loop:
    """The state that a checkpoint carries: everything that makes a resumed run continue exactly."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    order_gen: torch.Generator
    augment_gen: torch.Generator

    def snapshot(self, epoch: int, history: list[dict], elapsed: float, data_fingerprint: str) -> dict:
        """The checkpoint after `epoch` epochs (tensors, numbers, strings, lists and dicts only)."""
        return {
            "data_fingerprint": data_fingerprint,
            "epoch": epoch,
            "history": history,
            "elapsed": elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "order_gen": self.order_gen.get_state(),
            "augment_gen": self.augment_gen.get_state().cpu(),
        }

    def restore(self, state: dict) -> tuple[int, list[dict], float]:
        """Load a snapshot; returns (epochs done, history so far, seconds so far)."""
        self.model.train()  # escnn keeps its expanded filters as buffers only in eval mode
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.order_gen.set_state(state["order_gen"])
        self.augment_gen.set_state(state["augment_gen"].to(self.augment_gen.get_state().device))
        return state["epoch"], state["history"], state["elapsed"]


def fit(
    model: Arm,
    data: Dataset,
    config: TrainConfig,
    seed: int,
    checkpoint: CheckpointStore | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train `model` on `data` (already on the model's device) and evaluate it.

    Resumes from `checkpoint` when it holds a state, and saves one after every epoch, so an
    interrupted run finishes exactly as an uninterrupted one on the same device. `on_epoch`
    receives each history row as it is made (progress bars, tests).
    """
    device = data.x_train.device
    seeds = derive_seeds(seed)
    order_gen = torch.Generator().manual_seed(seeds["order"])
    augment_gen = torch.Generator(device=device).manual_seed(seeds["augment"])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, config))
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda"
    )
    loop = _Loop(model, optimizer, scheduler, order_gen, augment_gen)
    start_epoch, history, elapsed = 0, [], 0.0
    state = checkpoint.load() if checkpoint is not None else None
    fingerprint = data.meta.get("fingerprint", "")
    if state is not None and state.get("data_fingerprint") != fingerprint:
        print(
            f"ablate: checkpoint {getattr(checkpoint, 'path', '')} was made on other data; restarting the run"
        )
        state = None
    if state is not None:
        start_epoch, history, elapsed = loop.restore(state)

    n = len(data.y_train)
    for epoch in range(start_epoch, config.epochs):
        tick = time.perf_counter()
        model.train()
        lr = optimizer.param_groups[0]["lr"]
        order = torch.randperm(n, generator=order_gen).to(device)
        loss_sum = torch.zeros((), device=device)
        wrong = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for start in range(0, n, config.batch_size):
            index = order[start : start + config.batch_size]
            if len(index) < 2:  # BatchNorm cannot train on a single image
                continue
            x, y = data.x_train[index], data.y_train[index]
            if config.augment == "rotation":
                x = random_rotate(x, augment_gen)
            with autocast:
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            loss_sum += loss.detach() * len(index)
            wrong += (logits.argmax(dim=1) != y).sum()
            seen += len(index)
        scheduler.step()
        train_loss = float(loss_sum) / seen
        row = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_error": float(wrong) / seen,
            "test_error": math.nan,
            "lr": lr,
        }
        if not math.isfinite(train_loss):
            row["seconds"] = time.perf_counter() - tick
            history.append(row)
            return FitResult("diverged", math.nan, math.nan, elapsed + row["seconds"], history)
        last = epoch + 1 == config.epochs
        if (epoch + 1) % config.eval_every == 0 or last:
            scores = evaluate(model, data, invariance=last)
            row["test_error"] = scores["test_error"]
        row["seconds"] = time.perf_counter() - tick
        elapsed += row["seconds"]
        history.append(row)
        if checkpoint is not None and epoch + 1 < config.epochs:
            checkpoint.save(loop.snapshot(epoch + 1, history, elapsed, fingerprint))
        if on_epoch is not None:
            on_epoch(row)

    return FitResult("ok", scores["test_error"], scores["invariance_error"], elapsed, history)
