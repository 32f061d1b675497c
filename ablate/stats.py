"""All statistics of the package, as pure functions over a runs table (no I/O, no plotting).

Errors are fractions (test_error in [0, 1]). For each budget the G-CNN's gain over the plain CNN
splits as

    gain_total = e_plain - e_gcnn = (e_plain - e_repeat) + (e_repeat - e_gcnn)
                                  =       gain_rep       +       gain_eq

and the repetition share is s = gain_rep / gain_total (equivariance share 1 - s).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from ablate.models.arms import ARMS

GAINS = {"total": ("plain", "gcnn"), "rep": ("plain", "repeat"), "eq": ("repeat", "gcnn")}
REQUIRED = ("arm", "budget", "seed", "test_error", "status")  # what these functions read of a runs table


# --------------------------------------------------------------------------------------------
# Input checks and per-arm summaries
# --------------------------------------------------------------------------------------------


def _is_ok(runs: pd.DataFrame) -> pd.Series:
    return (runs["status"] == "ok") & np.isfinite(runs["test_error"].astype(float))


def _grouped(runs: pd.DataFrame) -> tuple[dict[tuple, np.ndarray], dict[tuple, int]]:
    """({(budget, arm): ok test errors}, {(budget, arm): runs dropped as not ok})."""
    ok = _is_ok(runs)
    errors = {
        key: group.to_numpy(dtype=float)
        for key, group in runs.loc[ok].groupby(["budget", "arm"], sort=True)["test_error"]
    }
    dropped = runs.loc[~ok].groupby(["budget", "arm"]).size().to_dict()
    return errors, dropped


def _checked(runs: pd.DataFrame, min_seeds: int = 2) -> tuple[dict[tuple, np.ndarray], dict[tuple, int]]:
    """_grouped(runs), after ValueErrors naming the budget and arm of any problem."""
    missing = [c for c in REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"runs: expected columns {', '.join(REQUIRED)}, missing {', '.join(missing)}")
    unknown = runs.loc[~runs["arm"].isin(ARMS)]
    if len(unknown):
        row = unknown.iloc[0]
        raise ValueError(
            f"budget {row['budget']}, arm {row['arm']!r}: unknown arm (expected one of {', '.join(ARMS)})"
        )
    errors, dropped = _grouped(runs)
    for budget in sorted(runs["budget"].unique()):
        for arm in ARMS:
            n = len(errors.get((budget, arm), ()))
            if n < min_seeds:
                what = "missing" if n == 0 else f"has {n} ok seed"
                raise ValueError(
                    f"budget {budget}, arm {arm}: {what}; expected at least {min_seeds} ok seeds per arm"
                )
    return errors, dropped


def _arm_stats(x: np.ndarray, confidence: float) -> dict[str, float]:
    """n, mean, sd, se and t-interval (lo, hi) of one arm's errors; NaN spread for n = 1."""
    n, mean = len(x), float(x.mean())
    sd = float(x.std(ddof=1)) if n > 1 else math.nan
    se = sd / math.sqrt(n) if n > 1 else math.nan
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * se if n > 1 else math.nan
    return {"n": n, "mean": mean, "sd": sd, "se": se, "lo": mean - half, "hi": mean + half}


def arm_summary(runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """One row per budget x arm: n, mean, sd, se and a t-interval of the test error (ok runs only),
    and how many runs were dropped as not ok. Arms with one ok seed get NaN spread; none: absent.
    """
    errors, dropped = _grouped(runs)
    rows = [
        {"budget": budget, "arm": arm, **_arm_stats(x, confidence), "dropped": dropped.get((budget, arm), 0)}
        for (budget, arm), x in errors.items()
    ]
    return pd.DataFrame(rows, columns=["budget", "arm", "n", "mean", "sd", "se", "lo", "hi", "dropped"])


# --------------------------------------------------------------------------------------------
# Intervals for a ratio of mean differences
# --------------------------------------------------------------------------------------------


def _moments(samples: dict[str, np.ndarray], paired: bool) -> tuple[float, float, float, float, float, float]:
    """(N, D, var N, var D, cov(N, D), df) for N = gain_rep and D = gain_total as mean differences.

    df: degrees of freedom for the t quantile of N - s D at s = N / D (n - 1 when paired,
    Welch-Satterthwaite over the three arms otherwise).
    """
    p, r, g = samples["plain"], samples["repeat"], samples["gcnn"]
    if paired:
        num, den = p - r, p - g
        n = len(num)
        cov = np.cov(num, den, ddof=1)
        return float(num.mean()), float(den.mean()), cov[0, 0] / n, cov[1, 1] / n, cov[0, 1] / n, n - 1.0
    v = {k: float(np.var(x, ddof=1) / len(x)) for k, x in samples.items()}
    num, den = float(p.mean() - r.mean()), float(p.mean() - g.mean())
    share = num / den if den else 0.0
    # N - s D = (1 - s) mean_plain - mean_repeat + s mean_gcnn
    parts = {"plain": (1 - share) ** 2 * v["plain"], "repeat": v["repeat"], "gcnn": share**2 * v["gcnn"]}
    denom = sum(part**2 / (len(samples[k]) - 1) for k, part in parts.items())
    df = sum(parts.values()) ** 2 / denom if denom > 0 else math.inf
    # e_plain sits in numerator and denominator: Cov(N, D) = Var(mean e_plain)
    return num, den, v["plain"] + v["repeat"], v["plain"] + v["gcnn"], v["plain"], df


def delta_interval(
    num: float, den: float, var_num: float, var_den: float, cov: float, quantile: float
) -> tuple[float, float]:
    """Delta-method interval of num / den (first-order Taylor, covariance included)."""
    share = num / den
    var = (var_num - 2 * share * cov + share**2 * var_den) / den**2
    half = quantile * math.sqrt(max(var, 0.0))
    return share - half, share + half


def fieller_interval(
    num: float, den: float, var_num: float, var_den: float, cov: float, quantile: float
) -> tuple[float, float, str]:
    """Fieller's confidence set for num / den: {t : (num - t den)^2 <= q^2 Var(num - t den)}.

    Returns (lo, hi, kind): kind "bounded" is [lo, hi]; "two rays" is (-inf, lo] U [hi, inf),
    which happens when the denominator is not clearly non-zero; "unbounded" is the whole line.
    """
    q2 = quantile**2
    a = den**2 - q2 * var_den
    b = -2 * (num * den - q2 * cov)
    c = num**2 - q2 * var_num
    disc = b * b - 4 * a * c
    if a > 0:
        root = math.sqrt(max(disc, 0.0))
        return (-b - root) / (2 * a), (-b + root) / (2 * a), "bounded"
    if disc > 0 and a < 0:
        lo, hi = sorted(((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a)))
        return lo, hi, "two rays"
    return -math.inf, math.inf, "unbounded"


def _share_statistic(plain, repeat, gcnn, axis=-1):
    p = np.mean(plain, axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (p - np.mean(repeat, axis=axis)) / (p - np.mean(gcnn, axis=axis))


def bootstrap_interval(
    samples: dict[str, np.ndarray], paired: bool, confidence: float, n_boot: int, seed: int
) -> tuple[float, float, str]:
    """Bootstrap interval of the share, resampling seeds within each arm (jointly when paired).

    BCa, falling back to the percentile method when BCa is degenerate; returns (lo, hi, method).
    """
    if n_boot <= 0:
        return math.nan, math.nan, "skipped"
    data = (samples["plain"], samples["repeat"], samples["gcnn"])
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a degenerate BCa warns; treat that as failure
            try:
                result = sps.bootstrap(
                    data,
                    _share_statistic,
                    n_resamples=n_boot,
                    paired=paired,
                    confidence_level=confidence,
                    method=method,
                    vectorized=True,
                    random_state=seed,
                )
            except (Warning, ValueError, FloatingPointError):
                continue
        lo, hi = result.confidence_interval
        if np.isfinite(lo) and np.isfinite(hi):
            return float(lo), float(hi), method
    return math.nan, math.nan, "failed"


# --------------------------------------------------------------------------------------------
# Tests of the gains
# --------------------------------------------------------------------------------------------


def _gain_tests(
    worse: np.ndarray, better: np.ndarray, paired: bool, n_perm: int, seed: int
) -> tuple[float, float]:
    """One-sided p-values that mean(worse) > mean(better): (t-test, permutation test)."""
    if paired:
        t_p = sps.ttest_rel(worse, better, alternative="greater").pvalue
    else:
        t_p = sps.ttest_ind(worse, better, equal_var=False, alternative="greater").pvalue
    if n_perm <= 0:
        return float(t_p), math.nan

    def mean_diff(a, b, axis=-1):
        return np.mean(a, axis=axis) - np.mean(b, axis=axis)

    perm = sps.permutation_test(
        (worse, better),
        mean_diff,
        vectorized=True,
        n_resamples=n_perm,
        permutation_type="samples" if paired else "independent",
        alternative="greater",
        random_state=seed,
    )
    return float(t_p), float(perm.pvalue)


def _paired_samples(ok: pd.DataFrame, budget) -> dict[str, np.ndarray]:
    table = ok.loc[ok["budget"] == budget].pivot_table(index="seed", columns="arm", values="test_error")
    complete = table.dropna()
    if len(complete) < 2:
        raise ValueError(
            f"budget {budget}, arms plain/repeat/gcnn: paired analysis needs at least 2 seeds shared "
            f"by all arms, found {len(complete)}"
        )
    return {arm: complete[arm].to_numpy() for arm in ARMS}


# --------------------------------------------------------------------------------------------
# Per-budget decomposition
# --------------------------------------------------------------------------------------------


def decompose(
    runs: pd.DataFrame,
    paired: bool = False,
    confidence: float = 0.95,
    n_boot: int = 2000,
    n_perm: int = 5000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per budget: arm errors, gains, one-sided tests (Holm-adjusted) and share intervals.

    runs: columns arm, budget, seed, test_error (fraction), status; only status "ok" runs are used
    (`dropped_<arm>` counts the others). paired=True pairs arms by seed (paired t and sign-flip
    permutation tests, joint bootstrap). Adjusted p-values (`p_total`, `p_rep`, `p_eq`) are Holm
    over all budgets and the three gains; `identifiable` is p_total < 1 - confidence. Share
    intervals: delta method and Fieller (t quantile, Welch-Satterthwaite degrees of freedom) and
    bootstrap (`boot_method`).
    n_perm = 0 skips the permutation tests, n_boot = 0 the bootstrap.
    """
    errors, dropped = _checked(runs)
    ok = runs.loc[_is_ok(runs)] if paired else None
    alpha = 1 - confidence
    rows = []
    for index, budget in enumerate(sorted(runs["budget"].unique())):
        samples = _paired_samples(ok, budget) if paired else {arm: errors[(budget, arm)] for arm in ARMS}
        row: dict = {"budget": budget}
        for arm in ARMS:
            s = _arm_stats(errors[(budget, arm)], confidence)
            row.update(
                {
                    f"err_{arm}": s["mean"],
                    f"sd_{arm}": s["sd"],
                    f"se_{arm}": s["se"],
                    f"n_{arm}": s["n"],
                    f"err_{arm}_lo": s["lo"],
                    f"err_{arm}_hi": s["hi"],
                    f"dropped_{arm}": dropped.get((budget, arm), 0),
                }
            )
        means = {arm: float(samples[arm].mean()) for arm in ARMS}
        for gain, (worse, better) in GAINS.items():
            row[f"gain_{gain}"] = means[worse] - means[better]
            t_p, perm_p = _gain_tests(samples[worse], samples[better], paired, n_perm, seed + index)
            row[f"p_{gain}_raw"], row[f"p_{gain}_perm_raw"] = t_p, perm_p
        row["rel_gain"] = row["gain_total"] / means["plain"]
        num, den, var_num, var_den, cov, df = _moments(samples, paired)
        quantile = sps.t.ppf(1 - alpha / 2, df)
        row["share_rep"] = num / den if den != 0 else math.nan
        row["share_rep_lo_delta"], row["share_rep_hi_delta"] = (
            delta_interval(num, den, var_num, var_den, cov, quantile) if den != 0 else (math.nan, math.nan)
        )
        lo, hi, kind = fieller_interval(num, den, var_num, var_den, cov, quantile)
        row["share_rep_lo_fieller"], row["share_rep_hi_fieller"], row["fieller_kind"] = lo, hi, kind
        lo, hi, method = bootstrap_interval(samples, paired, confidence, n_boot, seed + index)
        row["share_rep_lo_boot"], row["share_rep_hi_boot"], row["boot_method"] = lo, hi, method
        rows.append(row)
    for suffix in ("", "_perm"):
        raw = np.array([[row[f"p_{gain}{suffix}_raw"] for gain in GAINS] for row in rows])
        adjusted = (
            raw if np.isnan(raw).all() else multipletests(raw.ravel(), method="holm")[1].reshape(raw.shape)
        )
        for row, values in zip(rows, adjusted):
            row.update({f"p_{gain}{suffix}": float(v) for gain, v in zip(GAINS, values)})
    for row in rows:
        row["identifiable"] = bool(row["p_total"] < alpha)
        row["paired"] = paired
        row["share_rep_point"] = row["share_rep"]
        if not row["identifiable"]:  # a share is reported only where the total gain is clearly positive
            row.update({k: math.nan for k in row if k.startswith("share_rep") and k != "share_rep_point"})
        row["share_eq"] = 1 - row["share_rep"]
    return pd.DataFrame(rows)


def largest_share(table: pd.DataFrame) -> dict | None:
    """The paper's "up to X%": the identifiable budget with the largest repetition share.

    Returns the row's budget, share and intervals, or None when no budget is identifiable.
    """
    shown = table.loc[table["identifiable"]]
    if shown.empty:
        return None
    best = shown.loc[shown["share_rep"].idxmax()]
    keys = [
        "budget",
        "share_rep",
        "share_rep_lo_delta",
        "share_rep_hi_delta",
        "share_rep_lo_fieller",
        "share_rep_hi_fieller",
        "fieller_kind",
        "share_rep_lo_boot",
        "share_rep_hi_boot",
        "boot_method",
        "rel_gain",
        "n_plain",
        "n_repeat",
        "n_gcnn",
        "p_total",
    ]
    return {k: best[k] for k in keys}


# --------------------------------------------------------------------------------------------
# Pooled over budgets
# --------------------------------------------------------------------------------------------


def pooled(runs: pd.DataFrame, by_budget_trend: bool = False, confidence: float = 0.95) -> pd.DataFrame:
    """OLS test_error ~ repeat + equiv + C(budget), cluster-robust by seed (t with G-1 df).

    repeat = 1 for the repeat and gcnn arms, equiv = 1 for gcnn; gains are -beta. Pooled share =
    beta_repeat / (beta_repeat + beta_equiv) with a delta-method interval; `identifiable` when the
    total gain -(beta_repeat + beta_equiv) is significantly positive. by_budget_trend adds
    repeat:log(budget) (centred at the mean log budget, so beta_repeat stays the effect at the
    geometric-mean budget) and reports its coefficient and p-value (does the repetition gain
    change with the budget?). One row.
    """
    import statsmodels.formula.api as smf

    _checked(runs)
    ok = runs.loc[_is_ok(runs)].astype({"test_error": float})
    ok = ok.assign(
        repeat=ok["arm"].isin(["repeat", "gcnn"]).astype(float), equiv=(ok["arm"] == "gcnn").astype(float)
    )
    ok["log_budget_c"] = np.log(ok["budget"].astype(float)) - np.log(ok["budget"].astype(float)).mean()
    formula = "test_error ~ repeat + equiv"
    if ok["budget"].nunique() > 1:
        formula += " + C(budget)"
    if by_budget_trend:
        if ok["budget"].nunique() < 2:
            raise ValueError("pooled: by_budget_trend needs at least 2 budgets, found 1")
        formula += " + repeat:log_budget_c"
    groups = pd.factorize(ok["seed"])[0]
    n_clusters = int(groups.max()) + 1
    if n_clusters < 2:
        raise ValueError("pooled: cluster-robust errors need at least 2 seeds, found 1")
    fit = smf.ols(formula, data=ok).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    b_r, b_e = fit.params["repeat"], fit.params["equiv"]
    cov = fit.cov_params().loc[["repeat", "equiv"], ["repeat", "equiv"]].to_numpy()
    total = b_r + b_e
    grad = np.array([b_e, -b_r]) / total**2
    se_share = float(math.sqrt(max(grad @ cov @ grad, 0.0)))
    q = sps.t.ppf((1 + confidence) / 2, n_clusters - 1)
    share = b_r / total
    total_test = fit.t_test("repeat + equiv = 0")
    t_total = float(np.asarray(total_test.tvalue).ravel()[0])
    p_total = float(sps.t.sf(-t_total, fit.df_resid_inference or fit.df_resid))
    row = {
        "gain_rep": -b_r,
        "gain_eq": -b_e,
        "gain_total": -total,
        "se_rep": fit.bse["repeat"],
        "se_eq": fit.bse["equiv"],
        "p_rep": _one_sided(fit, "repeat"),
        "p_eq": _one_sided(fit, "equiv"),
        "p_total": p_total,
        "identifiable": p_total < 1 - confidence,
        "share_rep": share,
        "share_rep_lo": share - q * se_share,
        "share_rep_hi": share + q * se_share,
        "n_runs": len(ok),
        "n_budgets": ok["budget"].nunique(),
        "n_clusters": n_clusters,
    }
    if by_budget_trend:
        row.update(
            {
                "trend_rep_per_log_budget": -fit.params["repeat:log_budget_c"],
                "trend_se": fit.bse["repeat:log_budget_c"],
                "trend_p": float(fit.pvalues["repeat:log_budget_c"]),
            }
        )
    return pd.DataFrame([row])


def _one_sided(fit, name: str) -> float:
    """p-value that the coefficient is negative (a positive gain), from the fit's t statistic."""
    return float(sps.t.sf(-fit.tvalues[name], fit.df_resid_inference or fit.df_resid))
