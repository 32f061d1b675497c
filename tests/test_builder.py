"""Your own network (issue 30): one escnn builder gives all three arms, from a study file or from
Python; bad builders are one line and exit 2 before anything trains."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from escnn import nn as enn

import ablate
from ablate.models.build import solve_triplet
from ablate.models.repeat import RepeatConv2d
from ablate.models.twin import TensorTwin
from ablate.run import main

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ZOO = "ablate.models.zoo:equivariant_resnet"
sys.path.insert(0, str(TESTS))  # the test builders (tests/builders.py), as a study file's folder is
INVARIANCE_TOLERANCE = 1e-4  # largest logit change under a turn, relative to 1 + the largest logit


def logits(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def turn_change(model, x, transform) -> float:
    """Largest logit change under `transform`, relative to 1 + the largest logit."""
    base = logits(model, x)
    return float((logits(model, transform(x)) - base).abs().max()) / (1 + float(base.abs().max()))


def rot90(x):
    return torch.rot90(x, 1, dims=(2, 3))


@pytest.fixture(scope="module")
def zoo_triplets():
    torch.manual_seed(0)
    return {budget: ablate.triplet(ZOO, budget) for budget in (20_000, 100_000)}


def test_triplet_counts_are_within_two_percent_of_the_budget(zoo_triplets):
    for budget, t in zoo_triplets.items():
        print(budget, t.counts)
        assert all(abs(n - budget) <= 0.02 * budget for n in t.counts.values()), (budget, t.counts)


def test_only_the_gcnn_is_invariant_at_init(zoo_triplets):
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    t = zoo_triplets[20_000]
    gcnn = turn_change(t.gcnn, x, rot90)
    assert gcnn <= INVARIANCE_TOLERANCE
    assert (logits(t.gcnn, x).argmax(1) == logits(t.gcnn, rot90(x)).argmax(1)).all()
    for arm in (t.repeat, t.plain):
        assert turn_change(arm, x, rot90) > 100 * max(gcnn, 1e-7)


def test_the_d4_gcnn_is_invariant_to_turns_and_the_mirror():
    t = ablate.triplet(ZOO, 40_000, group="D4")
    assert all(abs(n - 40_000) <= 800 for n in t.counts.values()), t.counts
    x = torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert turn_change(t.gcnn, x, rot90) <= INVARIANCE_TOLERANCE
    assert turn_change(t.gcnn, x, lambda v: v.flip(-1)) <= INVARIANCE_TOLERANCE
    assert turn_change(t.repeat, x, lambda v: v.flip(-1)) > 1e-4


def _convs(module) -> dict[str, torch.nn.Module]:
    """The convolutions by path: escnn's R2Convs, or the twins that replace them."""
    twins = (RepeatConv2d, torch.nn.Conv2d)
    return {
        n: m
        for n, m in module.named_modules()
        if isinstance(m, enn.R2Conv) or (isinstance(m, TensorTwin) and isinstance(m.module, twins))
    }


def test_the_repeat_twin_is_as_wide_as_the_gcnn_and_the_plain_twin_has_full_filters(zoo_triplets):
    t = zoo_triplets[20_000]
    gcnn, repeat, plain = _convs(t.gcnn), _convs(t.repeat), _convs(t.plain)
    assert list(gcnn) == list(repeat) == list(plain) and len(gcnn) >= 10  # every conv twinned, by path
    for path, conv in gcnn.items():
        exported = conv.export().weight.shape  # escnn's own filter, (out, in, k, k)
        twin = repeat[path].module
        assert isinstance(twin, RepeatConv2d) and twin.full_weight().shape == exported, path
        assert twin.base_out < twin.out_channels  # the twin repeats a smaller base
        filters = plain[path].module
        assert isinstance(filters, torch.nn.Conv2d) and filters.weight.shape[-2:] == exported[-2:], path
        assert filters.weight.requires_grad and filters.weight.numel() == np.prod(filters.weight.shape)


def test_the_plain_twin_learns_every_filter_entry_the_trivial_group_basis_leaves_out():
    from escnn import gspaces

    from ablate.models.counting import count_params as learnable
    from ablate.models.twin import plan_twin
    from ablate.models.zoo import equivariant_resnet

    raw = equivariant_resnet(gspaces.trivialOnR2(), 2.0, 1, 10)
    convs = [r for r in plan_twin(raw, "plain") if isinstance(raw.get_submodule(r.path), enn.R2Conv)]
    assert len(convs) >= 10
    for r in convs:
        conv = raw.get_submodule(r.path)
        full = conv.out_type.size * conv.in_type.size * conv.kernel_size**2
        assert r.count(0.0) == full and isinstance(r.make(0.0), torch.nn.Conv2d), r.path
        if conv.kernel_size >= 3:  # escnn's band-limited basis holds fewer than k x k entries
            assert learnable(conv) < full, r.path


def test_repeatnet_as_a_builder_matches_the_builtin_arms():
    """The built-in backbone written to the builder contract: the same physical widths (one
    width multiplier, so each layer within one field of the solver's per-layer rounding) and
    counts within 2% of the budget, as today's arms."""
    for structure in ("paper", "matched"):
        t = ablate.triplet("builders:repeatnet", 20_000, repeat_structure=structure)
        builtin = solve_triplet(20_000, repeat_structure=structure)
        assert t.gcnn.physical_widths == t.repeat.physical_widths
        for arm in ("gcnn", "repeat"):
            ours, theirs = t.gcnn.physical_widths, builtin[arm].physical_widths
            assert all(abs(a - b) <= 4 for a, b in zip(ours, theirs)), (arm, ours, theirs)
        assert all(abs(a - b) <= 1 for a, b in zip(t.plain.physical_widths, builtin["plain"].physical_widths))
        for arm, n in t.counts.items():
            assert abs(n - 20_000) <= 400 and abs(builtin[arm].n_params - 20_000) <= 400, (arm, n)


def test_the_example_study_trains_and_reports(tmp_path, capsys):
    """studies/example_resnet.toml as `make test` runs it: every arm within 2% of its budget,
    the G-CNN's predictions unchanged under 90-degree turns, and its report builds."""
    results = tmp_path / "results"
    study = ROOT / "studies" / "example_resnet.toml"
    assert main([str(study), "--results", str(results)]) == 0
    runs = ablate.load_runs(results / "example-resnet")
    assert len(runs) == 12 and (runs["builder"] == ZOO).all() and (runs["status"] == "ok").all()
    assert ((runs["n_params"] - runs["budget"]).abs() <= 0.02 * runs["budget"]).all()
    assert (runs.loc[runs["arm"] == "gcnn", "invariance_error"] == 0).all()
    physical = runs.pivot_table(index="budget", columns="arm", values="physical_widths", aggfunc="first")
    assert (physical["repeat"] == physical["gcnn"]).all()
    out = ablate.build_report(results / "example-resnet", out=tmp_path / "figs", formats=("png",))
    assert (out / "table.md").exists() and "20,000" in (out / "table.md").read_text()
    assert main([str(study), "--results", str(results)]) == 0  # resumes: nothing to train
    assert "training 0" in capsys.readouterr().out


BAD = {
    "builders:nothing_here": "expected a callable nothing_here in builders, found nothing",
    "builders:NOT_CALLABLE": "expected a callable NOT_CALLABLE in builders, found int",
    "no_such_module.nets:build": "no_such_module.nets:build does not import (ModuleNotFoundError",
    "builders:raises": "raised RuntimeError: my network is broken (called with C4_on_R2[(None, 4)], width 1",
    "builders:wrong_shape": "maps images (4, 1, 28, 28) to (4, 11), expected (4, 10)",
    "builders:not_invariant": "is not invariant to a 90-degree turn at init: logits change by",
    "builders:untwinnable": "(repeat arm): conv: R2Conv on",
    "builders:norm_pooled": "NormPool cannot be twinned: it acts on whole fields",
}


@pytest.mark.parametrize("builder", list(BAD))
def test_a_bad_builder_is_one_line_and_exit_2_before_training(builder, tmp_path, capsys):
    study = tmp_path / "bad.toml"
    text = (ROOT / "studies" / "example_resnet.toml").read_text().replace(ZOO, builder)
    study.write_text(text.replace('device = "cpu"', f'device = "cpu"\nresults = "{tmp_path / "r"}"'))
    (tmp_path / "builders.py").write_text((TESTS / "builders.py").read_text())  # the study's folder
    assert main([str(study)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith(f"error: {study}: models.builder: ") and BAD[builder] in err[0]
    ), err
    assert not (tmp_path / "r").exists()  # nothing trained, nothing written


def test_a_budget_no_width_reaches_names_the_nearest_count(tmp_path, capsys):
    study = tmp_path / "tiny.toml"
    study.write_text(
        (ROOT / "studies" / "example_resnet.toml").read_text().replace("[20000, 100000]", "[300]")
    )
    assert main([str(study), "--dry-run"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert (
        "models.budgets: gcnn C4: budget 300 is out of reach within 2.0%: the nearest reachable counts are"
        in line
    )
    below, above = (int(n) for n in line.split("counts are ")[1].split(" learnable")[0].split(" and "))
    assert below < 300 < above and f"or take a budget of {below} or {above}" in line
    needed = float(line.split("tolerance = ")[1].split()[0])  # the tolerance it names admits the nearest
    assert needed >= min(300 - below, above - 300) / 300 > 0.02


def test_import_ablate_stays_light_and_the_api_is_there():
    import subprocess

    code = "import ablate, sys; print('torch' in sys.modules, sorted(ablate.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False ['build_report', 'load_runs', 'run_study', 'triplet']"
    with pytest.raises(AttributeError):
        ablate.no_such_function  # noqa: B018
    assert isinstance(ablate.load_runs(ROOT / "results" / "quick"), pd.DataFrame)


def test_run_study_from_python_trains_a_study_file_or_a_loaded_study(tiny_study, capsys):
    from ablate.study.schema import load_study

    path = tiny_study(name="api", arms='["plain"]', seeds="[0, 1]", epochs=1)
    folder = ablate.run_study(path)
    runs = ablate.load_runs(folder)
    assert folder.name == "api" and sorted(runs["seed"]) == [0, 1] and (runs["status"] == "ok").all()
    assert ablate.run_study(load_study(path)) == folder  # a loaded study: nothing left to train
    assert "2 of 2 runs already finished; training 0" in capsys.readouterr().out
    assert len(ablate.load_runs(folder)) == 2
