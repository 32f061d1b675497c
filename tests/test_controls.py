"""Controls: the matched repeat structure, group-order sweeps, the augmentation arm, any-angle invariance."""

import numpy as np
import pandas as pd
import pytest
import torch

from ablate.models.copies import CopyBatchNorm, CopyMax, copy_batch_norm, copy_max
from ablate.models.counting import count_params
from ablate.results import StudyResults
from ablate.run import main
from ablate.stats import decompose, pooled
from ablate.study.grid import expand_grid
from ablate.study.schema import load_study, parse_study
from tests.triplets import build_triplet


@pytest.mark.parametrize("backbone", ["repeatnet", "z2cnn"])
@pytest.mark.parametrize("budget", [5_000, 20_000, 100_000, 350_000])
def test_matched_repeat_arm_hits_the_budget_with_the_gcnns_norm_and_head(backbone, budget):
    models = build_triplet(budget, backbone=backbone, repeat_structure="matched")
    repeat = models["repeat"]
    assert abs(count_params(repeat) / budget - 1) <= 0.02 and repeat.repeat_structure == "matched"
    assert repeat.physical_widths == models["gcnn"].physical_widths
    norms = [m for m in repeat.features if isinstance(m, CopyBatchNorm)]
    assert len(norms) == len(repeat.learnable_widths)
    for norm, base in zip(norms, repeat.learnable_widths):
        assert sum(p.numel() for p in norm.parameters()) == 2 * base
    (pool,) = [m for m in repeat.features if isinstance(m, CopyMax)]
    x = torch.rand(2, 1, 28, 28)
    head_input = repeat.features(x)
    assert head_input.shape[1] == repeat.learnable_widths[-1] == pool.base
    if backbone == "repeatnet":
        assert repeat.head[2].in_features == repeat.learnable_widths[-1]


def test_matched_norm_pools_statistics_over_copies_and_exports_exactly():
    norm = CopyBatchNorm(6, 2)  # channel i * 2 + o is copy i of base channel o
    x = torch.randn(8, 6, 5, 5) * torch.tensor([1.0, 3.0, 1.0, 3.0, 1.0, 3.0]).view(1, -1, 1, 1)
    y = norm(x).detach()
    for base in (0, 1):
        copies = y[:, base::2]
        assert abs(float(copies.mean())) < 1e-5 and abs(float(copies.var(unbiased=False)) - 1) < 1e-3
    norm.eval()
    assert torch.allclose(norm(x), norm.to_batch_norm()(x), atol=1e-5)
    assert torch.equal(CopyMax(6, 2)(x), torch.stack([x[:, 0::2].amax(1), x[:, 1::2].amax(1)], dim=1))


def sweep_study(tmp_path, **models) -> str:
    text = {
        "name": "sweep",
        "data": {"source": "embedded", "limit_train": 96, "limit_test": 32},
        "models": {"budgets": [10_000, 20_000], "group_order": [2, 4, 8], **models},
        "train": {"seeds": [0, 1], "epochs": 1, "batch_size": 32},
        "run": {"device": "cpu", "results": str(tmp_path / "results"), "threads": 1},
    }
    return parse_study(text, "sweep")


def test_a_group_order_sweep_trains_the_plain_arm_once_per_budget_and_seed(tmp_path):
    grid = expand_grid(sweep_study(tmp_path))
    count = pd.Series([spec.arm for spec in grid]).value_counts().to_dict()
    assert count == {"plain": 2 * 2, "repeat": 2 * 3 * 2, "gcnn": 2 * 3 * 2}
    assert len({spec.run_key for spec in grid}) == len(grid)
    both = expand_grid(
        sweep_study(
            tmp_path, repeat_structures=["paper", "matched"], arms=["plain", "repeat", "gcnn", "augmented"]
        )
    )
    count = pd.Series([spec.arm for spec in both]).value_counts().to_dict()
    assert count == {"plain": 4, "augmented": 4, "repeat": 2 * 3 * 2 * 2, "gcnn": 2 * 3 * 2}


def test_a_budget_a_group_order_cannot_reach_is_named_at_load_time(tmp_path):
    with pytest.raises(ValueError, match=r"^sweep: models.group_order: C8: repeat: budget 5000 is too small"):
        expand_grid(sweep_study(tmp_path, budgets=[5_000]), "sweep")


def test_decomposition_has_one_row_per_budget_and_group_order():
    rng = np.random.default_rng(0)
    means = {(arm, 1): m for arm, m in (("plain", 0.10), ("augmented", 0.07))}
    means.update({("repeat", n): m for n, m in ((2, 0.09), (4, 0.08), (8, 0.075))})
    means.update({("gcnn", n): m for n, m in ((2, 0.06), (4, 0.04), (8, 0.03))})
    rows = [
        {
            "arm": arm,
            "budget": budget,
            "seed": seed,
            "group_order": n,
            "test_error": mean + rng.normal(0, 0.003),
        }
        for budget in (10_000, 20_000)
        for seed in range(4)
        for (arm, n), mean in means.items()
    ]
    runs = pd.DataFrame(rows).assign(status="ok", repeat_structure="paper")
    table = decompose(runs, n_boot=0, n_perm=0)
    assert list(zip(table["budget"], table["group_order"])) == [
        (b, n) for b in (10_000, 20_000) for n in (2, 4, 8)
    ]
    plain = runs[(runs["arm"] == "plain") & (runs["budget"] == 10_000)]["test_error"].mean()
    assert (table.loc[table["budget"] == 10_000, "err_plain"] - plain).abs().max() < 1e-12  # one plain arm
    c4 = table[(table["budget"] == 20_000) & (table["group_order"] == 4)].iloc[0]
    assert c4["share_rep"] == pytest.approx(0.02 / 0.06, abs=0.08)
    assert c4["gain_aug"] == pytest.approx(0.03, abs=0.006) and c4["p_aug"] < 0.05
    assert (
        c4["share_aug"] == pytest.approx(0.5, abs=0.15)
        and c4["share_aug_lo"] < c4["share_aug"] < c4["share_aug_hi"]
    )
    assert len(pooled(runs)) == 3  # one pooled share per group order


def test_controls_study_end_to_end_with_augmentation_and_any_angle_invariance(tmp_path, capsys):
    path = tmp_path / "ctl.toml"
    path.write_text(
        'name = "ctl"\n[data]\nsource = "embedded"\nlimit_train = 96\nlimit_test = 32\n'
        '[models]\nbudgets = [10000]\ngroup_order = [2, 4]\narms = ["plain", "repeat", "gcnn", "augmented"]\n'
        'repeat_structures = ["paper", "matched"]\n'
        "[train]\nseeds = [0, 1]\nepochs = 1\nbatch_size = 32\n"
        f'[run]\ndevice = "cpu"\nresults = "{tmp_path / "r"}"\nthreads = 1\n'
    )
    assert main([str(path)]) == 0
    runs = pd.read_csv(StudyResults(tmp_path / "r", "ctl").runs_path)
    assert len(runs) == 2 * (1 + 1 + 2 + 2 * 2)  # plain, augmented, gcnn x N, repeat x N x structure
    assert set(runs.loc[runs["arm"] == "repeat", "repeat_structure"]) == {"paper", "matched"}
    assert runs["invariance_error_any"].between(0, 1).all()
    c4 = (runs["arm"] == "gcnn") & (runs["group_order"] == 4)  # C2 is not invariant to 90-degree turns
    assert (runs.loc[c4, "invariance_error"] == 0).all()
    first = runs[runs["seed"] == 0].drop_duplicates("arm").set_index("arm")["run_key"]
    assert first["augmented"] != first["plain"]
    study = load_study(path)
    from ablate.study.grid import arm_train_config

    assert arm_train_config(study.train, "augmented").augment == "rotation"
    assert arm_train_config(study.train, "plain").augment == "none"
    capsys.readouterr()
    assert main([str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "augmented" in out and "matched" in out and "C2/C4" in out


def test_copy_norm_and_max_take_the_reshape_path_with_the_general_paths_values():
    torch.manual_seed(0)
    x = torch.randn(8, 12, 5, 5) * 3 + 1  # 12 channels = 3 copies of 4 base channels
    fast = CopyBatchNorm(12, 4)
    with torch.no_grad():
        fast.weight.copy_(torch.rand(4) + 0.5)
        fast.bias.copy_(torch.randn(4))
    general = CopyBatchNorm(12, 4)
    general.load_state_dict(fast.state_dict())
    for training in (True, False):
        fast.train(training)
        general.train(training)
        args = (general.copy_of, general.weight, general.bias, general.running_mean, general.running_var)
        expected = copy_batch_norm(x, *args, training, general.momentum, general.eps)
        assert torch.allclose(fast(x), expected, atol=1e-5)
        assert torch.allclose(fast.running_mean, general.running_mean, atol=1e-6)
        assert torch.allclose(fast.running_var, general.running_var, atol=1e-6)
    assert torch.equal(CopyMax(12, 4)(x), copy_max(x, CopyMax(12, 4).copy_of, 4))
    odd = CopyBatchNorm(10, 4)  # 10 is not a whole number of copies: the general path
    assert odd(torch.randn(4, 10, 3, 3)).shape == (4, 10, 3, 3)
