"""Words for the numbers of ablate.stats: intervals, the headline sentence and the text summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate import stats
from ablate.models.arms import DEFAULT_STRUCTURE, GROUPED_ARMS, Design, Group, control_phrase
from ablate.stats import MIN_BOOT_SEEDS, MIN_TREND_RUNS, SCALE_LABELS, largest_share


def pct(x: float | None, digits: int = 1, unit: str = "%", missing: str = "n/a") -> str:
    """A fraction as a percentage ('22.0%'; tables: unit "" and missing "–"); `missing` for
    None or NaN. The one percent formatter of the report."""
    return missing if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}{unit}"


def format_interval(lo: float, hi: float, kind: str = "bounded") -> str:
    """'21.0% to 55.0%', or the Fieller sets that are not one bounded interval, spelled out."""
    if kind == "two rays":
        return f"(-inf, {pct(lo)}] U [{pct(hi)}, inf)"
    if kind == "unbounded":
        return "unbounded"
    return f"{pct(lo)} to {pct(hi)}"


def gain_unit(scale: str) -> str:
    """How a gain on this scale is written: percentage points, or log units."""
    return "points" if scale == "points" else f"{scale} units"


def _gain(x: float, scale: str) -> str:
    return f"{100 * x:.2f}" if scale == "points" else f"{x:.3f}"


def _pick(pooled_row: pd.DataFrame, design: dict | None):
    """The pooled row of `design` (its group_order and repeat_structure), else the first."""
    if design is not None and "group_order" in pooled_row:
        same = pooled_row[
            (pooled_row["group_order"] == design.get("group_order"))
            & (pooled_row["repeat_structure"] == design.get("repeat_structure"))
        ]
        if len(same):
            return same.iloc[0]
    return pooled_row.iloc[0]


def pooled_phrase(pooled_row: pd.DataFrame | None, design: dict | None = None) -> str:
    """'pooled over 2 budgets: 20.1% (95% CI 5.0% to 35.2%)', or '' when there is no pooled estimate.
    design: the row (group order, structure) whose pooled share to give when there are several."""
    if pooled_row is None or not len(pooled_row):
        return ""
    p = _pick(pooled_row, design)
    where = f"pooled over {int(p['n_budgets'])} budget{'s' if p['n_budgets'] > 1 else ''}"
    if not p["identifiable"]:
        return f"{where}: not identifiable"
    return f"{where}: {pct(p['share_rep'])} (95% CI {format_interval(p['share_rep_lo'], p['share_rep_hi'])})"


def headline_sentence(
    table: pd.DataFrame,
    group: str = "C4",
    dataset: str = "",
    pooled_row: pd.DataFrame | None = None,
    unstable: dict | None = None,
) -> str:
    """The paper's sentence computed from data, with the budget named and the selection stated
    (the largest of K shares is biased upward), the pooled share beside it, and a warning when
    designs of its budget are not shown stable (`unstable`: budget -> labels); or the honest
    statement that no share can be given."""
    best = largest_share(table)
    where = f" on {dataset}" if dataset else ""
    if best is None:
        return (
            f"The share of the {group} G-CNN's gain explained by repetition is not "
            f"identifiable{where}: at no budget is the G-CNN's gain over the plain CNN clearly "
            f"different from zero."
        )
    n = min(best["n_plain"], best["n_repeat"], best["n_gcnn"])
    interval = format_interval(best["share_rep_lo_delta"], best["share_rep_hi_delta"])
    interval += ", delta method"
    if best["n_budgets"] > 1:  # the interval of a maximum, adjusted for its selection
        adjusted = format_interval(best["share_rep_lo_adjusted"], best["share_rep_hi_adjusted"])
        interval += f"; {adjusted} adjusted for taking the largest of {best['n_budgets']}"
    k, k_all = best["n_budgets"], best["n_budgets_all"]
    selection = (
        f"the largest of {k} identifiable budget shares"
        if k > 1
        else f"the only identifiable budget of {k_all}"
    )
    if k == 1 and k_all == 1:
        selection = "the one budget"
    pooled = pooled_phrase(pooled_row, best)
    design = Design.of(best)
    group = design.group_label or group
    repeat_structure = design.repeat_structure
    control = f" ({control_phrase(repeat_structure)})" if repeat_structure != DEFAULT_STRUCTURE else ""
    flagged = (unstable or {}).get(int(best["budget"]), [])
    caveat = (
        f" Not every share of its budget is shown stable over the last epochs: {', '.join(flagged)}."
        if flagged
        else ""
    )
    return (
        f"Up to {100 * best['share_rep']:.0f}% (95% CI {interval}) of the gain of the "
        f"{group} G-CNN over the plain CNN at equal parameters{where} is explained by learnable "
        f"repetition{control} alone: budget {int(best['budget']):,}, {selection}, {n} seeds per arm"
        + (f"; {pooled}." if pooled else ".")
        + caveat
    )


def format_summary(
    table: pd.DataFrame,
    pooled_row: pd.DataFrame | None = None,
    group: str = "C4",
    dataset: str = "",
    unstable: dict | None = None,
) -> str:
    """Plain-text summary of decompose() (and pooled()) output."""
    scale = str(table["scale"].iloc[0]) if "scale" in table else "points"
    head = headline_sentence(table, group, dataset, pooled_row, unstable)
    lines = [head, "", f"scale: {SCALE_LABELS[scale]}"]
    for _, r in table.iterrows():
        where = Design.of(r).label
        lines.append(
            f"{where}: error plain {pct(r['err_plain'])} (n={r['n_plain']}), "
            f"repeat {pct(r['err_repeat'])} (n={r['n_repeat']}), gcnn {pct(r['err_gcnn'])} (n={r['n_gcnn']})"
            + (" [degenerate: an arm has no spread]" if r.get("degenerate") else "")
        )
        lines.append(
            f"  gains ({gain_unit(scale)}): total {_gain(r['gain_total'], scale)} (p={r['p_total']:.3g}), "
            f"repetition {_gain(r['gain_rep'], scale)} (p={r['p_rep']:.3g}), equivariance "
            f"{_gain(r['gain_eq'], scale)} (p={r['p_eq']:.3g}); Holm-adjusted, one-sided"
        )
        if not r["identifiable"]:
            lines.append("  repetition share: not identifiable (total gain not clearly different from zero)")
            continue
        boot = f"no bootstrap (needs {MIN_BOOT_SEEDS}+ seeds per arm)"
        if np.isfinite(r["share_rep_lo_boot"]):
            interval = format_interval(r["share_rep_lo_boot"], r["share_rep_hi_boot"])
            boot = f"bootstrap ({r['boot_method']}) {interval}"
        fieller = format_interval(r["share_rep_lo_fieller"], r["share_rep_hi_fieller"], r["fieller_kind"])
        lines.append(
            f"  repetition share {pct(r['share_rep'])}: delta "
            f"{format_interval(r['share_rep_lo_delta'], r['share_rep_hi_delta'])}, Fieller {fieller}, {boot}"
        )
        if "gain_aug" in r and np.isfinite(r["gain_aug"]):
            interval = format_interval(r["share_aug_lo"], r["share_aug_hi"])
            lines.append(
                f"  augmentation: gain {_gain(r['gain_aug'], scale)} (p={r['p_aug']:.3g}), "
                f"{pct(r['share_aug'])} of the G-CNN's gain (delta {interval})"
            )
    for _, p in pooled_row.iterrows() if pooled_row is not None else []:
        how = f"{int(p['n_runs'])} runs; {p['method']}; p_total={p['p_total']:.3g}"
        lines.append(f"{pooled_phrase(pooled_row, p.to_dict())}{Design.of(p).phrase} ({how})")
        if "trend_p" in p and np.isfinite(p["trend_p"]):
            lines.append(
                f"  change per unit log budget of the repetition gain: "
                f"{_gain(p['trend_rep_per_log_budget'], scale)} {gain_unit(scale)} (p={p['trend_p']:.3g}); "
                f"of the equivariance gain: {_gain(p['trend_eq_per_log_budget'], scale)} "
                f"(p={p['trend_eq_p']:.3g})"
            )
    return "\n".join(lines)


def precision_lines(table: pd.DataFrame, target: float, unstable: dict | None = None) -> list[str]:
    """Per design: whether the repetition share's delta interval is within ±target (fraction), or
    why not: not identifiable, too wide, or not shown stable (budget -> labels)."""
    lines = []
    for _, r in table.iterrows():
        where = Design.of(r).label
        flagged = [f for f in (unstable or {}).get(int(r["budget"]), []) if f.startswith(where + " (")]
        if not r["identifiable"]:
            verdict = "no interval: the share is not identifiable (total gain not clearly non-zero)"
        else:
            half = (r["share_rep_hi_delta"] - r["share_rep_lo_delta"]) / 2
            verdict = (
                f"delta interval {format_interval(r['share_rep_lo_delta'], r['share_rep_hi_delta'])}, "
                f"half-width {100 * half:.1f} points: "
                + (f"within ±{100 * target:.0f}" if half <= target else f"wider than ±{100 * target:.0f}")
            )
        if flagged:
            verdict += f"; share not shown stable: {flagged[0][len(where) + 2 : -1]}"
        lines.append(f"{where}: {verdict}")
    return lines


def seeds_sentence(needed: pd.DataFrame, half_width: float) -> str:
    """'With this study's spread, N seeds per arm give ±10 points ...' for each budget."""
    parts = []
    for _, r in needed.iterrows():
        n, low, high = int(r["seeds_needed"]), int(r["seeds_low"]), int(r["seeds_high"])
        what = f"{n} seeds per arm" if n > 0 else "no number of seeds (no total gain)"
        notes = [f"95% from the spreads' uncertainty: {low}–{high if high > 0 else 'more'}"] if n > 0 else []
        if np.isfinite(r["half_width_now"]):
            notes.append(f"now ±{100 * r['half_width_now']:.0f} with {int(r['n_now'])}")
        parts.append(f"{Design.of(r).label}: {what}" + (f" ({'; '.join(notes)})" if notes else ""))
    return (
        f"With this study's spread, a delta-method interval of ±{100 * half_width:.0f} points on the "
        f"repetition share needs {'; '.join(parts)}."
    )


def _up_to(shares: pd.DataFrame) -> str:
    """'up to 23% (C8; C4 12%, C8 23%, C16 -4%)' from stats.point_shares rows."""
    shares = shares[np.isfinite(shares["share_rep"])]
    if shares.empty:
        return "no share (no gain of any G-CNN over the baseline)"
    best = shares.loc[shares["share_rep"].idxmax()]
    each = ", ".join(f"{Group.of(r).label} {pct(r['share_rep'], 0)}" for _, r in shares.iterrows())
    return f"up to {pct(best['share_rep'], 0)} ({Group.of(best).label}; {each})"


def paper_sentence(paper) -> str:
    """The seed paper's "up to X%" computed as the paper computes it, and beside it the same
    computation on final-epoch means over all seeds (analysis.PaperSummary)."""
    n = int(paper.models["n"].min())
    return (
        f"Computed as the paper computes it (for each N, (baseline - cN_rep) / (baseline - cN) on "
        f"seed {paper.paper_seed}'s best-epoch test errors, the epoch chosen on the test set, as the "
        f"paper's figure most likely was: its script logged test accuracy every epoch and kept no "
        f"checkpoint; the largest over N): {_up_to(paper.shares_paper)} of the G-CNN's gain comes "
        f"from repetition. On final-epoch means over {n} seeds: {_up_to(paper.shares_final)}; the "
        "share table gives their intervals."
    )


def cell_name(row) -> str:
    """'repeat C4' or 'plain' for a cell row (CELL_KEY and group, as stats.prepare spells them)."""
    return row["arm"] + (
        f" {Group(row['group'], row['group_order']).label}" if row["arm"] in GROUPED_ARMS else ""
    )


def cell_label(row) -> str:
    """'repeat at budget 20,000, C4, matched control' for a cell row (stats.seed_trends,
    stats.code_heterogeneity)."""
    design = Design.of(row) if row["arm"] in GROUPED_ARMS else Design(row["budget"])
    return f"{row['arm']} at {design.label}"


def stability_rule() -> str:
    """The stability rule of stats.share_stability in words, for notes and captions."""
    return (
        f"a design's share is shown stable when the 95% interval (delta method) of its change over the "
        f"last {100 * stats.convergence_window:.0f}% of epochs, each end from that epoch's arm means, lies "
        f"within ±{100 * stats.STABLE_TOLERANCE:.0f} points; otherwise 'drift' where the interval excludes "
        "0, else 'too few seeds'"
    )


def stability_phrase(row) -> str:
    """'stable: +0.4 points (-2.0 to 2.9)' for a stats.share_stability row (its verdict first)."""
    if not np.isfinite(row.get("change", np.nan)):
        return f"{row['verdict']}: no change measured"
    return (
        f"{row['verdict']}: {100 * row['change']:+.1f} points "
        f"({100 * row['lo']:.1f} to {100 * row['hi']:.1f})"
    )


def fluctuation_note(fluctuation: float) -> str:
    """The per-run movement as a note about noise, not a verdict."""
    return (
        f"single runs fluctuate by {100 * fluctuation:.2f} points from one evaluation to the next over the "
        f"last {100 * stats.convergence_window:.0f}% of epochs (median over runs of the mean absolute "
        "change): noise that more seeds average out, so convergence is judged on the share"
    )


def bound(row) -> str:
    """'bound 0.84' (points), or 'no bound from 1 run', for a stats.convergence row."""
    if not np.isfinite(row["upper_abs_change"]):
        return f"no bound from {int(row['n'])} run"
    return f"bound {100 * row['upper_abs_change']:.2f}"


def bound_phrase(row) -> str:
    """'mean abs. change 0.55, bound 0.84 pts' for a convergence row (percentage points)."""
    return f"mean abs. change {100 * row['mean_abs_change']:.2f}, {bound(row)} pts"


def unstable_designs(stability: pd.DataFrame, budget=None) -> list[str]:
    """Labels ('budget 20,000, C4, paper control (too few seeds: -1.7 points (-5.3 to 1.9))') of
    the designs whose share is not shown stable, optionally of one budget."""
    flagged = stability[stability["verdict"] != "stable"]
    if budget is not None:
        flagged = flagged[flagged["budget"] == budget]
    return [f"{Design.of(r).label} ({stability_phrase(r)})" for _, r in flagged.iterrows()]


def exchangeability_sentence(trends: dict[str, pd.DataFrame]) -> str:
    """The report's one line on seed exchangeability: 'no trend', or the flagged cells with their
    rho and Holm-adjusted p (and their code fingerprints when a cell's runs come from several);
    the finishing order second. trends: stats.seed_trends by "seed" and by "finished_at"."""
    by_seed = trends["seed"]
    if by_seed.empty:
        return f"Seed exchangeability: not checked (no cell has {MIN_TREND_RUNS} ok runs)."
    level = 1 - float(by_seed["confidence"].iloc[0])
    how = f"Spearman, permutation p, Holm-adjusted over {len(by_seed)} cells, flagged at {100 * level:.0f}%"

    def flagged(frame: pd.DataFrame) -> str:
        parts = []
        for _, r in frame[frame["flagged"]].iterrows():
            codes = [c for c in r["code_fingerprints"] if c]
            code = f", runs from code {' and '.join(codes)}" if len(r["code_fingerprints"]) > 1 else ""
            parts.append(f"{cell_label(r)} (rho {r['rho']:+.2f}, adjusted p {r['p_holm']:.2g}{code})")
        return "; ".join(parts)

    seed = flagged(by_seed)
    line = (
        f"Seed exchangeability ({how}): test error trends with the seed number in {seed}."
        if seed
        else f"Seed exchangeability ({how}): no trend of test error with the seed number."
    )
    order = trends.get("finished_at")
    if order is not None and not order.empty:
        finished = flagged(order)
        line += (
            f" With the order in which runs finished: {finished}."
            if finished
            else " None with the order in which runs finished."
        )
    return line


def single_seed_lines(single: dict, table: pd.DataFrame) -> list[str]:
    """Per budget and control, the distribution of the paper's one-seed share (best-epoch and
    final-epoch errors; stats.single_seed_shares) beside the multi-seed share and interval."""
    if not single:
        return []
    first = next(iter(single.values()))
    lines = [
        "One seed's share, computed as the paper computed its figure (that seed's test errors; the "
        f"largest over N), against the multi-seed estimate; threshold {pct(first.threshold, 0)}:"
    ]
    for _, row in first.summary.iterrows():
        design = Design(row["budget"], None, row["repeat_structure"] or DEFAULT_STRUCTURE)
        parts = []
        for error, shares in single.items():
            s = shares.summary
            r = s[(s["budget"] == row["budget"]) & (s["repeat_structure"] == row["repeat_structure"])].iloc[0]
            at = int(round(r["at_or_above"] * r["n"])) if r["n"] else 0
            parts.append(
                f"{error}-epoch median {pct(r['median'])}, range {pct(r['min'])} to {pct(r['max'])}, "
                f"{at} of {int(r['n'])} seeds at or above {pct(shares.threshold, 0)}"
            )
        rows = table[
            (table["budget"] == row["budget"]) & (table["repeat_structure"] == row["repeat_structure"])
        ]
        rows = rows[rows["identifiable"].astype(bool)]
        multi = "multi-seed: not identifiable"
        if len(rows):
            best = rows.loc[rows["share_rep"].astype(float).idxmax()]
            order = f" {Design.of(best).group_label}," if rows["group_order"].nunique() > 1 else ""
            interval = format_interval(best["share_rep_lo_delta"], best["share_rep_hi_delta"])
            multi = f"multi-seed{order} {pct(best['share_rep'])} (95% CI {interval})"
        lines.append(f"  {design.label}: {'; '.join(parts)}; {multi}")
    return lines
