"""The training loop of a cohort (evaluation: training.evaluate); checkpoint state for mid-run resume.

Data stay on the training device as tensors; a batch is an index slice; augmentation is a
batched rotation on the device. Three generators derived from the run's seed drive model
initialisation, data order and augmentation separately.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ablate.data.augment import augment
from ablate.data.sources import Dataset
from ablate.models.arms import Arm
from ablate.models.build import build_arm
from ablate.models.spec import ArmSpec
from ablate.study.schema import TrainConfig
from ablate.training.cohort import Cohort, adam, run_losses  # noqa: F401 (training.loop exports them)
from ablate.training.evaluate import evaluate


@dataclass
class FitResult:
    status: str  # "ok" or "diverged"
    test_error: float  # fraction in [0, 1]; NaN when diverged
    train_seconds: float  # its epochs' training (its share of a fused group's) and its evaluations
    history: list[dict] = field(default_factory=list)
    # fractions of test images whose class changes (training.evaluate): invariance_error (its own
    # group's exact transformations), invariance_error_any (turns by random angles) and one
    # invariance_<label> and orbit_error_<label> per subgroup of the pixel grid's symmetries; empty
    # when diverged
    invariance: dict[str, float] = field(default_factory=dict)
    step_seconds: float = 0.0  # its share of this process's training steps, without evaluations
    compiled: bool = False  # its steps went through torch.compile (training.compiled)


class CheckpointStore(Protocol):
    """Where a run's mid-training state lives (ablate.results.Checkpoint)."""

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


@dataclass
class _Streams:
    """One run's data-order and augmentation generators (from its seed)."""

    order: torch.Generator
    augment: torch.Generator

    @classmethod
    def of(cls, seed: int, device: torch.device) -> _Streams:
        seeds = derive_seeds(seed)
        return cls(
            torch.Generator().manual_seed(seeds["order"]),
            torch.Generator(device=device).manual_seed(seeds["augment"]),
        )


def _snapshot(
    cohort, optimizer, scheduler, streams: _Streams, seed: int, progress: dict, fingerprint: str
) -> dict:
    """Run `seed`'s checkpoint, the same whether it trains fused or not (tensors, numbers,
    strings, lists and dicts only); group.sync() must have run."""
    return {
        "data_fingerprint": fingerprint,
        "epoch": progress["epoch"],
        "history": progress["history"],
        "elapsed": progress["elapsed"],
        "model": cohort.models[seed].state_dict(),
        "optimizer": cohort.optimizer_state(optimizer, seed),
        "scheduler": scheduler.state_dict(),
        "order_gen": streams.order.get_state(),
        "augment_gen": streams.augment.get_state().cpu(),
    }


def _restore(models, states: list[dict], streams: list[_Streams]) -> list[dict]:
    """Load each run's checkpoint into its model and generators (before fusing); returns each
    run's progress {epoch, history, elapsed}."""
    for model, state, stream in zip(models, states, streams):
        model.train()  # escnn keeps its expanded filters as buffers only in eval mode
        model.load_state_dict(state["model"])
        stream.order.set_state(state["order_gen"])
        stream.augment.set_state(state["augment_gen"].to(stream.augment.get_state().device))
    return [{"epoch": st["epoch"], "history": st["history"], "elapsed": st["elapsed"]} for st in states]


def _resume_states(checkpoints, fingerprint: str) -> list[dict] | None:
    """The runs' checkpoints when all of them hold one made on this data at the same epoch, None
    when none does; ValueError when they disagree (group runs by checkpoint epoch)."""
    states = [c.load() if c is not None else None for c in checkpoints]
    for i, state in enumerate(states):
        if state is not None and state.get("data_fingerprint") != fingerprint:
            where = getattr(checkpoints[i], "path", "")
            print(f"ablate: checkpoint {where} was made on other data; restarting the run")
            states[i] = None
    if all(s is None for s in states):
        return None
    epochs = {s["epoch"] if s is not None else 0 for s in states}
    if len(epochs) > 1:
        raise ValueError(f"fit_cohort: runs of one cohort resume from different epochs {sorted(epochs)}")
    return states


def uses_bf16(config: TrainConfig, device: torch.device) -> bool:
    """Whether runs with `config` train under bfloat16 autocast on `device` ([train].bf16)."""
    return config.bf16 is True or (config.bf16 == "cuda" and device.type == "cuda")


def train_step(
    cohort: Cohort,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    alive: torch.Tensor,
    grad_clip: float | None,
    autocast: torch.autocast,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step of S runs on x (B, S, H, W), labels y (S, B): the step minimises the
    sum of the alive runs' mean cross-entropies, clips each run's gradients by its own norm, and
    (test hook) scales run s's update by scale[s]. Returns the (S,) losses and (B, S, classes) logits."""
    with autocast:
        losses, logits = cohort.losses(x, y)
    optimizer.zero_grad(set_to_none=True)
    torch.where(alive, losses, 0.0).sum().backward()
    if grad_clip:
        cohort.clip_grad_norm_(grad_clip)
    if scale is None:
        optimizer.step()
        return losses, logits
    params = [p for param_group in optimizer.param_groups for p in param_group["params"]]
    before = [p.detach().clone() for p in params]
    optimizer.step()
    with torch.no_grad():  # the test hook: scale each run's update
        for p, old in zip(params, before):
            p.copy_(old + (p - old) * scale.view(-1, *[1] * (p.dim() - 1)))
    return losses, logits


def exact_fp32(device: torch.device) -> None:
    """fp32 means fp32 on CUDA too: no TF32 in convolutions (cuDNN's default) or matrix products
    (bf16 autocast, where a study asks for it, is unaffected). Process-wide, as torch's flags are."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


@dataclass
class _Fit:
    """The state of a cohort while it trains: the fused group and its optimizer, each run's
    streams, progress ({epoch, history, elapsed}), checkpoint, share of this process's step
    seconds and result (None while it trains)."""

    cohort: Cohort
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    streams: list[_Streams]
    progress: list[dict]
    checkpoints: list[CheckpointStore | None]
    fingerprint: str
    alive: torch.Tensor
    results: list[FitResult | None]
    steps: list[float]


def _start(models, config: TrainConfig, checkpoints, seeds, data: Dataset, compile: bool) -> _Fit:
    """The group ready to train its first epoch: resumed from the runs' checkpoints when they
    hold one made on this data, else fresh."""
    device = data.x_train.device
    count = len(models)
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * count
    streams = [_Streams.of(seed, device) for seed in seeds]
    fingerprint = data.meta.get("fingerprint", "")
    states = _resume_states(checkpoints, fingerprint)
    fresh = [{"epoch": 0, "history": [], "elapsed": 0.0} for _ in models]
    progress = _restore(models, states, streams) if states else fresh
    cohort = Cohort(models, compile)
    optimizer = adam(cohort.net.parameters(), config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: lr_factor(e, config))
    if states:
        cohort.load_optimizer_states(optimizer, [s["optimizer"] for s in states])
        scheduler.load_state_dict(states[0]["scheduler"])
    n = len(data.y_train)
    if config.drop_last and n < config.batch_size:
        raise ValueError(
            f"train.drop_last: the {n} training images make no full batch of {config.batch_size}"
        )
    alive = torch.ones(count, dtype=torch.bool, device=device)
    return _Fit(
        cohort, optimizer, scheduler, streams, progress, checkpoints, fingerprint, alive, [None] * count,
        [0.0] * count,
    )  # fmt: skip


def _train_epoch(fit: _Fit, data: Dataset, config: TrainConfig, autocast, scale) -> tuple[list, list]:
    """One epoch of steps over every run's own data order; each run's (train loss, train error)."""
    cohort, streams, count = fit.cohort, fit.streams, len(fit.streams)
    device, n = data.x_train.device, len(data.y_train)
    cohort.net.train()
    orders = torch.stack([torch.randperm(n, generator=s.order) for s in streams]).to(device)
    loss_sum = torch.zeros(count, device=device)
    wrong = torch.zeros(count, device=device, dtype=torch.long)
    seen = 0
    for start in range(0, n, config.batch_size):
        index = orders[:, start : start + config.batch_size]  # (S, b)
        b = index.shape[1]
        if b < 2 or (config.drop_last and b < config.batch_size):  # BatchNorm needs 2 images
            continue
        x, y = data.x_train[index.reshape(-1)], data.y_train[index]  # (S * b, C, H, W), (S, b)
        x = augment(x, config.augment, [s.augment for s in streams])
        x = x.reshape(count, b, *x.shape[1:]).transpose(0, 1).reshape(b, -1, *x.shape[2:])  # (b, S C, H, W)
        losses, logits = train_step(cohort, fit.optimizer, x, y, fit.alive, config.grad_clip, autocast, scale)
        loss_sum += losses.detach() * b
        wrong += (logits.argmax(dim=-1) != y.T).sum(dim=0)
        seen += b
    return (loss_sum / seen).tolist(), (wrong / seen).tolist()  # one sync per epoch


def _end_epoch(fit: _Fit, s: int, row: dict, data: Dataset, config: TrainConfig) -> bool:
    """Run s after an epoch (its history `row` holds the epoch's step seconds): diverged (left
    out from then on), evaluated when due, finished at the last epoch, else checkpointed.
    Returns whether the run is still in the study's history (not diverged)."""
    p, epoch = fit.progress[s], row["epoch"]
    fit.steps[s] += row["seconds"]
    if not math.isfinite(row["train_loss"]):
        p["history"].append(row)
        fit.results[s] = FitResult(
            "diverged", math.nan, p["elapsed"] + row["seconds"], p["history"], step_seconds=fit.steps[s]
        )
        fit.alive[s] = False
        return False
    last = epoch == config.epochs
    own = time.perf_counter()
    if epoch % config.eval_every == 0 or last:
        scores = evaluate(fit.cohort.models[s], data, invariance=last)
        row["test_error"] = scores["test_error"]
    row["seconds"] += time.perf_counter() - own  # its share of the step, and its evaluation
    p["epoch"], p["elapsed"] = epoch, p["elapsed"] + row["seconds"]
    p["history"].append(row)
    if last:
        invariance = {k: v for k, v in scores.items() if k != "test_error"}
        fit.results[s] = FitResult(
            "ok", scores["test_error"], p["elapsed"], p["history"], invariance, fit.steps[s]
        )
    elif fit.checkpoints[s] is not None:
        state = _snapshot(fit.cohort, fit.optimizer, fit.scheduler, fit.streams[s], s, p, fit.fingerprint)
        fit.checkpoints[s].save(state)
    return True


def fit_cohort(
    models: Sequence[Arm],
    data: Dataset,
    config: TrainConfig,
    seeds: Sequence[int],
    checkpoints: Sequence[CheckpointStore | None] | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    lr_scale: Sequence[float] | None = None,
    compile: bool = False,
) -> list[FitResult]:
    """Train S runs of one cell (models built with build_model from their seeds) together.

    Each run keeps what makes it independent: its initialisation, its data order and
    augmentation streams, its loss (the step minimises the sum of the runs' mean losses, so each
    run's gradients are its own), gradient clipping by its own norm, and divergence (a run whose
    epoch loss is not finite is recorded "diverged" and left out from then on). Every epoch each
    run's checkpoint is saved in the unfused form, so a group resumes after a kill, fused or not.
    on_epoch gets each run's history row (with "run": its index). lr_scale: a test hook that
    scales each run's parameter updates. The final evaluation measures invariance under the
    models' own groups (training.evaluate). compile: the step through torch.compile where the model has
    a fused form (each result's `compiled` says whether it did).
    """
    device = data.x_train.device
    exact_fp32(device)
    fit = _start(models, config, checkpoints, seeds, data, compile)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(config, device))
    scale = torch.tensor(lr_scale, device=device) if lr_scale is not None else None
    for epoch in range(fit.progress[0]["epoch"], config.epochs):
        tick = time.perf_counter()
        lr = fit.optimizer.param_groups[0]["lr"]
        train_loss, train_error = _train_epoch(fit, data, config, autocast, scale)
        fit.scheduler.step()
        seconds = (time.perf_counter() - tick) / len(models)
        fit.cohort.sync()
        rows = []
        for s in (s for s in range(len(models)) if fit.results[s] is None):
            row = {"epoch": epoch + 1, "train_loss": train_loss[s], "train_error": train_error[s]}
            row |= {"test_error": math.nan, "lr": lr, "seconds": seconds}
            if _end_epoch(fit, s, row, data, config):
                rows.append({**row, "run": s})
        for row in rows if on_epoch is not None else []:
            on_epoch(row)
        if not bool(fit.alive.any()):
            break
    for result in (r for r in fit.results if r is not None):
        result.compiled = fit.cohort.compiled
    return fit.results


def fit(
    model: Arm,
    data: Dataset,
    config: TrainConfig,
    seed: int,
    checkpoint: CheckpointStore | None = None,
    on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train one run (fit_cohort with S = 1): resumes from `checkpoint` when it holds a state and
    saves one after every epoch, so an interrupted run finishes exactly as an uninterrupted one
    on the same device. `on_epoch` receives each history row as it is made."""
    return fit_cohort([model], data, config, [seed], [checkpoint], on_epoch)[0]
