"""Compiled training steps ([run] compile): the G-CNN's dense basis gives escnn's filters, the
foreach Adam gives the loop's updates bit for bit, and a compiled step agrees with the eager one
for every arm, one run and fused runs. Tolerance of compiled against eager (float32 rounding in a
different order of operations): logits within 1e-4 x (1 + max |logit|); after one step, each
run's weights and statistics within 1e-5 relative in all and 1e-2 per tensor (a tensor that starts
at 0, such as a batch norm's shift, is all update, and entries whose gradient is zero in theory
are float noise in both)."""

import pytest
import torch
from escnn import nn as enn

from ablate.models.backbone import backbone_from_table
from ablate.models.build import solve_triplet
from ablate.models.gcnn import dense_basis, expand_dense
from ablate.report.provenance import code_notes
from ablate.results import StudyResults
from ablate.study.schema import load_study
from ablate.training import compiled as compiled_module
from ablate.training.compiled import AUTO_MIN_TFLOP, training_tflop, use_compile
from ablate.training.driver import run_study
from ablate.training.fused import FusedSeeds
from ablate.training.loop import Cohort, adam, build_model, train_step

CPU = torch.device("cpu")
# a small network of the same layer kinds, so that compiling each arm keeps the suite short
SMALL = backbone_from_table(kernels=[5, 3], widths=[8, 16], pool_after=[True, False], hidden=16)
ARMS = {
    "plain": solve_triplet(1900, backbone=SMALL)["plain"],
    "repeat paper": solve_triplet(1900, backbone=SMALL)["repeat"],
    "repeat matched": solve_triplet(1900, backbone=SMALL, repeat_structure="matched")["repeat"],
    "gcnn": solve_triplet(1900, backbone=SMALL)["gcnn"],
}


def relative_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-12))


@pytest.mark.parametrize("group", ["C4", "D4", "D1"])
def test_the_dense_basis_gives_escnns_filters(group):
    spec = solve_triplet(20000, group=group)["gcnn"]
    model = build_model(spec, 0, CPU)
    convs = [m for m in model.modules() if isinstance(m, enn.R2Conv)]
    assert len(convs) == 6
    for conv in convs:
        basis = dense_basis(conv)
        weights = torch.randn(2, conv.weights.numel())
        dense = expand_dense(weights, basis, len(conv.out_type), len(conv.in_type))
        for s in range(2):
            escnn = conv.basisexpansion(weights[s]).reshape(dense.shape[1:])
            assert (dense[s] - escnn).abs().max() <= 1e-6 * (1 + escnn.abs().max()), conv


def test_a_conv_with_mixed_fields_has_no_dense_basis():
    from escnn import gspaces

    space = gspaces.rot2dOnR2(4)
    mixed = enn.FieldType(space, [space.regular_repr, space.trivial_repr])
    conv = enn.R2Conv(mixed, enn.FieldType(space, [space.regular_repr] * 2), 3)
    with pytest.raises(ValueError, match="more than one type"):
        dense_basis(conv)


@pytest.mark.parametrize("arm", ["plain", "repeat", "gcnn"])
def test_the_foreach_adam_gives_the_loops_updates_bit_for_bit(arm):
    spec = solve_triplet(5000)[arm]
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (1, 16))
    alive, autocast = torch.ones(1, dtype=torch.bool), torch.autocast("cpu", enabled=False)
    weights = []
    for make in (
        lambda p: torch.optim.Adam(p, lr=1e-3, weight_decay=1e-7, foreach=False),
        lambda p: adam(p, 1e-3, 1e-7),
    ):
        cohort = Cohort([build_model(spec, 0, CPU)])
        optimizer = make(cohort.net.parameters())
        for _ in range(3):
            train_step(cohort, optimizer, x, y, alive, 1.0, autocast)
        weights.append([p.detach().clone() for p in cohort.net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


@pytest.fixture
def graphs_only(monkeypatch):
    """Compile with dynamo and AOT autograd but not inductor's kernels (seconds, not a minute)."""
    monkeypatch.setattr(compiled_module, "BACKEND", "aot_eager")
    torch._dynamo.utils.counters.clear()
    yield torch._dynamo.utils.counters


def compiled_against_eager(arm: str, seeds: int) -> None:
    """One SGD step (linear in the gradient) of S runs, compiled and eager: logits, losses and
    each run's weights and statistics within the tolerances of this module's docstring."""
    spec = ARMS[arm]
    torch.manual_seed(0)
    x, y = torch.rand(16, seeds, 28, 28), torch.randint(0, 10, (seeds, 16))
    alive, autocast = torch.ones(seeds, dtype=torch.bool), torch.autocast("cpu", enabled=False)
    groups = {}
    for compile in (False, True):
        cohort = Cohort([build_model(spec, s, CPU) for s in range(seeds)], compile=compile)
        cohort.net.train()
        optimizer = torch.optim.SGD(cohort.net.parameters(), lr=0.1)
        groups[compile] = (cohort, *train_step(cohort, optimizer, x, y, alive, 0.5, autocast))
    (eager, eager_losses, eager_logits), (fast, fast_losses, fast_logits) = groups[False], groups[True]
    assert fast.compiled and isinstance(fast.net, FusedSeeds) and not eager.compiled
    scale = 1 + float(eager_logits.detach().abs().max())
    assert float((fast_logits - eager_logits).detach().abs().max()) <= 1e-4 * scale
    assert torch.allclose(fast_losses, eager_losses, rtol=1e-5, atol=1e-6)
    eager.sync()
    fast.sync()
    for s in range(seeds):
        reference, state = eager.models[s].state_dict(), fast.models[s].state_dict()
        keys = [k for k, v in reference.items() if v.is_floating_point()]
        for key in keys:
            assert relative_gap(state[key], reference[key]) <= 1e-2, (arm, s, key)
        whole = relative_gap(
            torch.cat([state[k].flatten() for k in keys]), torch.cat([reference[k].flatten() for k in keys])
        )
        assert whole <= 1e-5, (arm, s, whole)


@pytest.mark.parametrize("seeds", [1, 2], ids=["one run", "fused"])
@pytest.mark.parametrize("arm", list(ARMS))
def test_every_arms_step_is_one_graph_that_agrees_with_eager(arm, seeds, graphs_only):
    compiled_against_eager(arm, seeds)
    assert graphs_only["stats"]["unique_graphs"] == 1 and not graphs_only["graph_break"]  # one graph


def test_inductors_compiled_step_agrees_with_eager():
    """Inductor's own kernels, for the G-CNN's dense-basis path (about 40 s of the suite on a
    2-core CPU with a cold cache, so the other arms are checked through their graphs above)."""
    compiled_against_eager("gcnn", 1)


def test_auto_compiles_long_cpu_groups_only():
    assert training_tflop(macs=10**7, images=4000, epochs=30, seeds=1) == pytest.approx(7.2)
    assert training_tflop(macs=14_613_200, images=4000, epochs=30, seeds=1) < AUTO_MIN_TFLOP  # answer
    assert use_compile("auto", CPU, AUTO_MIN_TFLOP) and not use_compile("auto", CPU, AUTO_MIN_TFLOP / 2)
    assert not use_compile("auto", torch.device("cuda"), 100.0)
    assert use_compile(True, CPU, 0.0) and not use_compile(False, CPU, 100.0)


def test_runs_record_whether_they_were_compiled(tiny_study, tmp_path, graphs_only):
    """A tiny study under compile = false, then true: its rows say which, the run keys are the
    same, and the report notes a cell that mixes compiled and eager runs."""
    study = load_study(tiny_study(arms='["plain"]'))
    keys = {}
    for setting in (False, True):
        settings = study.run.model_copy(update={"compile": setting, "results": str(tmp_path / str(setting))})
        run_study(study.model_copy(update={"run": settings}))
        runs = StudyResults(tmp_path / str(setting), study.name).runs()
        assert runs["compiled"].astype(str).tolist() == [str(setting)] * 2
        keys[setting] = set(runs["run_key"])
    assert keys[True] == keys[False]
    runs.loc[runs.index[0], "compiled"] = False
    (note,) = [n for n in code_notes(runs) if "compiled steps" in n]
    assert note.startswith("plain at budget 5,000: 1 of 2 runs trained with compiled steps, the rest eager")
    assert not [n for n in code_notes(runs.iloc[1:]) if "compiled steps" in n]
