"""The figures of a study report. Each takes the study's numbers (a `StudyReport`) and an axis
(or axes) to draw on; without one it makes its own figure. Every function returns the figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablate import stats  # noqa: E402
from ablate.models.arms import ARM_COLOURS, DEFAULT_STRUCTURE, Design, Group, control_phrase  # noqa: E402

if TYPE_CHECKING:
    from ablate.report.analysis import StudyReport

DPI = 200
SHARE_METHODS = (
    ("delta", "delta method", 0.0, 3),
    ("fieller", "Fieller", -0.2, 4),
    ("boot", "bootstrap", 0.2, 7),
)


def use_theme() -> None:
    """The report's seaborn look (paper context, white grid, colour-blind palette)."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")


def palette(r: StudyReport) -> dict:
    """A colour per model variant of the study, in display order (seaborn's colour-blind palette)."""
    return dict(zip(r.variants, sns.color_palette("colorblind", len(r.variants))))


def axes(ax: plt.Axes | None, figsize: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    """(figure, axis): the given axis and its figure, or a new figure of `figsize` inches."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def decorate(ax: plt.Axes, xlabel: str, ylabel: str, title: str, log: str = "", legend: bool = True) -> None:
    """Labels, title, log scales ("x", "y" or "xy") and a frameless legend: one look for all figures."""
    if "x" in log:
        ax.set_xscale("log")
    if "y" in log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=8)


def share_axis(ax: plt.Axes, axis: str = "x", span: float = 10.0) -> None:
    """Widen a share axis (in %) to at least `span` points about its middle: a share with a
    zero-width interval otherwise leaves matplotlib a range of 1e-16 around it, on which a label
    or margin lands 1e17 axis widths away."""
    lo, hi = getattr(ax, f"get_{axis}lim")()
    if hi - lo < span:
        middle = (lo + hi) / 2
        getattr(ax, f"set_{axis}lim")(middle - span / 2, middle + span / 2)


def no_table(ax: plt.Axes) -> None:
    """In place of a plot that needs the decomposition table: why there is none."""
    ax.text(0.5, 0.5, "needs at least two ok seeds per arm", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def save(fig: plt.Figure, out: Path, name: str, formats: Sequence[str]) -> list[Path]:
    """Write `fig` as out/name.<fmt> for each format (PDFs without a date: same input, same bytes)."""
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def fig_error_vs_params(r: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """Test error (%) against learnable parameters: per model variant the mean with its t-interval,
    and the seeds."""
    fig, ax = axes(ax, (6, 4))
    ok = r.runs[r.runs["status"] == "ok"]
    params = ok.groupby(["budget", "variant"])["n_params"].mean()
    colours = palette(r)
    for i, variant in enumerate(r.variants):
        jitter = 1 + 0.03 * (i - (len(r.variants) - 1) / 2)
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
        s = r.summary[r.summary["variant"] == variant].sort_values("budget")
        x = np.array([params[(b, variant)] for b in s["budget"]]) * jitter
        err = 100 * np.vstack([s["mean"] - s["lo"], s["hi"] - s["mean"]]).clip(min=0)
        ax.errorbar(
            x, 100 * s["mean"], yerr=np.nan_to_num(err), color=colour, marker="o", capsize=3, label=variant
        )
    title = f"Test error at equal parameters\n{r.title}; mean and 95% t-interval, dots = seeds"
    decorate(ax, "learnable parameters", "test error (%)", title, log="x")
    return fig


def _gain_bars(t: pd.DataFrame, ax: plt.Axes) -> None:
    """Grouped bars per budget: repetition, equivariance and total gain (points)."""
    pos, width = np.arange(len(t)), 0.27
    parts = [
        ("gain_rep", "repetition (plain − repeat)", ARM_COLOURS["repeat"]),
        ("gain_eq", "equivariance (repeat − G-CNN)", ARM_COLOURS["gcnn"]),
        ("gain_total", "total (plain − G-CNN)", "0.35"),
    ]
    for offset, (column, label, colour) in zip((-width, 0.0, width), parts):
        ax.bar(pos + offset, 100 * t[column], width=width, color=colour, label=label)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(pos, [f"{int(b):,}" for b in t["budget"]])
    decorate(
        ax,
        "parameter budget",
        "gain in test error (percentage points)",
        "Gain split by budget (scale: points)",
    )


def _share_forest(r: StudyReport, t: pd.DataFrame, ax: plt.Axes) -> None:
    """Forest plot of the repetition share per budget with its three intervals and the pooled share."""
    pos = np.arange(len(t))
    identifiable = t["identifiable"].to_numpy(dtype=bool)
    shown = t[identifiable]
    for method, label, offset, colour in SHARE_METHODS:
        has = shown[np.isfinite(shown[f"share_rep_lo_{method}"].astype(float))]
        if has.empty:  # e.g. the bootstrap below 10 seeds per arm
            continue
        lo = has[f"share_rep_lo_{method}"].clip(-1, 2)
        hi = has[f"share_rep_hi_{method}"].clip(-1, 2)
        ax.errorbar(
            100 * has["share_rep"],
            pos[identifiable][np.isfinite(shown[f"share_rep_lo_{method}"].astype(float)).to_numpy()] + offset,
            xerr=100 * np.vstack([has["share_rep"] - lo, hi - has["share_rep"]]).clip(min=0),
            fmt="o",
            capsize=3,
            label=f"95% CI, {label}",
            color=sns.color_palette("colorblind")[colour],
        )
    for i in pos[~identifiable]:  # x in axes fraction, y at the budget's row
        ax.text(
            0.5,
            i,
            "not identifiable",
            transform=ax.get_yaxis_transform(),
            ha="center",
            va="center",
            fontsize=8,
        )
    if r.pooled is not None and r.pooled.iloc[0]["identifiable"]:
        p = r.pooled.iloc[0]
        ax.axvline(
            100 * p["share_rep"],
            color="black",
            linestyle="--",
            linewidth=1,
            label=f"pooled {100 * p['share_rep']:.0f}%",
        )
        ax.axvspan(100 * p["share_rep_lo"], 100 * p["share_rep_hi"], color="grey", alpha=0.15)
    ax.set_yticks(pos, t["design"], fontsize=7 if len(t) > 4 else None)
    ax.set_ylim(-0.5, len(t) - 0.5)  # every row, drawn or labelled only
    share_axis(ax, "x")
    decorate(ax, "repetition share of the gain (%)", "parameter budget", "Repetition share (forest plot)")


def fig_gain_decomposition(r: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Left: the gains per budget; right: the repetition share with its intervals. axes: (left, right)."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    left, right = axes
    if r.table is None:
        for ax in (left, right):
            no_table(ax)
    else:
        t = r.table.sort_values("budget")
        _gain_bars(t, left)
        _share_forest(r, t, right)
    fig.suptitle(f"How much of the G-CNN's gain is repetition? — {r.title}")
    fig.tight_layout()
    return fig


def _mark_convergence(r: StudyReport, budget, ax: plt.Axes) -> None:
    """Shade the window the convergence check looks at; name the cells it flags."""
    last = r.history.loc[r.history["budget"] == budget, "epoch"].max()
    ax.axvspan(stats.window_start(last), last, color="0.9", zorder=0)
    if r.convergence is None:
        return
    conv = r.convergence
    flagged = conv[(conv["budget"] == budget) & conv["unconverged"]]
    if len(flagged):
        cells = int((conv["budget"] == budget).sum())
        names = "\n".join(flagged["variant"]) if len(flagged) <= 3 else f"{len(flagged)} of {cells} models"
        note = f"not shown converged (shaded window):\n{names}"
        ax.text(0.98, 0.98, note, transform=ax.transAxes, ha="right", va="top", fontsize=6, color="C3")


def fig_learning_curves(r: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Train and test error (%) per epoch, mean and 95% CI over seeds; one axis per budget. The
    convergence check's window is shaded and the cells it flags are named."""
    h = r.history
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
            hue_order=r.variants,
            palette=palette(r),
            style="split",
            style_order=["train", "test"],
            errorbar=("ci", 95),
            seed=0,
            ax=ax,
            legend=i == len(budgets) - 1,
        )
        decorate(ax, "epoch", "error (%)", f"budget {int(budget):,}", legend=i == len(budgets) - 1)
        _mark_convergence(r, budget, ax)
        if i == len(budgets) - 1:  # beside the plots: the convergence note sits in their corner
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1), fontsize=7, title_fontsize=7)
    fig.suptitle(f"Learning curves (mean, 95% CI over seeds) — {r.title}")
    fig.tight_layout()
    return fig


def fig_physical_size(r: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """Multiply-accumulates per image against learnable parameters, per model variant (log-log)."""
    fig, ax = axes(ax, (6, 4))
    cells = r.runs.groupby(["budget", "variant"], as_index=False)[["n_params", "macs"]].mean()
    for variant in r.variants:
        c = cells[cells["variant"] == variant].sort_values("budget")
        ax.plot(c["n_params"], c["macs"], marker="o", color=palette(r)[variant], label=variant)
    title = f"Same parameters, larger network\n{r.title}"
    decorate(ax, "learnable parameters", "multiply–accumulates per image", title, log="xy")
    return fig


INVARIANCE = {"invariance_error": "a 90° turn", "invariance_error_any": "a turn by a random angle"}


def fig_invariance(r: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Share of test predictions changed (%) by a 90-degree turn and, where recorded, by a turn by
    a random angle (the same angles for every run), per budget and model variant. axes: one per kind."""
    ok = r.runs[r.runs["status"] == "ok"]
    kinds = [k for k in INVARIANCE if k in ok and ok[k].notna().any()]
    if axes is None:
        fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    for kind, ax in zip(kinds, axes):
        data = ok.assign(inv=100 * ok[kind])
        common = {"data": data, "x": "budget", "y": "inv", "hue": "variant", "hue_order": r.variants}
        common.update(palette=palette(r), ax=ax)
        sns.barplot(**common, errorbar=None, alpha=0.8)
        sns.stripplot(
            **common, dodge=True, jitter=False, size=3, legend=False, edgecolor="black", linewidth=0.3
        )
        title = f"Invariance to {INVARIANCE[kind]} (bars: mean, dots: seeds)"
        decorate(
            ax, "parameter budget", f"predictions changed by {INVARIANCE[kind]} (%)", title, legend=False
        )
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles[: len(r.variants)], r.variants, frameon=False, fontsize=7)
    fig.suptitle(r.title)
    fig.tight_layout()
    return fig


def fig_share_vs_group_order(r: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """The repetition share (delta-method 95% CI) against N of C_N: one line per budget and repeat
    structure (the control's sensitivity to N and to the choice of control)."""
    fig, ax = axes(ax, (6, 4))
    if r.table is None:
        no_table(ax)
        return fig
    t = r.table[r.table["identifiable"].astype(bool)]
    lines = t.groupby(["budget", "repeat_structure"], sort=True)
    colours = sns.color_palette("colorblind", max(1, lines.ngroups))
    for i, ((budget, structure), line) in enumerate(lines):
        line = line.sort_values("group_order")
        x = line["group_order"] * (1 + 0.02 * (i - (lines.ngroups - 1) / 2))
        err = 100 * np.vstack(
            [line["share_rep"] - line["share_rep_lo_delta"], line["share_rep_hi_delta"] - line["share_rep"]]
        )
        style = {"color": colours[i], "linestyle": "-" if structure == DEFAULT_STRUCTURE else "--"}
        label = f"budget {int(budget):,}, {control_phrase(structure)}"
        ax.errorbar(
            x, 100 * line["share_rep"], yerr=err.clip(min=0), marker="o", capsize=3, label=label, **style
        )
    ax.axhline(0, color="grey", linewidth=0.8)
    share_axis(ax, "y")
    ax.set_xscale("log", base=2)
    orders = sorted(r.table["group_order"].unique())
    ax.set_xticks(orders, [Group(r.group, n).label for n in orders])
    decorate(
        ax,
        f"group order N of {r.group}_N",
        "repetition share of the gain (%)",
        f"Repetition share by group order\n{r.title}",
    )
    return fig


def fig_single_seed(r: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """One seed's share as the paper computed it (dots: one per seed; filled best-epoch, hollow
    final-epoch errors; the largest over N) against the multi-seed share and its delta-method
    95% CI per N (bars), one row per budget and control; the paper's 40% as a line."""
    fig, ax = axes(ax, (7, 1.2 + 0.7 * len(next(iter(r.single_seed.values())).summary)))
    first = next(iter(r.single_seed.values()))
    designs = first.summary[["budget", "repeat_structure"]].itertuples(index=False)
    labels = []
    for y, (budget, structure) in enumerate(designs):
        labels.append(Design(budget, None, structure or DEFAULT_STRUCTURE).label)
        for error, shares in r.single_seed.items():
            seeds = shares.per_seed
            mine = seeds[(seeds["budget"] == budget) & (seeds["repeat_structure"] == structure)]
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
        rows = r.table[(r.table["budget"] == budget) & (r.table["repeat_structure"] == structure)]
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
    title = f"One seed, as the paper computed it, against many\n{r.title}"
    decorate(ax, "repetition share of the gain (%)", "", title, legend=False)
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2)
    return fig


FIGURES = {
    "error_vs_params": fig_error_vs_params,
    "gain_decomposition": fig_gain_decomposition,
    "learning_curves": fig_learning_curves,
    "physical_size": fig_physical_size,
    "invariance": fig_invariance,
    "share_vs_group_order": fig_share_vs_group_order,
    "single_seed": fig_single_seed,
}
