"""What a study will cost before it runs: one epoch of every cell, timed where the time goes.

For each cell of a study's grid (one model; its first seed), on the study's own data and
training settings: building the model and counting it (per-run overhead), one epoch of training
steps, one evaluation of the test set (every `eval_every` epochs) and the final evaluation with
the invariance passes. From those, the seconds of one run and of the cell's runs, and of the
study run `jobs` at a time.
"""

from __future__ import annotations

import time

import pandas as pd
import torch

from ablate.data.sources import Dataset
from ablate.models.arms import ARM_INFO, DEFAULT_STRUCTURE, NO_STRUCTURE
from ablate.models.counting import count_macs
from ablate.study.grid import RunSpec, arm_train_config, expand_grid
from ablate.study.schema import Study
from ablate.training.compiled import training_tflop, use_compile
from ablate.training.evaluate import evaluate
from ablate.training.loop import build_model, fit_cohort


def time_cell(spec: RunSpec, study: Study, data: Dataset, device: torch.device) -> dict:
    """Seconds of one run's parts for the cell of `spec`: build (model, MACs, and the compiled
    step's warm-up where [run] compile would compile it), steps (one epoch of training, compiled
    where it would be), eval (one test-set evaluation), final (the last evaluation's invariance
    passes); `compiled` says which."""
    start = time.perf_counter()
    model = build_model(spec.model, spec.seed, device)
    macs = count_macs(model, data.x_test.shape[-1], data.x_test.shape[1])
    build = time.perf_counter() - start
    config = arm_train_config(study.train, spec.arm).model_copy(update={"epochs": 1, "eval_every": 1})
    work = training_tflop(macs, len(data.y_train), study.train.epochs, 1)
    compile = use_compile(study.run.compile, device, work)
    first = fit_cohort([model], data, config, [spec.seed], compile=compile)[0]  # one epoch, its evaluation
    steps, warmup = first.step_seconds, 0.0
    if first.compiled:  # the compiled figure: a second epoch on the warm code; the first's excess is warm-up
        again = build_model(spec.model, spec.seed, device)
        steps = fit_cohort([again], data, config, [spec.seed], compile=True)[0].step_seconds
        warmup = max(first.step_seconds - steps, 0.0)
    start = time.perf_counter()
    evaluate(model, data)
    eval_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(model, data, invariance=True)
    final = time.perf_counter() - start
    return {
        "build": build + warmup,
        "compiled": first.compiled,
        "steps": steps,
        "eval": eval_s,
        "final": max(final - eval_s, 0.0),
    }


def study_cost(study: Study, data: Dataset, device: torch.device) -> pd.DataFrame:
    """One row per cell: budget, model (arm and N, or the preset's name), params, runs, the
    seconds of time_cell, and `run_s` / `cell_s`, the estimated seconds of one run and of all the
    cell's runs (build + epochs x steps + evaluations + final passes)."""
    cells: dict[tuple, list[RunSpec]] = {}
    for spec in expand_grid(study):
        cells.setdefault((spec.budget, spec.model), []).append(spec)
    epochs, every = study.train.epochs, study.train.eval_every
    evaluations = len({e for e in range(1, epochs + 1) if e % every == 0 or e == epochs})
    rows = []
    data = data.to(device)
    for (budget, model), specs in cells.items():
        parts = time_cell(specs[0], study, data, device)
        run_s = parts["build"] + epochs * parts["steps"] + evaluations * parts["eval"] + parts["final"]
        label = f" {model.group.label}" if ARM_INFO[model.arm].grouped else ""
        name = model.model_name or model.arm + label
        if model.repeat_structure not in (NO_STRUCTURE, DEFAULT_STRUCTURE):
            name += f" ({model.repeat_structure})"
        rows.append(
            {"budget": budget, "model": name, "params": model.n_params, "runs": len(specs), **parts}
            | {"run_s": run_s, "cell_s": run_s * len(specs)}
        )
    return pd.DataFrame(rows)
