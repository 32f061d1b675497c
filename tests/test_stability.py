"""Convergence judged on the share itself (issue 43): synthetic runs with known trajectories."""

import numpy as np
import pandas as pd
import pytest

from ablate import stats

LEVELS = {"plain": 0.22, "repeat": 0.20, "gcnn": 0.10}  # a 12-point total gain, share 16.7%


def trajectories(seeds: int, drift: float = 0.0, epochs: int = 30, noise: float = 0.004, rng_seed: int = 0):
    """Runs and history: every run flat at its arm's level plus a seed offset (sd 1 point) and
    independent noise per evaluation (sd `noise`: about 0.45 points epoch to epoch); with `drift`
    the repeat arm's error falls linearly from epoch 20 so the share rises by `drift` at epoch 30."""
    rng = np.random.default_rng(rng_seed)
    gain = LEVELS["plain"] - LEVELS["gcnn"]
    runs, history = [], []
    for arm, level in LEVELS.items():
        for seed in range(seeds):
            key, offset = f"{arm}-{seed}", rng.normal(0, 0.01)
            for epoch in range(1, epochs + 1):
                moved = drift * gain * max(0, epoch - 20) / 10 if arm == "repeat" else 0.0
                error = level + offset - moved + rng.normal(0, noise)
                evaluated = epoch % 2 == 0 or epoch == epochs
                history.append(
                    {"run_key": key, "arm": arm, "epoch": epoch, "test_error": error if evaluated else None}
                )
            runs.append({"run_key": key, "arm": arm, "budget": 20_000, "seed": seed, "test_error": error,
                         "status": "ok", "epochs": epochs, "group_order": 1 if arm == "plain" else 4,
                         "repeat_structure": "matched" if arm == "repeat" else ""})  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(history)


@pytest.mark.parametrize("seeds", [20, 50])
def test_a_flat_share_is_shown_stable(seeds):
    runs, history = trajectories(seeds)
    row = stats.share_stability(history, runs).iloc[0]
    assert row["verdict"] == "stable", row.to_dict()  # history first, then runs
    assert (row["start_epoch"], row["end_epoch"]) == (24, 30) and row["n"] == seeds
    assert -0.05 < row["lo"] <= row["change"] <= row["hi"] < 0.05
    fluctuation = stats.run_fluctuation(history, runs)
    assert 0.003 < fluctuation < 0.006  # about 0.45 points epoch to epoch: noise, not a verdict


@pytest.mark.parametrize("seeds", [20, 50])
def test_a_share_drifting_by_ten_points_over_the_window_is_not(seeds):
    runs, history = trajectories(seeds, drift=0.10)
    row = stats.share_stability(history, runs).iloc[0]
    assert row["verdict"] == "drift" and row["change"] == pytest.approx(
        0.06, abs=0.03
    )  # 24 -> 30 of a 10-point rise over 20 -> 30


def test_at_five_seeds_a_flat_share_is_too_few_seeds_not_drift():
    verdicts = [
        stats.share_stability(*trajectories(5, rng_seed=r)[::-1]).iloc[0]["verdict"] for r in range(20)
    ]
    assert verdicts.count("too few seeds") >= 15 and verdicts.count("drift") <= 2, verdicts


def test_the_change_interval_covers_a_flat_shares_zero_change_in_95_percent_of_studies():
    rows = [stats.share_stability(*trajectories(10, rng_seed=r)[::-1]).iloc[0] for r in range(200)]
    coverage = np.mean([row["lo"] <= 0 <= row["hi"] for row in rows])
    print("stability interval coverage", coverage)
    assert 0.90 <= coverage <= 0.99


def test_the_trajectory_gives_the_share_at_each_of_the_last_epochs():
    runs, history = trajectories(20, drift=0.10)
    trajectory = stats.share_trajectory(history, runs)  # the last 40% of the epochs: 18 to 30
    assert sorted(trajectory["epoch"]) == [18, 20, 22, 24, 26, 28, 30]
    trajectory = trajectory[trajectory["epoch"] >= 20]
    rising = trajectory.sort_values("epoch")["share"].to_numpy()
    assert (
        rising[-1] - rising[0] == pytest.approx(0.10, abs=0.03)
        and (trajectory["lo"] < trajectory["share"]).all()
    )
    assert stats.verdict(-0.01, 0.02) == "stable" and stats.verdict(0.01, 0.09) == "drift"
    assert stats.verdict(-0.07, 0.06) == "too few seeds" and stats.verdict(float("nan"), 0.1) == "unknown"
