"""The repetition share pooled over budgets."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import stats as sps

from ablate.models.arms import GROUPED_ARMS, Design
from ablate.stats.ratio import delta_interval, identifiable, quantile, ratio_moments, sample_var, welch_df
from ablate.stats.table import DECOMPOSED, GAINS, Cell, cells, prepare


def _summed_gain_test(groups, worse: str, better: str) -> tuple[float, float, float]:
    """(mean gain per budget, its standard error, one-sided p that it is > 0) for independent arms,
    t with Welch-Satterthwaite df over every (budget, arm) variance term."""
    gain = sum(float(c.y[worse].mean() - c.y[better].mean()) for c in groups)
    parts = [sample_var(c.y[a]) / len(c.y[a]) for c in groups for a in (worse, better)]
    dfs = [len(c.y[a]) - 1.0 for c in groups for a in (worse, better)]
    se = math.sqrt(sum(parts))
    p = float(sps.t.sf(gain / se, welch_df(parts, dfs))) if se > 0 else math.nan
    return gain / len(groups), se / len(groups), p


def _unpaired(groups: list[Cell], confidence: float) -> dict:
    """Ratio of the summed per-budget gains: it uses cell means and variances only, so it does
    not depend on how seeds are labelled across arms."""
    m = ratio_moments(groups, paired=False)
    row = {"method": "summed budget means, delta method (Welch-Satterthwaite df)", "df": m.df}
    for gain, (worse, better) in GAINS.items():
        row[f"gain_{gain}"], row[f"se_{gain}"], row[f"p_{gain}"] = _summed_gain_test(groups, worse, better)
    row["identifiable"] = identifiable(m, confidence)
    row["share_rep"] = m.share
    lo, hi = delta_interval(m.num, m.den, m.var_num, m.var_den, m.cov, quantile(m, confidence))
    row["share_rep_lo"], row["share_rep_hi"] = lo, hi
    row["n_clusters"] = math.nan
    return row


def _ols(ok: pd.DataFrame, by_budget_trend: bool, clustered: bool):
    """OLS y ~ repeat + equiv (+ C(budget)) (+ repeat:log_budget_c + equiv:log_budget_c);
    seed-clustered covariance when `clustered`, else HC3.

    The trend has both interactions: with the repetition one alone, a change of the equivariance
    gain with the budget loads onto it (the G-CNN arm has repeat = 1 too), and the test of "does
    the repetition gain change with the budget?" then rejects when only the equivariance gain
    does. Each gain gets its own slope instead of a trend on the share, a ratio whose slope is
    undefined where the total gain is small."""
    import statsmodels.formula.api as smf

    formula = "y ~ repeat + equiv"
    if ok["budget"].nunique() > 1:
        formula += " + C(budget)"
    if by_budget_trend:
        formula += " + repeat:log_budget_c + equiv:log_budget_c"
    model = smf.ols(formula, data=ok)
    if clustered:
        groups = pd.factorize(ok["seed"])[0]
        return model.fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True), int(groups.max()) + 1
    return model.fit(cov_type="HC3", use_t=True), math.nan


def _one_sided(fit, name: str) -> float:
    """p-value that the coefficient is negative (a positive gain), from the fit's t statistic."""
    return float(sps.t.sf(-fit.tvalues[name], fit.df_resid_inference or fit.df_resid))


def pooled(
    runs: pd.DataFrame,
    paired: bool = False,
    by_budget_trend: bool = False,
    confidence: float = 0.95,
    scale: str = "points",
) -> pd.DataFrame:
    """The repetition share pooled over budgets: one row per design (group order, repeat structure).

    Unpaired (arms independent): share = sum_b gain_rep,b / sum_b gain_total,b of the per-budget
    mean gains, delta-method interval with Welch-Satterthwaite df; gains are means per budget with
    one-sided Welch-type tests. Paired: OLS y ~ repeat + equiv + C(budget), standard errors
    clustered by seed, t with G - 1 df (repeat = 1 for repeat and gcnn, equiv = 1 for gcnn; gains
    are -beta). `identifiable`: total gain clearly non-zero (D^2 / Var D > q^2). by_budget_trend adds
    repeat:log(budget) and equiv:log(budget) (centred) to an OLS fit (HC3 when unpaired) and
    reports each gain's change per unit log budget with its two-sided p-value:
    `trend_rep_per_log_budget`, `trend_se`, `trend_p` (does the repetition gain change with the
    budget?) and `trend_eq_per_log_budget`, `trend_eq_se`, `trend_eq_p`.
    """
    prepared = prepare(runs, scale)
    designs: dict[Design, list[Cell]] = {}
    for cell in cells(prepared, paired):  # the same checks (and paired warnings) as decompose
        designs.setdefault(replace(cell.design, budget=None), []).append(cell)
    rows = []
    for design, groups in designs.items():
        mine = design.rows(prepared) & prepared["ok"] & prepared["budget"].isin([c.budget for c in groups])
        frame = prepared[mine & prepared["arm"].isin(DECOMPOSED)].copy()
        row = _design(frame, groups, paired, by_budget_trend, confidence)
        columns = {k: v for k, v in design.columns.items() if k != "budget"}
        rows.append({**columns, **row, "paired": paired, "scale": scale})
    return pd.DataFrame(rows)


def _design(
    ok: pd.DataFrame, groups: list[Cell], paired: bool, by_budget_trend: bool, confidence: float
) -> dict:
    """The pooled row of one design (group order, structure) from its ok runs and cells."""
    ok["repeat"] = ok["arm"].isin(GROUPED_ARMS).astype(float)  # the arms that repeat their weights
    ok["equiv"] = (ok["arm"] == "gcnn").astype(float)
    if by_budget_trend:
        if ok["budget"].nunique() < 2:
            raise ValueError("pooled: by_budget_trend needs at least 2 budgets, found 1")
        log_budget = np.log(ok["budget"].astype(float))
        ok["log_budget_c"] = log_budget - log_budget.mean()
    if paired:
        row = _paired(ok, by_budget_trend, confidence)
    else:
        row = _unpaired(groups, confidence)
    row.update({"n_runs": len(ok), "n_budgets": ok["budget"].nunique()})
    if not row["identifiable"]:
        row["share_rep_lo"] = row["share_rep_hi"] = math.nan
    if by_budget_trend:
        fit, _ = _ols(ok, by_budget_trend=True, clustered=paired)
        rep, eq = "repeat:log_budget_c", "equiv:log_budget_c"
        row.update(
            {
                "trend_rep_per_log_budget": -fit.params[rep],
                "trend_se": fit.bse[rep],
                "trend_p": float(fit.pvalues[rep]),
                "trend_eq_per_log_budget": -fit.params[eq],
                "trend_eq_se": fit.bse[eq],
                "trend_eq_p": float(fit.pvalues[eq]),
            }
        )
    return row


def _paired(ok: pd.DataFrame, by_budget_trend: bool, confidence: float) -> dict:
    """OLS with budget effects and seed-clustered errors, t(G - 1): the paired pooled row."""
    fit, n_clusters = _ols(ok, by_budget_trend, clustered=True)
    b_r, b_e = fit.params["repeat"], fit.params["equiv"]
    cov = fit.cov_params().loc[["repeat", "equiv"], ["repeat", "equiv"]].to_numpy()
    # share = b_r / (b_r + b_e): N = -b_r, D = -(b_r + b_e)
    var_num, var_den, cov_nd = cov[0, 0], cov.sum(), cov[0, 0] + cov[0, 1]
    q = float(sps.t.ppf((1 + confidence) / 2, n_clusters - 1))
    total_p = fit.t_test("repeat + equiv = 0")
    row = {
        "method": "OLS with budget effects, seed-clustered errors",
        "df": n_clusters - 1.0,
        "gain_rep": -b_r,
        "gain_eq": -b_e,
        "gain_total": -(b_r + b_e),
        "se_rep": fit.bse["repeat"],
        "se_eq": fit.bse["equiv"],
        "se_total": math.sqrt(var_den),
        "p_rep": _one_sided(fit, "repeat"),
        "p_eq": _one_sided(fit, "equiv"),
        "p_total": float(sps.t.sf(-float(np.asarray(total_p.tvalue).ravel()[0]), n_clusters - 1)),
        "identifiable": bool(var_den > 0 and (b_r + b_e) ** 2 > q**2 * var_den),
        "share_rep": b_r / (b_r + b_e),
        "n_clusters": n_clusters,
    }
    row["share_rep_lo"], row["share_rep_hi"] = delta_interval(-b_r, -(b_r + b_e), var_num, var_den, cov_nd, q)
    return row
