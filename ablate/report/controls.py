"""The report's sharing-or-symmetry part (issue 42): the G-CNN's gain split three ways by the
wrong-group arm, the wide arm as a compute-matched reference, whether the repeat and wrong arms
learned part of the symmetry, and what test-time averaging over each design's group does. Only
for studies with those arms; its numbers come from stats (stats.controls, stats.invariance)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ablate.models.arms import ARM_COLOURS, ARM_LABELS, NOT_APPLICABLE, Design, Group
from ablate.report.plots import axes, decorate, share_axis
from ablate.report.text import format_interval, pct

if TYPE_CHECKING:
    import matplotlib.pyplot as plt

    from ablate.report.analysis import StudyReport

PARTS = (("rep", "repetition"), ("struct", "sharing structure"), ("sym", "symmetry"))


def has_controls(report: StudyReport) -> bool:
    """Whether the study has a wrong-group or a wide arm."""
    return report.table is not None and ("share_struct" in report.table or "gain_wide" in report.table)


def _share(row: pd.Series, name: str) -> str:
    if not np.isfinite(row.get(f"share_{name}", np.nan)):
        return "not identifiable"
    interval = format_interval(row[f"share_{name}_lo_delta"], row[f"share_{name}_hi_delta"])
    return f"{pct(row[f'share_{name}'])} ({interval})"


def split_rows(report: StudyReport) -> list[list[str]]:
    """Per design: the three shares with their delta intervals, and the wide arm's gains."""
    rows = []
    for _, t in report.table.iterrows():
        shares = (
            [_share(t, name) for name, _ in PARTS] if "share_struct" in t else [_share(t, "rep"), "–", "–"]
        )
        wide = [
            f"{pct(t[f'gain_{g}'], 2, unit='')} (p {t[f'p_{g}']:.2g})" if f"gain_{g}" in t else NOT_APPLICABLE
            for g in ("wide", "free")
        ]
        rows.append([t["design"], *shares, *wide])
    return rows


SPLIT_HEADER = [
    "design",
    "repetition share (95% CI)",
    "sharing-structure share (95% CI)",
    "symmetry share (95% CI)",
    "wide over plain (pts, p)",
    "wide over repeat (pts, p)",
]


def own_group_sentence(report: StudyReport) -> str:
    """How invariant the wrong arm is to its own group (it is built so: 0 where that group's
    transformations are exact on the pixel grid), per design; '' without the arm."""
    wrong = report.runs[(report.runs["arm"] == "wrong") & (report.runs["status"] == "ok")]
    parts = [
        f"{Group(kind, int(order)).label}'s wrong group {label}: {pct(part['invariance_error'].mean(), 2)}"
        for (kind, order, label), part in wrong.groupby(["group", "group_order", "wrong_group"])
    ]
    if not parts:
        return ""
    return (
        "Under its own group's exact transformations the wrong-group G-CNN changes this share of its "
        f"predictions (mean over seeds): {'; '.join(parts)}; the table sets it against the design's group."
    )


def gap_rows(report: StudyReport) -> list[list[str]]:
    """Per design group, measure and arm: its invariance gap to the plain arm (points; positive:
    its predictions change less), the interval and Holm-adjusted one-sided p."""
    rows = []
    for g in report.invariance_gaps.itertuples():
        what = f"{g.group}'s exact transformations" if g.measure == "exact" else "turns by random angles"
        p = f"{g.p_holm:.2g}" if np.isfinite(g.p_holm) else NOT_APPLICABLE
        budget = Design(g.budget).budget_text
        rows.append([f"{budget} {g.group}", what, ARM_LABELS[g.arm], pct(g.gap, 2, unit=""),
                     f"{pct(g.lo, 2, unit='')} to {pct(g.hi, 2, unit='')}", p])  # fmt: skip
    return rows


def orbit_rows(report: StudyReport) -> list[list[str]]:
    """Per design group and arm: test error, the error of logits averaged over the group's exact
    transformations, and the share of its gap to the G-CNN that the averaging closes."""
    return [
        [
            f"{Design(o.budget).budget_text} {o.group}",
            ARM_LABELS[o.arm],
            pct(o.error, 2, unit=""),
            pct(o.orbit, 2, unit=""),
            pct(o.closed, 0, missing=NOT_APPLICABLE),
        ]  # fmt: skip
        for o in report.orbit.itertuples()
    ]


def split_sentence(report: StudyReport) -> str:
    """'budget 20,000, C2 (wrong group D1): of the G-CNN's gain, 5.0% (…) is repetition, …'."""
    parts = []
    for _, t in report.table.iterrows():
        if "share_struct" not in t or not np.isfinite(t.get("share_struct", np.nan)):
            continue
        shares = ", ".join(f"{_share(t, name)} {words}" for name, words in PARTS)
        wrong = report.wrong_groups.get(int(t["group_order"]), "?")
        parts.append(f"{Design.of(t).label} (wrong group {wrong}): {shares}")
    if not parts:
        return "Sharing or symmetry: no design's total gain is clearly non-zero yet."
    return "Of the G-CNN's gain, per design: " + "; ".join(parts) + "."


def fig_sharing_or_symmetry(report: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """Per design, the three shares of the G-CNN's gain with their delta-method 95% intervals
    (repetition, sharing structure, symmetry), summing to 100%."""
    table = (
        report.table[report.table["share_struct"].notna()]
        if "share_struct" in report.table
        else report.table.iloc[:0]
    )
    fig, ax = axes(ax, (7, 1.5 + 0.9 * max(1, len(table))))
    colours = {"rep": ARM_COLOURS["repeat"], "struct": ARM_COLOURS["wrong"], "sym": ARM_COLOURS["gcnn"]}
    for i, (_, t) in enumerate(table.reset_index(drop=True).iterrows()):
        for j, (name, words) in enumerate(PARTS):
            share, lo, hi = (t[f"share_{name}{k}"] for k in ("", "_lo_delta", "_hi_delta"))
            ax.errorbar(100 * share, i + 0.2 * (1 - j), xerr=[[100 * (share - lo)], [100 * (hi - share)]],
                        fmt="o", capsize=3, color=colours[name], label=words if i == 0 else None)  # fmt: skip
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(table)), list(table["design"]))
    ax.set_ylim(-0.5, max(1, len(table)) - 0.5)
    share_axis(ax, "x")
    decorate(ax, "share of the G-CNN's gain (%)", "", f"Sharing or symmetry — {report.title}")
    return fig
