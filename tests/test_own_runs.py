"""Your own runs, ablate's statistics and figures (issue 40): a share and its intervals from three
arrays of per-seed errors, plots of plain tables, and the report of a runs table your own loop wrote."""

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ablate import stats
from ablate.report.__main__ import main as report_main
from ablate.report.plots import plot_gains, plot_shares

rng = np.random.default_rng(7)
PLAIN, REPEAT, GCNN = rng.normal(0.13, 0.012, 8), rng.normal(0.115, 0.015, 6), rng.normal(0.04, 0.006, 7)


def independent_intervals(p, r, g, confidence=0.95):
    """The share's delta-method and Fieller intervals from the arms' means and variances alone,
    written out here (not the package's code): N = p - r, D = p - g with the plain arm in both."""
    n = {k: len(x) for k, x in (("p", p), ("r", r), ("g", g))}
    v = {"p": np.var(p, ddof=1) / n["p"], "r": np.var(r, ddof=1) / n["r"], "g": np.var(g, ddof=1) / n["g"]}
    num, den = p.mean() - r.mean(), p.mean() - g.mean()
    share = num / den
    var_num, var_den, cov = v["p"] + v["r"], v["p"] + v["g"], v["p"]
    parts = [(1 - share) ** 2 * v["p"], v["r"], share**2 * v["g"]]  # N - sD's terms, Welch-Satterthwaite
    df = sum(parts) ** 2 / sum(part**2 / (n[k] - 1) for part, k in zip(parts, "prg"))
    q = sps.t.ppf(1 - (1 - confidence) / 2, df)
    half = q * math.sqrt(var_num - 2 * share * cov + share**2 * var_den) / abs(den)
    # Fieller: {t: (N - tD)^2 <= q^2 Var(N - tD)}, a quadratic in t
    a, b, c = den**2 - q**2 * var_den, -2 * (num * den - q**2 * cov), num**2 - q**2 * var_num
    roots = sorted(np.roots([a, b, c]).real)
    return share, (share - half, share + half), tuple(roots)


def test_share_interval_of_three_arrays_is_the_delta_and_fieller_interval_written_out():
    share = stats.share_interval(PLAIN, REPEAT, GCNN)
    expected, delta, fieller = independent_intervals(PLAIN, REPEAT, GCNN)
    assert share["identifiable"] and share["share_rep"] == pytest.approx(expected, rel=1e-12)
    assert (share["share_rep_lo_delta"], share["share_rep_hi_delta"]) == pytest.approx(delta, rel=1e-9)
    assert (share["share_rep_lo_fieller"], share["share_rep_hi_fieller"]) == pytest.approx(fieller, rel=1e-9)
    assert share["fieller_kind"] == "bounded" and (share["n_plain"], share["n_repeat"], share["n_gcnn"]) == (
        8,
        6,
        7,
    )
    assert share["gain_total"] == pytest.approx(PLAIN.mean() - GCNN.mean())
    assert share["gain_rep"] + share["gain_eq"] == pytest.approx(share["gain_total"])


def test_share_interval_gives_decomposes_numbers_on_the_equivalent_table():
    rows = [
        {"arm": arm, "budget": 20_000, "seed": s, "test_error": e, "status": "ok", "group_order": 4}
        for arm, errors in (("plain", PLAIN), ("repeat", REPEAT), ("gcnn", GCNN))
        for s, e in enumerate(errors)
    ]
    row = stats.decompose(pd.DataFrame(rows), n_boot=0, n_perm=0).iloc[0]
    share = stats.share_interval(list(PLAIN), tuple(REPEAT), GCNN)  # any sequence of numbers
    for key in ("share_rep", "share_rep_lo_delta", "share_rep_hi_delta", "share_rep_lo_fieller",
                "share_rep_hi_fieller", "share_df", "gain_total", "gain_rep", "gain_eq"):  # fmt: skip
        assert share[key] == pytest.approx(row[key], rel=1e-12), key
    paired = stats.share_interval(PLAIN[:6], REPEAT, GCNN[:6], paired=True)
    assert paired["share_df"] == 5  # n - 1 pairs


def test_share_interval_refuses_what_cannot_be_a_sample_and_blanks_an_unidentifiable_share():
    with pytest.raises(ValueError, match="share_interval: repeat: expected at least 2 finite test errors"):
        stats.share_interval(PLAIN, [0.1], GCNN)
    with pytest.raises(ValueError, match="paired arms need equal lengths"):
        stats.share_interval(PLAIN, REPEAT, GCNN, paired=True)
    tie = stats.share_interval(PLAIN, REPEAT, PLAIN[::-1] - 1e-4)  # a gain far inside the noise
    assert not tie["identifiable"] and math.isnan(tie["share_rep"]) and np.isfinite(tie["share_rep_point"])


def test_the_plots_draw_plain_tables_on_a_given_axis_and_return_it():
    shares = [stats.share_interval(PLAIN, REPEAT, GCNN), stats.share_interval(PLAIN, REPEAT, PLAIN[::-1])]
    fig, (left, right) = plt.subplots(1, 2)
    assert plot_gains(shares, left, labels=["mine", "tied"]) is left
    assert plot_shares(shares, right, labels=["mine", "tied"]) is right
    assert [t.get_text() for t in right.get_yticklabels()] == ["mine", "tied"]
    assert "not identifiable" in [t.get_text() for t in right.texts]  # the tied row is labelled, not drawn
    alone = plot_shares(pd.DataFrame(shares[:1]))  # no axis: its own figure
    assert alone.figure is not fig and len(alone.lines) > 0
    plt.close("all")


def test_the_report_of_a_minimal_runs_table_builds_and_a_missing_column_is_one_line(tmp_path, capsys):
    rows = [
        {"arm": arm, "seed": s, "test_error": float(e)}
        for arm, errors in (("plain", PLAIN), ("repeat", REPEAT), ("gcnn", GCNN))
        for s, e in enumerate(errors)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    out = tmp_path / "figs"
    assert report_main(["--runs", str(tmp_path / "mine.csv"), "--out", str(out), "--format", "png"]) == 0
    assert (out / "mine" / "gain_decomposition.png").exists() and not (
        out / "mine" / "learning_curves.png"
    ).exists()
    table = (out / "mine" / "table.md").read_text()
    share = stats.share_interval(PLAIN, REPEAT, GCNN)
    assert f"{100 * share['share_rep']:.1f}" in table  # the share of the three arrays
    pd.DataFrame(rows).drop(columns="test_error").to_csv(tmp_path / "bad.csv", index=False)
    capsys.readouterr()
    assert report_main(["--runs", str(tmp_path / "bad.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {tmp_path / 'bad.csv'}: expected the columns arm, seed, test_error (docs/stats.md, "
        "'Your own runs'), missing test_error"
    ]
    pd.DataFrame(rows).assign(test_error=lambda d: 100 * d["test_error"]).to_csv(
        tmp_path / "pct.csv", index=False
    )
    assert report_main(["--runs", str(tmp_path / "pct.csv"), "--out", str(out)]) == 2
    assert (
        "row 1: test_error: expected a fraction in [0, 1] (percent / 100), found" in capsys.readouterr().err
    )
