"""Statistics: unit checks and validation by simulation (known means and spread)."""

import gc
import math

import numpy as np
import pandas as pd
import pytest

from ablate.report.text import format_summary, headline_sentence
from ablate.stats import (
    arm_summary,
    decompose,
    delta_interval,
    fieller_interval,
    largest_share,
    pooled,
)

PAPER = {"plain": 0.0503, "repeat": 0.0393, "gcnn": 0.0228}  # true share 0.40
TRUE_SHARE = (PAPER["plain"] - PAPER["repeat"]) / (PAPER["plain"] - PAPER["gcnn"])


def simulate(rng, means, sd=0.002, n=10, budgets=(10_000,), shared_seed_sd=0.0):
    """A runs table: n seeds per arm and budget, errors ~ Normal(mean, sd) (+ a per-seed effect)."""
    rows = []
    for budget in budgets:
        seed_effect = rng.normal(0, shared_seed_sd, n)
        for arm, mean in means.items():
            errors = rng.normal(mean, sd, n) + seed_effect
            rows += [
                {"arm": arm, "budget": budget, "seed": s, "test_error": e, "status": "ok"}
                for s, e in enumerate(errors)
            ]
    return pd.DataFrame(rows)


@pytest.fixture
def frozen_gc():
    """statsmodels' Holm correction calls gc.collect(); keep the test process's heap out of it."""
    gc.freeze()
    yield
    gc.unfreeze()


def test_share_coverage_by_simulation(frozen_gc):
    # 400 independent simulated studies, each as its own "budget" of one table (intervals are
    # per budget; the Holm family only matters for identifiability, which is certain here).
    rng = np.random.default_rng(1)
    runs = simulate(rng, PAPER, budgets=range(400))
    table = decompose(runs, n_boot=500, n_perm=0, seed=3)
    assert table["identifiable"].all()
    coverage = {
        m: float(
            ((table[f"share_rep_lo_{m}"] <= TRUE_SHARE) & (TRUE_SHARE <= table[f"share_rep_hi_{m}"])).mean()
        )
        for m in ("delta", "fieller", "boot")
    }
    print("coverage", coverage)
    assert 0.91 <= coverage["delta"] <= 0.98
    assert 0.91 <= coverage["fieller"] <= 0.98
    assert coverage["boot"] >= 0.88
    assert (table["fieller_kind"] == "bounded").all() and table["boot_method"].isin(
        ["BCa", "percentile"]
    ).all()
    assert abs(table["share_rep"].mean() - TRUE_SHARE) < 0.01


def test_no_true_gain_is_flagged_not_identifiable(frozen_gc):
    rng = np.random.default_rng(2)
    flat = {"plain": 0.04, "repeat": 0.04, "gcnn": 0.04}
    flagged = [
        not decompose(simulate(rng, flat, budgets=(1, 2)), n_boot=50, n_perm=0)["identifiable"].any()
        for _ in range(400)
    ]
    print("not identifiable", np.mean(flagged))
    assert np.mean(flagged) >= 0.90


def test_holm_p_rep_false_positive_rate(frozen_gc):
    rng = np.random.default_rng(3)
    no_rep = {"plain": 0.0503, "repeat": 0.0503, "gcnn": 0.0228}
    hits = [decompose(simulate(rng, no_rep), n_boot=50, n_perm=0)["p_rep"].iloc[0] < 0.05 for _ in range(400)]
    rate = float(np.mean(hits))
    print("false positives", rate)
    assert rate <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / 400)


def test_pooled_share_coverage(frozen_gc):
    rng = np.random.default_rng(4)
    hits = []
    for _ in range(200):
        row = pooled(simulate(rng, PAPER, budgets=(10_000, 50_000))).iloc[0]
        hits.append(row["share_rep_lo"] <= TRUE_SHARE <= row["share_rep_hi"])
    print("pooled coverage", np.mean(hits))
    assert 0.90 <= np.mean(hits) <= 0.99


def test_decompose_values_on_a_hand_table():
    runs = simulate(np.random.default_rng(5), PAPER, budgets=(100, 200))
    runs.loc[0, "status"] = "diverged"
    table = decompose(runs, n_boot=200, n_perm=999)
    first = runs[(runs["budget"] == 100) & (runs["status"] == "ok")]
    means = first.groupby("arm")["test_error"].mean()
    row = table.iloc[0]
    assert row["n_plain"] == 9 and row["dropped_plain"] == 1 and row["n_gcnn"] == 10
    assert row["err_plain"] == pytest.approx(means["plain"])
    assert row["se_plain"] == pytest.approx(first.loc[first["arm"] == "plain", "test_error"].std(ddof=1) / 3)
    assert row["gain_total"] == pytest.approx(means["plain"] - means["gcnn"])
    assert row["gain_rep"] + row["gain_eq"] == pytest.approx(row["gain_total"])
    assert row["share_rep"] == pytest.approx(row["gain_rep"] / row["gain_total"])
    assert row["rel_gain"] == pytest.approx(row["gain_total"] / means["plain"])
    # Holm over 2 budgets x 3 gains: adjusted >= raw, and the smallest is multiplied by 6
    raw = table[["p_total_raw", "p_rep_raw", "p_eq_raw"]].to_numpy().ravel()
    adj = table[["p_total", "p_rep", "p_eq"]].to_numpy().ravel()
    assert (adj >= raw - 1e-15).all() and adj[np.argmin(raw)] == pytest.approx(min(1.0, 6 * raw.min()))
    assert (table["p_total_perm"] <= 0.01).all()
    summary = arm_summary(runs)
    assert len(summary) == 6 and summary.set_index(["budget", "arm"]).loc[(100, "plain"), "dropped"] == 1


def test_paired_design_uses_seed_differences():
    rng = np.random.default_rng(6)
    runs = simulate(rng, PAPER, sd=0.0005, shared_seed_sd=0.004)  # seeds dominate the spread
    unpaired = decompose(runs, n_boot=200, n_perm=0).iloc[0]
    paired = decompose(runs, paired=True, n_boot=200, n_perm=999).iloc[0]

    def width(r):
        return r["share_rep_hi_delta"] - r["share_rep_lo_delta"]

    assert width(paired) < width(unpaired) / 2
    assert paired["p_rep_raw"] < unpaired["p_rep_raw"]


def test_fieller_sets_when_the_denominator_is_unclear():
    lo, hi, kind = fieller_interval(0.4, 2.0, 0.01, 0.04, 0.0, 1.96)
    assert kind == "bounded" and lo < 0.2 < hi
    d_lo, d_hi = delta_interval(0.4, 2.0, 0.01, 0.04, 0.0, 1.96)
    assert lo == pytest.approx(d_lo, abs=0.05) and hi == pytest.approx(d_hi, abs=0.05)
    lo, hi, kind = fieller_interval(1.0, 0.1, 0.01, 1.0, 0.0, 1.96)
    assert kind == "two rays" and lo < hi
    assert fieller_interval(0.0, 0.1, 1.0, 1.0, 0.0, 1.96)[2] == "unbounded"


def test_clear_errors_for_bad_tables():
    runs = simulate(np.random.default_rng(7), PAPER, n=3)
    with pytest.raises(ValueError, match="budget 10,000, arm repeat: missing"):
        decompose(runs[runs["arm"] != "repeat"])
    one = runs.drop(runs[(runs["arm"] == "gcnn")].index[1:])
    with pytest.raises(ValueError, match="budget 10,000, arm gcnn: has 1 ok seed"):
        decompose(one)
    odd = runs.copy()
    odd.loc[0, "arm"] = "huge"
    with pytest.raises(ValueError, match="budget 10000, arm 'huge': unknown arm"):
        decompose(odd)
    unshared = runs.copy()
    unshared.loc[unshared["arm"] == "gcnn", "seed"] += 100
    with pytest.raises(ValueError, match="budget 10,000, arms plain/repeat/gcnn: paired analysis needs"):
        decompose(unshared, paired=True)
    with pytest.raises(ValueError, match="missing test_error"):
        decompose(runs.drop(columns="test_error"))


def test_headline_and_summary_text():
    runs = simulate(np.random.default_rng(8), PAPER, budgets=(25_000, 100_000))
    table = decompose(runs, n_boot=300, n_perm=0)
    best = largest_share(table)
    assert best["share_rep"] == table["share_rep"].max()
    sentence = headline_sentence(table, 4, "Rot-MNIST")
    assert sentence.startswith(f"Up to {100 * best['share_rep']:.0f}% (95% CI ")
    assert (
        f"budget {int(best['budget']):,}, the largest of 2 identifiable budget shares, 10 seeds per arm"
        in sentence
    )
    flat = decompose(simulate(np.random.default_rng(9), {a: 0.04 for a in PAPER}), n_boot=50, n_perm=0)
    assert not flat["identifiable"].any()  # equal arms, this seed: no significant total gain
    assert largest_share(flat) is None and "not identifiable" in headline_sentence(flat)
    assert np.isnan(flat["share_rep"]).all() and np.isfinite(flat["share_rep_point"]).all()
    text = format_summary(table, pooled(runs, by_budget_trend=True))
    assert "pooled over 2 budgets" in text and "per unit log budget" in text and "Fieller" in text


def test_pooled_trend_detects_a_changing_repetition_gain():
    rng = np.random.default_rng(10)
    parts = []
    for budget, rep in ((10_000, 0.050), (100_000, 0.040), (1_000_000, 0.030)):
        parts.append(simulate(rng, {"plain": 0.05, "repeat": rep, "gcnn": 0.02}, budgets=(budget,)))
    row = pooled(pd.concat(parts), by_budget_trend=True).iloc[0]
    assert row["trend_p"] < 0.01 and row["trend_rep_per_log_budget"] > 0
