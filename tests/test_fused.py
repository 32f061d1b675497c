"""Fused seeds: a group of S runs trained as one grouped network equals S unfused runs."""

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from ablate.data.sources import load_dataset
from ablate.models.build import solve_triplet
from ablate.results import StudyResults
from ablate.study.grid import expand_grid
from ablate.study.schema import TrainConfig, load_study, with_overrides
from ablate.training.driver import run_study
from ablate.training.fused import FusedSeeds
from ablate.training.loop import build_model, fit, fit_cohort

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
SPECS = solve_triplet(5000)


@pytest.fixture(scope="module")
def data():
    return load_dataset("embedded", limit_train=128, limit_test=64)


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-12))


@pytest.mark.parametrize("arm", ["plain", "repeat", "gcnn"])
def test_a_fused_group_starts_from_exactly_the_unfused_weights(arm):
    models = [build_model(SPECS[arm], s, CPU) for s in SEEDS]
    fused = FusedSeeds(models)
    for s in SEEDS:
        alone = build_model(SPECS[arm], s, CPU).state_dict()
        state = fused.seed_state(s, alone)
        assert state.keys() == alone.keys()
        for key, value in alone.items():
            assert torch.equal(state[key], value), (arm, s, key)
    x = torch.rand(8, len(SEEDS), 28, 28)
    with torch.no_grad():
        out = fused(x)
        for s, model in enumerate(models):
            assert torch.allclose(out[:, s], model(x[:, s : s + 1]), atol=1e-5)


@pytest.mark.parametrize("arm", ["plain", "repeat", "gcnn"])
def test_one_step_matches_the_unfused_runs(arm):
    """Forward, per-seed loss, backward, per-seed clipping and an SGD step: each seed's weights and
    statistics equal its unfused model's within 1e-5 relative. (SGD keeps the step linear in the
    gradient; Adam's first step is sign(g) * lr, which turns float noise in gradients that are zero
    in theory, such as a bias before BatchNorm, into full-size differences.)"""
    torch.manual_seed(0)
    x, y = torch.rand(32, len(SEEDS), 28, 28), torch.randint(0, 10, (len(SEEDS), 32))
    fused = FusedSeeds([build_model(SPECS[arm], s, CPU) for s in SEEDS])
    losses = F.cross_entropy(fused(x).permute(0, 2, 1), y.T, reduction="none").mean(0)
    losses.sum().backward()
    fused.clip_grad_norm_(0.5)
    torch.optim.SGD(fused.parameters(), lr=0.1).step()
    for s in SEEDS:
        alone = build_model(SPECS[arm], s, CPU)
        F.cross_entropy(alone(x[:, s : s + 1]), y[s]).backward()
        torch.nn.utils.clip_grad_norm_(alone.parameters(), 0.5)
        torch.optim.SGD(alone.parameters(), lr=0.1).step()
        reference = alone.state_dict()
        state = fused.seed_state(s, reference)
        keys = [k for k, v in reference.items() if v.is_floating_point()]
        for key in keys:  # each tensor to float32 noise (a tensor that starts at 0 is all update)
            assert relative_gap(state[key], reference[key]) <= 1e-4, (arm, s, key)
        whole = relative_gap(
            torch.cat([state[k].flatten() for k in keys]), torch.cat([reference[k].flatten() for k in keys])
        )
        assert whole <= 1e-5, (arm, s, whole)


@pytest.mark.parametrize("arm", ["plain", "repeat", "gcnn"])
def test_two_epochs_of_fit_cohort_match_the_unfused_losses(arm, data):
    config = TrainConfig(epochs=2, batch_size=32, augment="rotation")
    fused = fit_cohort([build_model(SPECS[arm], s, CPU) for s in SEEDS], data, config, SEEDS)
    for s, result in zip(SEEDS, fused):
        alone = fit(build_model(SPECS[arm], s, CPU), data, config, s)
        for f, u in zip(result.history, alone.history, strict=True):
            assert f["train_loss"] == pytest.approx(u["train_loss"], rel=0.01), (arm, s)


def test_a_diverging_seed_is_recorded_and_the_others_finish(data):
    config = TrainConfig(epochs=2, batch_size=32)
    results = fit_cohort(
        [build_model(SPECS["plain"], s, CPU) for s in SEEDS], data, config, SEEDS, lr_scale=[1.0, 1e30, 1.0]
    )
    assert [r.status for r in results] == ["ok", "diverged", "ok"]
    assert len(results[1].history) == 1 and torch.isnan(torch.tensor(results[1].test_error))
    for s in (0, 2):
        alone = fit(build_model(SPECS["plain"], s, CPU), data, config, s)
        assert results[s].history[-1]["train_loss"] == pytest.approx(
            alone.history[-1]["train_loss"], rel=0.01
        )


class Interrupt(Exception):
    pass


def test_kill_mid_group_and_resume_gives_the_uninterrupted_rows(tiny_study):
    def study(name):
        base = load_study(tiny_study(name=name, arms='["plain", "gcnn"]', seeds="[0, 1, 2]", epochs=3))
        return with_overrides(base, "test", run={"fuse_seeds": 3})

    cut, clean = study("cut"), study("clean")
    seen = []

    def die_in_second_group(row):
        seen.append(row)
        if (
            len(seen) == 9 + 3
        ):  # the plain group took 3 epochs x 3 runs; die after the gcnn group's first epoch
            raise Interrupt

    with pytest.raises(Interrupt):
        run_study(cut, on_epoch=die_in_second_group)
    store = StudyResults(cut.run.results, "cut")
    assert len(pd.read_csv(store.runs_path)) == 3
    checkpoints = sorted((store.dir / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 3  # one per run of the cut group, in the unfused form
    state = torch.load(checkpoints[0], weights_only=True)
    assert (
        state["epoch"] == 1
        and {"model", "optimizer", "scheduler", "order_gen", "augment_gen"} <= state.keys()
    )
    run_study(cut)
    run_study(clean)
    resumed = pd.read_csv(store.runs_path).set_index("run_key").sort_index()
    reference = (
        pd.read_csv(StudyResults(clean.run.results, "clean").runs_path).set_index("run_key").sort_index()
    )
    assert list(resumed.index) == list(reference.index) and (resumed["fused"] == 3).all()
    for column in ("test_error", "invariance_error", "invariance_C4", "train_loss", "epochs"):
        assert resumed[column].equals(reference[column]), column  # NaN where both have none


def test_a_fused_checkpoint_resumes_unfused(tiny_study):
    base = load_study(tiny_study(name="mixed", arms='["repeat"]', seeds="[0, 1]", epochs=2))
    fused = with_overrides(base, "test", run={"fuse_seeds": 2})

    def stop(row):
        raise Interrupt

    with pytest.raises(Interrupt):
        run_study(fused, on_epoch=stop)
    run_study(with_overrides(base, "test", run={"fuse_seeds": 1}))
    runs = pd.read_csv(StudyResults(base.run.results, "mixed").runs_path)
    assert len(runs) == 2 and (runs["status"] == "ok").all() and (runs["fused"] == 1).all()
    assert (runs["epochs"] == 2).all()


@pytest.mark.parametrize("arm", ["plain", "repeat", "gcnn"])
def test_the_paper_presets_models_fuse(arm):
    """The bridge's width-scaled paper models (studies/bridge_c.toml) train fused on a GPU: their
    G-CNN ends in escnn's PointwiseAdaptiveAvgPool2D. In train mode (per-seed batch statistics) the
    fused network gives each seed's own outputs."""
    study = load_study(Path(__file__).resolve().parents[1] / "studies" / "bridge_c.toml")
    spec = next(r.model for r in expand_grid(study) if r.arm == arm)
    models = [build_model(spec, s, CPU) for s in SEEDS[:2]]
    fused = FusedSeeds(models)
    x = torch.rand(6, 2, 29, 29)
    with torch.no_grad():
        out = fused(x)
        for s, model in enumerate(models):
            assert relative_gap(out[:, s], model(x[:, s : s + 1])) <= 1e-5, (arm, s)
