"""Sharing or symmetry (issue 42): the wrong-group arm, the compute-matched wide arm, the three-way
split of the G-CNN's gain, learned invariance per arm and test-time averaging."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import ablate
from ablate import stats
from ablate.models.arms import Group
from ablate.models.build import build_arm, solve_triplet
from ablate.models.counting import count_macs
from ablate.models.groups import GridSymmetry
from ablate.report.__main__ import main as report_main
from ablate.run import main

FIVE = ("plain", "repeat", "wrong", "gcnn", "wide")
TURN90, HALF, MIRROR = GridSymmetry(1), GridSymmetry(2), GridSymmetry(0, mirrored=True)


def runs_table(means: dict[str, float], n: int, rng, sd: float = 0.01, budgets=(20_000,), order: int = 2):
    """A runs table of the five arms: n seeds each per budget, errors ~ Normal(mean, sd)."""
    rows = []
    for budget in budgets:
        for arm, mean in means.items():
            for seed, error in enumerate(rng.normal(mean, sd, n)):
                rows.append({
                    "arm": arm, "budget": budget, "seed": seed, "test_error": error, "status": "ok",
                    "group_order": 1 if arm == "plain" else order,
                    "repeat_structure": "matched" if arm == "repeat" else "",
                })  # fmt: skip
    return pd.DataFrame(rows)


MEANS = {"plain": 0.13, "repeat": 0.12, "wrong": 0.08, "gcnn": 0.04, "wide": 0.10}
TRUE = {  # each share of the total gain 0.09
    "rep": (0.13 - 0.12) / 0.09, "struct": (0.12 - 0.08) / 0.09, "sym": (0.08 - 0.04) / 0.09,
}  # fmt: skip


def test_the_three_shares_recover_known_values_and_sum_to_one():
    table = stats.decompose(runs_table(MEANS, 2000, np.random.default_rng(0)), n_boot=0, n_perm=0)
    row = table.iloc[0]
    for name, true in TRUE.items():
        assert row[f"share_{name}"] == pytest.approx(true, abs=0.01), name
    assert row["share_rep"] + row["share_struct"] + row["share_sym"] == pytest.approx(1.0, abs=1e-12)
    assert row["share_struct"] + row["share_sym"] == pytest.approx(row["share_eq"], abs=1e-12)
    assert row["gain_wide"] == pytest.approx(0.03, abs=0.002) and row["gain_free"] == pytest.approx(
        0.02, abs=0.002
    )


def test_without_the_wrong_arm_the_split_is_todays_two_way_one():
    runs = runs_table(MEANS, 8, np.random.default_rng(1))
    with_wrong = stats.decompose(runs, n_boot=0, n_perm=0).iloc[0]
    without = stats.decompose(runs[~runs["arm"].isin(["wrong", "wide"])], n_boot=0, n_perm=0).iloc[0]
    assert "share_struct" not in without and "gain_wide" not in without
    for column in (
        "share_rep",
        "share_rep_lo_delta",
        "share_rep_hi_fieller",
        "share_eq",
        "p_rep",
        "gain_total",
    ):
        assert with_wrong[column] == pytest.approx(without[column], rel=1e-12), column


def test_each_shares_interval_covers_its_true_value_at_ten_seeds():
    """400 simulated studies of 10 seeds per arm, each its own budget: every share's delta and
    Fieller 95% intervals cover the truth within the band of the two-way share's coverage test."""
    table = stats.decompose(
        runs_table(MEANS, 10, np.random.default_rng(2), budgets=range(400)), n_boot=0, n_perm=0
    )
    assert table["identifiable"].all()
    for name, true in TRUE.items():
        for method in ("delta", "fieller"):
            lo, hi = table[f"share_{name}_lo_{method}"], table[f"share_{name}_hi_{method}"]
            coverage = float(((lo <= true) & (true <= hi)).mean())
            print(name, method, coverage)
            assert 0.91 <= coverage <= 0.98, (name, method, coverage)


def test_learned_invariance_and_orbit_averaging_recover_a_known_difference():
    rng = np.random.default_rng(3)
    runs = runs_table(MEANS, 12, rng)
    invariance = {
        "plain": 0.30,
        "repeat": 0.20,
        "wrong": 0.30,
        "gcnn": 0.0,
        "wide": 0.30,
    }  # repeat learned some
    runs["invariance_C2"] = [invariance[a] + rng.normal(0, 0.02) for a in runs["arm"]]
    runs.loc[runs["arm"] == "gcnn", "invariance_C2"] = 0.0
    runs["invariance_error_any"] = runs["invariance_C2"] + 0.1
    runs["orbit_error_C2"] = runs["test_error"] - np.where(
        runs["arm"] == "plain", 0.03, 0.0
    )  # averaging helps plain
    gaps = stats.invariance_gaps(runs).set_index(["measure", "arm"])
    repeat = gaps.loc[("exact", "repeat")]
    assert repeat["gap"] == pytest.approx(0.10, abs=0.03) and repeat["lo"] > 0 and repeat["p_holm"] < 0.01
    assert (
        gaps.loc[("exact", "wrong"), "lo"] < 0 < gaps.loc[("exact", "wrong"), "hi"]
    )  # no learned invariance
    assert (gaps["p_holm"] >= gaps["p"]).all()  # Holm only raises p
    orbit = stats.orbit_errors(runs).set_index("arm")
    gap = orbit.loc["plain", "error"] - orbit.loc["gcnn", "error"]
    assert orbit.loc["plain", "closed"] == pytest.approx(0.03 / gap, rel=1e-9)
    assert orbit.loc["repeat", "closed"] == pytest.approx(0.0) and math.isnan(orbit.loc["gcnn", "closed"])


def test_runs_from_before_the_per_group_columns_stay_out_of_the_exact_comparison():
    """A plain arm recorded before the per-group columns (its invariance_error: a 90-degree turn)
    is not set against a repeat arm's half-turn column; turns by random angles still compare."""
    rng = np.random.default_rng(4)
    runs = runs_table({"plain": 0.13, "repeat": 0.12, "gcnn": 0.04}, 6, rng)
    legacy = runs["arm"] == "plain"
    runs["invariance_error"] = np.where(legacy, 0.30, 0.10)
    runs["invariance_C2"] = np.where(legacy, np.nan, 0.10)
    runs["invariance_error_any"] = 0.2 + rng.normal(0, 0.01, len(runs))
    gaps = stats.invariance_gaps(runs)
    assert set(gaps["measure"]) == {"any"} and set(gaps["arm"]) == {"repeat"}
    table = stats.design_invariance(runs)
    assert (
        table.loc[table["arm"] == "plain", "legacy"].all()
        and not table.loc[table["arm"] != "plain", "legacy"].any()
    )
    runs["invariance_C2"] = runs["invariance_error"]  # the same runs, measured per group: compared
    exact = stats.invariance_gaps(runs).set_index(["measure", "arm"]).loc[("exact", "repeat")]
    assert exact["gap"] == pytest.approx(0.20)


def test_the_wrong_arm_is_invariant_to_its_own_group_and_not_to_the_datas():
    torch.manual_seed(0)
    specs = solve_triplet(5000, group="C2", arms=FIVE, wrong_group="D1")
    wrong = build_arm(specs["wrong"]).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert float((wrong(MIRROR.apply(x)) - wrong(x)).abs().max()) < 1e-5  # D1: its own
        assert float((wrong(HALF.apply(x)) - wrong(x)).abs().max()) > 1e-3  # C2's half turn: not D1's
    assert wrong.group == Group("D", 1) and specs["wrong"].group == Group("C", 2)  # built on D1, C2's design
    c4 = solve_triplet(5000, group="C4", arms=FIVE, wrong_group="D2")
    assert {t.name for t in Group("C", 4).outside(Group.parse(c4["wrong"].wrong_group))} == {
        "a 90-degree turn",
        "a 270-degree turn",
    }  # what D2 lacks of the data's group: tested on it below
    d2 = build_arm(c4["wrong"]).eval()
    with torch.no_grad():
        assert float((d2(TURN90.apply(x)) - d2(x)).abs().max()) > 1e-3
        assert float((d2(HALF.apply(x)) - d2(x)).abs().max()) < 1e-5


def test_the_wide_arm_has_the_gcnns_physical_widths_and_macs_with_every_weight_free():
    for group, wrong in (("C2", "D1"), ("C4", "D2")):
        specs = solve_triplet(20_000, group=group, arms=FIVE, wrong_group=wrong)
        wide, gcnn = build_arm(specs["wide"]), build_arm(specs["gcnn"])
        assert wide.physical_widths == gcnn.physical_widths == list(specs["wrong"].physical_widths)
        assert count_macs(wide) == count_macs(gcnn) == count_macs(build_arm(specs["wrong"]))
        assert specs["wide"].n_params > 4 * 20_000 * (1 if group == "C2" else 2)  # about 84k and 171k
        for arm in ("plain", "repeat", "wrong", "gcnn"):
            assert abs(specs[arm].n_params / 20_000 - 1) <= 0.02, (group, arm)


def test_a_builder_yields_all_five_arms():
    torch.manual_seed(0)
    t = ablate.triplet(
        "ablate.models.zoo:equivariant_resnet", 20_000, group="C2", arms=FIVE, wrong_group="D1"
    )
    assert set(t.counts) == set(FIVE)
    assert all(abs(t.counts[a] - 20_000) <= 400 for a in ("plain", "repeat", "wrong", "gcnn")), t.counts
    assert t.counts["wide"] > 2 * 20_000 and t.wide.physical_widths == t.gcnn.physical_widths
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    for model, own, other in ((t.wrong, MIRROR, HALF), (t.gcnn, HALF, MIRROR)):
        model.eval()
        with torch.no_grad():
            assert float((model(own.apply(x)) - model(x)).abs().max()) < 1e-4
            assert float((model(other.apply(x)) - model(x)).abs().max()) > 1e-4


def test_a_tiny_five_arm_study_trains_and_its_report_builds(tiny_study, tmp_path):
    path = tiny_study(name="fivearm", arms=str(list(FIVE)).replace("'", '"'), seeds="[0, 1]", epochs=1)
    settings = 'group_order = [2, 4]\nwrong_group = { 2 = "D1", 4 = "D2" }\nrepeat_structure = "matched"\n'
    text = path.read_text().replace("[models]\n", "[models]\n" + settings)
    path.write_text(text)
    assert main([str(path)]) == 0
    runs = pd.read_csv(tmp_path / "results" / "fivearm" / "runs.csv")
    assert len(runs) == 2 * (1 + 2 * 4) and set(runs["arm"]) == set(FIVE)
    wrong = runs[runs["arm"] == "wrong"].set_index("group_order")
    assert (
        set(wrong["wrong_group"]) == {"D1", "D2"} and (wrong["invariance_error"] == 0).all()
    )  # own group, trained
    matched = runs[runs["arm"].isin(["plain", "repeat", "wrong", "gcnn"])]
    assert (abs(matched["n_params"] / 5000 - 1) <= 0.02).all()
    wide, gcnn = runs[runs["arm"] == "wide"], runs[runs["arm"] == "gcnn"]
    assert sorted(wide["macs"]) == sorted(gcnn["macs"]) and (wide["n_params"] > 2 * 5000).all()
    out = tmp_path / "figs"
    assert (
        report_main(
            [
                "--results",
                str(tmp_path / "results"),
                "--study",
                "fivearm",
                "--out",
                str(out),
                "--format",
                "png",
            ]
        )
        == 0
    )
    table = (out / "fivearm" / "table.md").read_text()
    assert "## Sharing or symmetry" in table and "## Learned invariance against the plain arm" in table
    assert "the wrong group D2 holds a 180-degree turn of C4: it is only partly wrong" in table


def test_the_study_file_asks_for_a_wrong_group_for_every_order(tiny_study, capsys):
    path = tiny_study(name="nowrong", arms='["plain", "repeat", "wrong", "gcnn"]', seeds="[0]", epochs=1)
    assert main([str(path), "--dry-run"]) == 2
    assert 'models.wrong_group: expected a group for the arm "wrong"' in capsys.readouterr().err
    path.write_text(
        path.read_text().replace("[models]\n", '[models]\ngroup_order = [2, 4]\nwrong_group = { 2 = "D1" }\n')
    )
    assert main([str(path), "--dry-run"]) == 2
    assert "expected a group for every group_order, missing [4]" in capsys.readouterr().err


def test_narrowing_a_five_arm_study_to_arms_without_the_wrong_one_runs(tiny_study, capsys):
    """--arms plain,repeat on a study with a wrong_group: the narrowed study has no wrong arm, so its
    wrong_group is dropped with it rather than refused as a key without its arm."""
    path = tiny_study(name="narrowfive", arms=str(list(FIVE)).replace("'", '"'), seeds="[0]", epochs=1)
    path.write_text(path.read_text().replace("[models]\n", '[models]\nwrong_group = "D1"\ngroup_order = 2\n'))
    assert main([str(path), "--arms", "plain,repeat", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert " repeat " in out and " wrong " not in out and " gcnn " not in out
