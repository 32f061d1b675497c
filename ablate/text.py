"""Words for the numbers of ablate.stats: intervals, the headline sentence and the text summary."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ablate.stats import largest_share


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


def format_interval(lo: float, hi: float, kind: str = "bounded") -> str:
    """'21–55%', or the Fieller sets that are not one bounded interval, spelled out."""
    if kind == "two rays":
        return f"(-inf, {_pct(lo)}] U [{_pct(hi)}, inf)"
    if kind == "unbounded":
        return "unbounded"
    return f"{_pct(lo)} to {_pct(hi)}"


def headline_sentence(table: pd.DataFrame, group_order: int = 4, dataset: str = "") -> str:
    """The sentence the paper makes, computed from data, or the honest statement that it can't be."""
    best = largest_share(table)
    where = f" on {dataset}" if dataset else ""
    if best is None:
        return (
            f"The share of the C{group_order} G-CNN's gain explained by repetition is not "
            f"identifiable{where}: at no budget is the G-CNN's gain over the plain CNN "
            f"significantly positive after Holm correction."
        )
    n = min(best["n_plain"], best["n_repeat"], best["n_gcnn"])
    interval = format_interval(best["share_rep_lo_delta"], best["share_rep_hi_delta"])
    return (
        f"Up to {100 * best['share_rep']:.0f}% (95% CI {interval}, "
        f"delta method) of the relative gain of the C{group_order} G-CNN over the plain CNN at equal "
        f"parameters{where} is explained by learnable repetition alone (budget {int(best['budget']):,}, "
        f"{n} seeds per arm)."
    )


def format_summary(
    table: pd.DataFrame, pooled_row: pd.DataFrame | None = None, group_order: int = 4, dataset: str = ""
) -> str:
    """Plain-text summary of decompose() (and pooled()) output."""
    lines = [headline_sentence(table, group_order, dataset), ""]
    for _, r in table.iterrows():
        lines.append(
            f"budget {int(r['budget']):,}: error plain {_pct(r['err_plain'])} (n={r['n_plain']}), "
            f"repeat {_pct(r['err_repeat'])} (n={r['n_repeat']}), gcnn {_pct(r['err_gcnn'])} "
            f"(n={r['n_gcnn']})"
        )
        lines.append(
            f"  gains (points): total {100 * r['gain_total']:.2f} (p={r['p_total']:.3g}), "
            f"repetition {100 * r['gain_rep']:.2f} (p={r['p_rep']:.3g}), equivariance "
            f"{100 * r['gain_eq']:.2f} (p={r['p_eq']:.3g}); Holm-adjusted, one-sided"
        )
        if r["identifiable"]:
            lines.append(
                f"  repetition share {_pct(r['share_rep'])}: delta "
                f"{format_interval(r['share_rep_lo_delta'], r['share_rep_hi_delta'])}, Fieller "
                f"{format_interval(r['share_rep_lo_fieller'], r['share_rep_hi_fieller'], r['fieller_kind'])}"
                ", "
                f"bootstrap ({r['boot_method']}) "
                f"{format_interval(r['share_rep_lo_boot'], r['share_rep_hi_boot'])}"
            )
        else:
            lines.append("  repetition share: not identifiable (total gain not significantly positive)")
    if pooled_row is not None and len(pooled_row):
        p = pooled_row.iloc[0]
        where = (
            f"pooled over {int(p['n_budgets'])} budget{'s' if p['n_budgets'] > 1 else ''} "
            f"({int(p['n_runs'])} runs, {int(p['n_clusters'])} seed clusters)"
        )
        if p["identifiable"]:
            lines.append(
                f"{where}: repetition share {_pct(p['share_rep'])} "
                f"({_pct(p['share_rep_lo'])} to {_pct(p['share_rep_hi'])}), p_total={p['p_total']:.3g}"
            )
        else:
            lines.append(f"{where}: repetition share not identifiable (total gain p={p['p_total']:.3g})")
        if "trend_p" in p:
            lines.append(
                f"  change of the repetition gain per unit log budget: "
                f"{100 * p['trend_rep_per_log_budget']:.2f} points (p={p['trend_p']:.3g})"
            )
    return "\n".join(lines)
