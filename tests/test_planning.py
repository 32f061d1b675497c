"""Seeds planned to a precision (issue 31, part 4): the interval of seeds_needed, the two-stage
plan's coverage and reach at bridge step B's spreads, and `python -m ablate.run --precision`."""

import numpy as np
import pandas as pd
import pytest

from ablate import stats
from ablate.errors import StudyError
from ablate.run import main
from ablate.stats.planning import _final_half_width, pilot_estimate
from ablate.stats.ratio import seeds_for_half_width
from ablate.study.schema import load_study

# Bridge step B's matched control, points: per-arm mean and sd of its first 20 seeds' final
# test errors (results/bridge/bridge-b/runs.csv), the spreads the issue asks the design for.
B_MEANS = {"plain": 22.41, "repeat": 21.15, "gcnn": 11.06}
B_SDS = {"plain": 2.96, "repeat": 2.67, "gcnn": 2.22}


def runs_from(rng, n: int, means=B_MEANS, sds=B_SDS, budget=20_000) -> pd.DataFrame:
    """A runs table of n seeds per arm, errors ~ Normal(mean, sd) in points, stored as fractions."""
    rows = [
        {"arm": arm, "budget": budget, "seed": s, "test_error": e / 100, "status": "ok"}
        for arm in means
        for s, e in enumerate(rng.normal(means[arm], sds[arm], n))
    ]
    return pd.DataFrame(rows)


def test_seeds_needed_refuses_a_pilot_under_five_seeds():
    with pytest.raises(stats.PilotTooSmall) as caught:
        stats.seeds_needed(runs_from(np.random.default_rng(0), 4))
    message = str(caught.value)
    assert "\n" not in message
    assert "budget 20,000" in message and "has 4 ok seeds" in message and "at least 5" in message
    assert len(stats.seeds_needed(runs_from(np.random.default_rng(0), 5))) == 1


def test_seeds_interval_covers_what_the_true_spread_asks():
    """The interval is from the spreads' uncertainty: it should hold the seeds that the true
    spreads ask (at the pilot's own share and gain) in about 95% of 10-seed pilots."""
    rng = np.random.default_rng(31)
    hits, trials = 0, 300
    for _ in range(trials):
        y = {arm: rng.normal(B_MEANS[arm], B_SDS[arm], 10) for arm in B_MEANS}
        est = pilot_estimate(y)
        low = est.seeds(0.10, 0.95, est.variance_factor(0.975))
        high = est.seeds(0.10, 0.95, est.variance_factor(0.025))
        assert low <= est.seeds(0.10, 0.95) <= high
        hits += low <= seeds_for_half_width(B_SDS, est.share, est.den, 0.10, 0.95) <= high
    print("seeds interval coverage", hits / trials)
    assert 0.90 <= hits / trials <= 0.99


def test_seeds_needed_reports_the_pilot_estimates_numbers():
    runs = runs_from(np.random.default_rng(2), 12)
    row = stats.seeds_needed(runs).iloc[0]
    y = {arm: 100 * runs.loc[runs["arm"] == arm, "test_error"].to_numpy() for arm in B_MEANS}
    est = pilot_estimate(y)
    assert row["seeds_needed"] == est.seeds(0.10, 0.95)
    assert row["seeds_low"] == est.seeds(0.10, 0.95, est.variance_factor(0.975))
    assert row["seeds_high"] == est.seeds(0.10, 0.95, est.variance_factor(0.025))
    assert row["seeds_low"] < row["seeds_needed"] < row["seeds_high"]


def test_the_simulated_final_interval_is_the_decompositions():
    runs = runs_from(np.random.default_rng(4), 15)
    row = stats.decompose(runs, n_boot=0, n_perm=0).iloc[0]
    y = {arm: 100 * runs.loc[runs["arm"] == arm, "test_error"].to_numpy() for arm in B_MEANS}
    share, half = _final_half_width(y, 0.95)
    assert share == pytest.approx(row["share_rep"], abs=1e-12)
    assert half == pytest.approx((row["share_rep_hi_delta"] - row["share_rep_lo_delta"]) / 2, abs=1e-12)


def test_two_stage_plan_covers_and_reaches_the_half_width_at_bridge_b_spreads():
    """2,000 simulated studies at step B's spreads, +-10 points, a 10-seed pilot, at most 100
    seeds: the final interval covers the true share >= 93% and is narrow enough in >= 80%."""
    result = stats.simulate_two_stage(B_MEANS, B_SDS, 0.10, pilot=10, max_seeds=100, studies=2000, seed=0)
    print("two-stage", result)
    assert result["coverage"] >= 0.93
    assert result["reached"] >= 0.80
    naive = stats.simulate_two_stage(
        B_MEANS, B_SDS, 0.10, pilot=10, max_seeds=100, studies=2000, seed=0, assurance=0.5
    )
    print("planned at the point estimate", naive)
    assert naive["reached"] < 0.6  # why the plan takes the spread's upper bound


def test_the_plan_reads_the_pilot_seeds_only():
    rng = np.random.default_rng(5)
    runs = runs_from(rng, 30)
    plan = stats.plan_seeds(runs, 0.10, pilot=10, max_seeds=100)
    again = stats.plan_seeds(runs[runs["seed"] < 10], 0.10, pilot=10, max_seeds=100)
    pd.testing.assert_frame_equal(plan, again)
    (row,) = plan.itertuples()
    assert 10 <= row.seeds <= 100 and row.n_pilot == 10
    capped = stats.plan_seeds(runs, 0.01, pilot=10, max_seeds=40)
    assert capped["asked"].iloc[0] > 40 and capped["seeds"].iloc[0] == 40
    with pytest.raises(stats.PilotTooSmall, match="has 4 ok seeds"):
        stats.plan_seeds(runs, 0.10, pilot=4, max_seeds=100)


PRECISION = """
[run]
device = "cpu"
results = "{results}"
threads = 1
precision = 30
pilot_seeds = 5
max_seeds = 7
round_seeds = 1
"""


def precision_study(tiny_study, tmp_path):
    path = tiny_study(name="prec", seeds="[0]", epochs=1)
    head = path.read_text().split("[run]")[0]
    path.write_text(head + PRECISION.format(results=tmp_path / "results"))
    return path


def test_a_precision_run_trains_the_pilot_then_its_plan_in_rounds_and_resumes(tiny_study, tmp_path, capsys):
    path = precision_study(tiny_study, tmp_path)
    assert main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "plan budget 5,000, C4: the 5-seed pilot" in out and "round: seeds 5-5 (3 runs)" in out
    runs = pd.read_csv(tmp_path / "results" / "prec" / "runs.csv")
    planned = int(out.split("training seeds 0-")[1].split()[0]) + 1
    assert 5 <= planned <= 7
    assert sorted(runs.groupby("arm")["seed"].apply(sorted).map(tuple).unique()) == [tuple(range(planned))]
    assert not runs["run_key"].duplicated().any()
    assert "reached budget 5,000, C4:" in out
    assert main([str(path)]) == 0  # resumes: the same plan, nothing trained again
    again = capsys.readouterr().out
    assert "training 0 on cpu" in again and "training 3" not in again and "training 15" not in again
    assert len(pd.read_csv(tmp_path / "results" / "prec" / "runs.csv")) == len(runs)
    assert main([str(path), "--dry-run"]) == 0  # the dry run shows the plan once the pilot finished
    assert f"training seeds 0-{planned - 1}" in capsys.readouterr().out


def test_seeds_narrow_a_precision_study_to_them_and_a_small_pilot_is_one_line(tiny_study, tmp_path, capsys):
    path = precision_study(tiny_study, tmp_path)
    assert main([str(path), "--seeds", "3", "--arms", "plain"]) == 0  # exactly these: no pilot, no plan
    out = capsys.readouterr().out
    assert "plan" not in out and "training 1 on cpu" in out
    saved = load_study(tmp_path / "results" / "prec" / "study.toml")  # the study as its file says
    assert (
        saved.train.seeds == [0]
        and saved.run.precision == 30
        and saved.models.arms == load_study(path).models.arms
    )
    path.write_text(path.read_text().replace("pilot_seeds = 5", "pilot_seeds = 4"))
    with pytest.raises(StudyError, match=r"run.pilot_seeds: expected .*5.*found 4"):
        load_study(path)
    path.write_text(path.read_text().replace("pilot_seeds = 4", "pilot_seeds = 8"))
    with pytest.raises(StudyError, match=r"max_seeds: expected at least pilot_seeds \(8\), found 7"):
        load_study(path)
