"""The figures of a study report. Each takes the study's numbers (a `StudyReport`) and an axis
(or axes) to draw on; without one it makes its own figure. Every function returns the figure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablate import stats  # noqa: E402
from ablate.models.arms import ARM_COLOURS, DEFAULT_STRUCTURE, Design, Group, control_phrase  # noqa: E402
from ablate.report.controls import fig_sharing_or_symmetry  # noqa: E402
from ablate.report.plots import (  # noqa: E402
    axes,
    decorate,
    no_table,
    plot_gains,
    plot_shares,
    plot_trajectory,
    share_axis,
)

if TYPE_CHECKING:
    from ablate.report.analysis import StudyReport


def palette(report: StudyReport) -> dict:
    """A colour per model variant of the study: its arm's (models.arms.ARM_COLOURS), in shades
    from light to the arm's own where several variants share an arm (C2/C4/C8, two controls)."""
    arm_of = report.runs.drop_duplicates("variant").set_index("variant")["arm"]
    colours = {}
    for arm in dict.fromkeys(arm_of[v] for v in report.variants):
        mine = [v for v in report.variants if arm_of[v] == arm]
        shades = (
            sns.light_palette(ARM_COLOURS[arm], n_colors=len(mine) + 1)[1:]
            if len(mine) > 1
            else [ARM_COLOURS[arm]]
        )
        colours.update(zip(mine, shades))
    return {v: colours[v] for v in report.variants}


def fig_error_vs_params(report: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """Test error (%) against learnable parameters: per model variant the mean with its t-interval,
    and the seeds."""
    fig, ax = axes(ax, (6, 4))
    ok = report.runs[report.runs["status"] == "ok"]
    params = ok.groupby(["budget", "variant"])["n_params"].mean()
    colours = palette(report)
    for i, variant in enumerate(report.variants):
        jitter = 1 + 0.03 * (i - (len(report.variants) - 1) / 2)
        seeds = ok[ok["variant"] == variant]
        colour = colours[variant]
        ax.scatter(
            seeds["n_params"] * jitter,
            100 * seeds["test_error"],
            s=12,
            alpha=0.45,
            color=colour,
            linewidths=0,
        )
        s = report.summary[report.summary["variant"] == variant].sort_values("budget")
        x = np.array([params[(b, variant)] for b in s["budget"]]) * jitter
        err = 100 * np.vstack([s["mean"] - s["lo"], s["hi"] - s["mean"]]).clip(min=0)
        ax.errorbar(
            x, 100 * s["mean"], yerr=np.nan_to_num(err), color=colour, marker="o", capsize=3, label=variant
        )
    title = f"Test error at equal parameters\n{report.title}; mean and 95% t-interval, dots = seeds"
    decorate(ax, "learnable parameters", "test error (%)", title, log="x")
    return fig


def fig_gain_decomposition(report: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Left: the gains per design; right: the repetition share with its intervals (plots.plot_gains
    and plots.plot_shares on the decomposition table). axes: (left, right)."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    left, right = axes
    if report.table is None:
        for ax in (left, right):
            no_table(ax)
    else:
        t = report.table.sort_values("budget")
        plot_gains(t, left)
        pooled = report.pooled.iloc[0].to_dict() if report.pooled is not None else None
        plot_shares(t, right, pooled=pooled)
    fig.suptitle(f"How much of the G-CNN's gain is repetition? — {report.title}")
    fig.tight_layout()
    return fig


def _mark_window(report: StudyReport, budget, ax: plt.Axes) -> None:
    """Shade the window the share's stability is judged over; name its designs not shown stable."""
    last = report.history.loc[report.history["budget"] == budget, "epoch"].max()
    ax.axvspan(stats.window_start(last), last, color="0.9", zorder=0)
    flagged = report.unstable.get(int(budget), [])
    if flagged:
        names = "\n".join(f.split(" (")[0].removeprefix(f"budget {int(budget):,}, ") for f in flagged[:3])
        note = f"share not shown stable (shaded window):\n{names}"
        ax.text(0.98, 0.98, note, transform=ax.transAxes, ha="right", va="top", fontsize=6, color="C3")


def fig_learning_curves(report: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Train and test error (%) per epoch, mean and 95% CI over seeds; one axis per budget. The
    window the share's stability is judged over is shaded and the designs not shown stable named."""
    h = report.history
    long = pd.concat(
        [
            h.assign(split="train", error=100 * h["train_error"]),
            h.dropna(subset=["test_error"]).assign(split="test", error=lambda d: 100 * d["test_error"]),
        ]
    )
    budgets = sorted(long["budget"].unique())
    if axes is None:
        fig, axes = plt.subplots(1, len(budgets), figsize=(3.6 * len(budgets), 3.4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for i, (budget, ax) in enumerate(zip(budgets, axes)):
        sns.lineplot(
            data=long[long["budget"] == budget],
            x="epoch",
            y="error",
            hue="variant",
            hue_order=report.variants,
            palette=palette(report),
            style="split",
            style_order=["train", "test"],
            errorbar=("ci", 95),
            seed=0,
            ax=ax,
            legend=i == len(budgets) - 1,
        )
        decorate(ax, "epoch", "error (%)", f"budget {int(budget):,}", legend=i == len(budgets) - 1)
        _mark_window(report, budget, ax)
        if i == len(budgets) - 1:  # beside the plots: the convergence note sits in their corner
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title_fontsize=7)
    fig.suptitle(f"Learning curves (mean, 95% CI over seeds) — {report.title}")
    fig.tight_layout()
    return fig


def fig_physical_size(report: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """Multiply-accumulates per image against learnable parameters, per model variant (log-log)."""
    fig, ax = axes(ax, (6, 4))
    cells = report.runs.groupby(["budget", "variant"], as_index=False)[["n_params", "macs"]].mean()
    for variant in report.variants:
        c = cells[cells["variant"] == variant].sort_values("budget")
        ax.plot(c["n_params"], c["macs"], marker="o", color=palette(report)[variant], label=variant)
    title = f"Same parameters, larger network\n{report.title}"
    decorate(ax, "learnable parameters", "multiply–accumulates per image", title, log="xy")
    return fig


def fig_invariance(report: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Share of test predictions changed (%) per model variant: left, by the exact transformations
    of each design's group (per budget and group: a plain run is shown under each group of its
    budget); right, where recorded, by a turn by a random angle (the same angles for every run),
    per budget. Bars: mean; dots: seeds. axes: one per panel."""
    inv = report.invariance if report.invariance is not None else pd.DataFrame(columns=["exact", "any"])
    inv = inv.assign(design=[f"{int(b):,} {g}" for b, g in zip(inv["budget"], inv["group"])])
    panels = [("exact", "design", "its design group's exact transformations", "budget and group")]
    if inv["any"].notna().any():
        panels.append(("any", "budget", "a turn by a random angle", "parameter budget"))
    if axes is None:
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels) + 1.5, 4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for (column, x, what, xlabel), ax in zip(panels, axes):
        data = inv.dropna(subset=[column]).assign(inv=lambda d, c=column: 100 * d[c])
        if column == "any":
            data = data.drop_duplicates("run_key")
        if data.empty:
            ax.text(
                0.5, 0.5, "no exact transformation to test", ha="center", va="center", transform=ax.transAxes
            )
            ax.set_axis_off()
            continue
        common = {"data": data, "x": x, "y": "inv", "hue": "variant", "hue_order": report.variants}
        common.update(palette=palette(report), ax=ax)
        sns.barplot(**common, errorbar=None, alpha=0.8, legend=False)
        sns.stripplot(
            **common, dodge=True, jitter=False, size=3, legend=False, edgecolor="black", linewidth=0.3
        )
        decorate(
            ax,
            xlabel,
            "predictions changed (%)",
            f"Invariance to {what}\n(bars: mean, dots: seeds)",
            legend=False,
        )
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette(report)[v]) for v in report.variants]
    fig.legend(
        handles, report.variants, frameon=False, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5)
    )
    fig.suptitle(report.title)
    fig.tight_layout()
    return fig


def fig_share_vs_group_order(report: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """The repetition share (delta-method 95% CI) against N of C_N: one line per budget and repeat
    structure (the control's sensitivity to N and to the choice of control)."""
    fig, ax = axes(ax, (6, 4))
    if report.table is None:
        no_table(ax)
        return fig
    t = report.table[report.table["identifiable"].astype(bool)]
    lines = t.groupby(["budget", "repeat_structure"], sort=True)
    colours = sns.color_palette("colorblind", max(1, lines.ngroups))
    for i, ((budget, repeat_structure), line) in enumerate(lines):
        line = line.sort_values("group_order")
        x = line["group_order"] * (1 + 0.02 * (i - (lines.ngroups - 1) / 2))
        err = 100 * np.vstack(
            [line["share_rep"] - line["share_rep_lo_delta"], line["share_rep_hi_delta"] - line["share_rep"]]
        )
        style = {"color": colours[i], "linestyle": "-" if repeat_structure == DEFAULT_STRUCTURE else "--"}
        label = f"budget {int(budget):,}, {control_phrase(repeat_structure)}"
        ax.errorbar(
            x, 100 * line["share_rep"], yerr=err.clip(min=0), marker="o", capsize=3, label=label, **style
        )
    ax.axhline(0, color="grey", linewidth=0.8)
    share_axis(ax, "y")
    ax.set_xscale("log", base=2)
    orders = sorted(report.table["group_order"].unique())
    ax.set_xticks(orders, [Group(report.group, n).label for n in orders])
    decorate(
        ax,
        f"group order N of {report.group}_N",
        "repetition share of the gain (%)",
        f"Repetition share by group order\n{report.title}",
    )
    return fig


def fig_single_seed(report: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """One seed's share as the paper computed it (dots: one per seed; filled best-epoch, hollow
    final-epoch errors; the largest over N) against the multi-seed share and its delta-method
    95% CI per N (bars), one row per budget and control; the paper's 40% as a line."""
    fig, ax = axes(ax, (7, 1.2 + 0.7 * len(next(iter(report.single_seed.values())).summary)))
    first = next(iter(report.single_seed.values()))
    designs = first.summary[["budget", "repeat_structure"]].itertuples(index=False)
    labels = []
    for y, (budget, repeat_structure) in enumerate(designs):
        labels.append(Design(budget, None, repeat_structure or DEFAULT_STRUCTURE).label)
        for error, shares in report.single_seed.items():
            seeds = shares.per_seed
            mine = seeds[(seeds["budget"] == budget) & (seeds["repeat_structure"] == repeat_structure)]
            filled = error == "best"
            offset = 0.12 if filled else -0.12
            ax.scatter(
                100 * mine["share"].clip(-1, 1.5),
                np.full(len(mine), y + offset),
                s=14,
                facecolors=ARM_COLOURS["repeat"] if filled else "none",
                edgecolors=ARM_COLOURS["repeat"],
                linewidths=0.8,
                label=f"one seed, {error}-epoch errors" if y == 0 else None,
            )
        rows = report.table[
            (report.table["budget"] == budget) & (report.table["repeat_structure"] == repeat_structure)
        ]
        rows = rows[rows["identifiable"].astype(bool)]
        for i, (_, row) in enumerate(rows.iterrows()):
            shift = 0.06 * (i - (len(rows) - 1) / 2)
            lo, hi = row["share_rep_lo_delta"], row["share_rep_hi_delta"]
            share = row["share_rep"]
            ax.errorbar(
                100 * share, y + shift, xerr=[[100 * (share - lo)], [100 * (hi - share)]],
                fmt="s", color="black", capsize=3, markersize=4,
                label="many seeds: share and 95% CI (delta)" if y == 0 and i == 0 else None,
            )  # fmt: skip
    ax.axvline(
        100 * first.threshold,
        color="C3",
        linestyle="--",
        linewidth=1,
        label=f"paper: {100 * first.threshold:.0f}%",
    )
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels)
    title = f"One seed, as the paper computed it, against many\n{report.title}"
    decorate(ax, "repetition share of the gain (%)", "", title, legend=False)
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2)
    return fig


def fig_share_trajectory(report: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """The repetition share at each of the last evaluated epochs, from that epoch's arm means, with
    its delta-method 95% band: one line per design (plots.plot_trajectory)."""
    t = report.trajectory.copy()
    orders, controls = t["group_order"].nunique() > 1, t["repeat_structure"].nunique() > 1
    t["line"] = [Design.of(row).short(orders, controls) for _, row in t.iterrows()]
    ax = plot_trajectory(t, ax)
    ax.set_title(f"The share over the last epochs (shaded: the stability window)\n{report.title}")
    last = int(t["epoch"].max())
    ax.axvspan(stats.window_start(last), last, color="0.9", zorder=0)
    return ax.figure


def drawable(name: str, report: StudyReport) -> bool:
    """Whether figure `name` has what it draws: learning curves a history, the single-seed figure
    its shares, the parameter and size figures counts (a runs table of your own may have none)."""
    needs = {"error_vs_params": ("n_params",), "physical_size": ("n_params", "macs")}.get(name, ())
    if any(report.runs[column].isna().all() for column in needs):
        return False
    if name == "share_trajectory":
        return report.trajectory is not None and not report.trajectory.empty
    if name == "sharing_or_symmetry":
        return (
            report.table is not None
            and "share_struct" in report.table
            and report.table["share_struct"].notna().any()
        )
    if name == "invariance":
        return report.invariance is not None and report.invariance[["exact", "any"]].notna().any().any()
    return not (
        (name == "learning_curves" and report.history.empty)
        or (name == "single_seed" and not report.single_seed)
    )


FIGURES = {
    "error_vs_params": fig_error_vs_params,
    "gain_decomposition": fig_gain_decomposition,
    "learning_curves": fig_learning_curves,
    "physical_size": fig_physical_size,
    "invariance": fig_invariance,
    "share_vs_group_order": fig_share_vs_group_order,
    "single_seed": fig_single_seed,
    "sharing_or_symmetry": fig_sharing_or_symmetry,
    "share_trajectory": fig_share_trajectory,
}
