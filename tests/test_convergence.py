"""The convergence check on synthetic histories: a converged and an unconverged cell."""

import numpy as np
import pandas as pd
import pytest

from ablate import stats
from ablate.report import text
from ablate.report.__main__ import main

from .test_report import write_study


def synthetic(epochs=30, eval_every=2, slope=None, seeds=3):
    """Runs and history of one budget: every arm flat at its level from epoch 10 on (noise 0.05
    points), except the arms in `slope`, which still fall by the given points per epoch."""
    slope = slope or {}
    rng = np.random.default_rng(0)
    levels = {"plain": 0.12, "repeat": 0.10, "gcnn": 0.05}
    runs, history = [], []
    for arm, level in levels.items():
        for seed in range(seeds):
            key = f"{arm}-{seed}"
            errors = {}
            for epoch in range(1, epochs + 1):
                falling = slope.get(arm, 0.0) * max(0, epochs - epoch) / 100
                early = 0.3 * max(0, 10 - epoch) / 10
                errors[epoch] = level + falling + early + rng.normal(0, 0.0005)
                evaluated = epoch % eval_every == 0 or epoch == epochs
                history.append(
                    {"run_key": key, "epoch": epoch, "test_error": errors[epoch] if evaluated else None}
                )
            order, structure = (1, "") if arm == "plain" else (4, "paper" if arm == "repeat" else "")
            runs.append(
                {"run_key": key, "arm": arm, "budget": 5000, "seed": seed, "group_order": order,
                 "repeat_structure": structure, "test_error": errors[epochs], "status": "ok",
                 "epochs": epochs}
            )  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(history)


def test_the_window_is_the_last_fifth_of_the_epochs():
    runs, history = synthetic(epochs=30, eval_every=2)
    changes = stats.run_changes(history, runs)
    assert (changes["start_epoch"] == 24).all() and (changes["end_epoch"] == 30).all()
    runs, history = synthetic(epochs=30, eval_every=7)  # evaluated at 7, 14, 21, 28, 30
    assert (stats.run_changes(history, runs)["start_epoch"] == 21).all()
    one = history.groupby("run_key").tail(1)  # only the last epoch evaluated: no change measurable
    assert stats.run_changes(one, runs)["change"].isna().all()


def test_a_converged_cell_passes_and_an_unconverged_one_is_flagged():
    runs, history = synthetic(slope={"repeat": 0.2})  # 0.2 points per epoch: -1.2 over epochs 24-30
    conv = stats.convergence(history, runs).set_index("arm")
    assert conv.loc["repeat", "unconverged"] and conv.loc["repeat", "n"] == 3
    assert conv.loc["repeat", "mean_change"] == pytest.approx(-0.012, abs=0.001)
    assert not conv.loc["plain", "unconverged"] and not conv.loc["gcnn", "unconverged"]
    assert abs(conv.loc["plain", "mean_change"]) < 0.001
    assert conv.loc["repeat", "mean_abs_change"] == pytest.approx(0.012, abs=0.001)
    assert conv.loc["plain", "converged"] and conv.loc["plain", "upper_abs_change"] < 0.005
    # the threshold is a parameter: 0.1 points per epoch (-0.6) is flagged at 0.5, not at 1.0
    runs, history = synthetic(slope={"gcnn": 0.1})
    assert stats.convergence(history, runs).set_index("arm").loc["gcnn", "unconverged"]
    assert not stats.convergence(history, runs, threshold=0.01)["unconverged"].any()


def test_opposite_moves_do_not_cancel_and_one_run_shows_nothing():
    """Half the runs fall and half rise by 1 point: the mean signed change is 0, the cell is not
    shown converged; a single flat run has no bound, so it is not shown converged either."""
    runs, history = synthetic(seeds=4)
    last = history["epoch"] == 30
    for seed, sign in zip(range(4), (1, -1, 1, -1)):
        for arm in ("plain", "repeat", "gcnn"):
            rows = last & (history["run_key"] == f"{arm}-{seed}")
            history.loc[rows, "test_error"] += sign * 0.01
    conv = stats.convergence(history, runs).set_index("arm")
    assert abs(conv.loc["plain", "mean_change"]) < 0.001 and conv.loc["plain", "mean_abs_change"] > 0.009
    assert conv["unconverged"].all() and (conv["moved"] == 4).all()
    one_runs, one_history = synthetic(seeds=1)
    single = stats.convergence(one_history, one_runs)
    assert single["upper_abs_change"].isna().all() and single["unconverged"].all()
    assert text.bound(single.iloc[0]) == "no bound from 1 run"


def test_unknown_change_is_not_flagged():
    runs, history = synthetic(slope={"repeat": 0.2})
    conv = stats.convergence(history.groupby("run_key").tail(1), runs)
    assert conv["unknown"].all() and not conv["unconverged"].any()


def test_the_headline_says_when_a_share_is_not_shown_stable(tmp_path, capsys):
    """The verdict is on the share (tests/test_stability.py); the headline and the tables carry it."""
    from .test_stability import trajectories

    runs, history = trajectories(5)  # a flat share at 5 seeds: too few seeds to show it stable
    table = stats.decompose(runs, n_boot=0, n_perm=0)
    flagged = text.unstable_designs(stats.share_stability(history, runs))
    assert len(flagged) == 1 and flagged[0].startswith("budget 20,000, C4, matched control (too few seeds: ")
    sentence = text.headline_sentence(table, 4, "", None, {20_000: flagged})
    assert sentence.endswith(
        f"Not every share of its budget is shown stable over the last epochs: {flagged[0]}."
    )
    assert "shown stable" not in text.headline_sentence(table, 4, "", None, {})
    write_study(tmp_path / "results", budgets=(10_000,), epochs=3)
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "figs")]) == 0
    printed = capsys.readouterr().out
    table_md = (tmp_path / "figs" / "synth" / "table.md").read_text()
    assert "share's change over last 20% of epochs (pts, 95% CI)" in table_md
    assert "judges convergence on the share itself" in table_md and "single runs fluctuate by" in table_md
    assert "half-width" in printed and "±5 points" in printed
