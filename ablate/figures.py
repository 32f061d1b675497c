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

from ablate.models.arms import ARMS  # noqa: E402

if TYPE_CHECKING:
    from ablate.report import StudyReport

ARM_LABELS = {"plain": "plain CNN", "repeat": "learnable repetition", "gcnn": "G-CNN"}
PALETTE = dict(zip(ARMS, sns.color_palette("colorblind", len(ARMS))))
DPI = 200
SHARE_METHODS = (
    ("delta", "delta method", 0.0, 3),
    ("fieller", "Fieller", -0.2, 4),
    ("boot", "bootstrap", 0.2, 7),
)


def use_theme() -> None:
    """The report's seaborn look (paper context, white grid, colour-blind palette)."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")


def _axes(ax: plt.Axes | None, figsize: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    """(figure, axis): the given axis and its figure, or a new figure of `figsize` inches."""
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _decorate(ax: plt.Axes, xlabel: str, ylabel: str, title: str, log: str = "", legend: bool = True) -> None:
    """Labels, title, log scales ("x", "y" or "xy") and a frameless legend: one look for all figures."""
    if "x" in log:
        ax.set_xscale("log")
    if "y" in log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if legend:
        ax.legend(frameon=False, fontsize=8)


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
    """Test error (%) against learnable parameters: per arm the mean with its t-interval, and the seeds."""
    fig, ax = _axes(ax, (6, 4))
    ok = r.runs[r.runs["status"] == "ok"]
    params = ok.groupby(["budget", "arm"])["n_params"].mean()
    jitter = {"plain": 0.97, "repeat": 1.0, "gcnn": 1.03}
    for arm in ARMS:
        seeds = ok[ok["arm"] == arm]
        ax.scatter(
            seeds["n_params"] * jitter[arm],
            100 * seeds["test_error"],
            s=12,
            alpha=0.45,
            color=PALETTE[arm],
            linewidths=0,
        )
        s = r.summary[r.summary["arm"] == arm].sort_values("budget")
        x = np.array([params[(b, arm)] for b in s["budget"]]) * jitter[arm]
        err = 100 * np.vstack([s["mean"] - s["lo"], s["hi"] - s["mean"]]).clip(min=0)
        ax.errorbar(
            x,
            100 * s["mean"],
            yerr=np.nan_to_num(err),
            color=PALETTE[arm],
            marker="o",
            capsize=3,
            label=ARM_LABELS[arm],
        )
    _decorate(
        ax,
        "learnable parameters",
        "test error (%)",
        f"Test error at equal parameters\n{r.title}; mean and 95% t-interval, dots = seeds",
        log="x",
    )
    return fig


def _gain_bars(t: pd.DataFrame, ax: plt.Axes) -> None:
    """Grouped bars per budget: repetition, equivariance and total gain (points)."""
    pos, width = np.arange(len(t)), 0.27
    parts = [
        ("gain_rep", "repetition (plain − repeat)", PALETTE["repeat"]),
        ("gain_eq", "equivariance (repeat − G-CNN)", PALETTE["gcnn"]),
        ("gain_total", "total (plain − G-CNN)", "0.35"),
    ]
    for offset, (column, label, colour) in zip((-width, 0.0, width), parts):
        ax.bar(pos + offset, 100 * t[column], width=width, color=colour, label=label)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(pos, [f"{int(b):,}" for b in t["budget"]])
    _decorate(
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
    for i in pos[~identifiable]:
        ax.text(50, i, "not identifiable", ha="center", va="center", fontsize=8)
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
    ax.set_yticks(pos, [f"{int(b):,}" for b in t["budget"]])
    _decorate(ax, "repetition share of the gain (%)", "parameter budget", "Repetition share (forest plot)")


def fig_gain_decomposition(r: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Left: the gains per budget; right: the repetition share with its intervals. axes: (left, right)."""
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    else:
        fig = axes[0].figure
    left, right = axes
    if r.table is None:
        for ax in (left, right):
            ax.text(
                0.5,
                0.5,
                "needs at least two ok seeds per arm",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
            ax.set_axis_off()
    else:
        t = r.table.sort_values("budget")
        _gain_bars(t, left)
        _share_forest(r, t, right)
    fig.suptitle(f"How much of the G-CNN's gain is repetition? — {r.title}")
    fig.tight_layout()
    return fig


def fig_learning_curves(r: StudyReport, axes: Sequence[plt.Axes] | None = None) -> plt.Figure:
    """Train and test error (%) per epoch, mean and 95% CI over seeds; one axis per budget."""
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
            hue="arm",
            hue_order=ARMS,
            palette=PALETTE,
            style="split",
            style_order=["train", "test"],
            errorbar=("ci", 95),
            seed=0,
            ax=ax,
            legend=i == len(budgets) - 1,
        )
        _decorate(ax, "epoch", "error (%)", f"budget {int(budget):,}", legend=i == len(budgets) - 1)
    fig.suptitle(f"Learning curves (mean, 95% CI over seeds) — {r.title}")
    fig.tight_layout()
    return fig


def fig_physical_size(r: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """Multiply-accumulates per image against learnable parameters, per arm (log-log)."""
    fig, ax = _axes(ax, (6, 4))
    cells = r.runs.groupby(["budget", "arm"], as_index=False)[["n_params", "macs"]].mean()
    for arm in ARMS:
        c = cells[cells["arm"] == arm].sort_values("budget")
        ax.plot(c["n_params"], c["macs"], marker="o", color=PALETTE[arm], label=ARM_LABELS[arm])
    _decorate(
        ax,
        "learnable parameters",
        "multiply–accumulates per image",
        f"Same parameters, larger network\n{r.title}",
        log="xy",
    )
    return fig


def fig_invariance(r: StudyReport, ax: plt.Axes | None = None) -> plt.Figure:
    """Share of test predictions changed by a 90-degree turn (%), per budget and arm."""
    fig, ax = _axes(ax, (6, 4))
    ok = r.runs[r.runs["status"] == "ok"].assign(inv=lambda d: 100 * d["invariance_error"])
    common = {
        "data": ok,
        "x": "budget",
        "y": "inv",
        "hue": "arm",
        "hue_order": ARMS,
        "palette": PALETTE,
        "ax": ax,
    }
    sns.barplot(**common, errorbar=None, alpha=0.8)
    sns.stripplot(**common, dodge=True, jitter=False, size=3, legend=False, edgecolor="black", linewidth=0.3)
    _decorate(
        ax,
        "parameter budget",
        "predictions changed by a 90° turn (%)",
        f"Invariance error (bars: mean, dots: seeds)\n{r.title}",
        legend=False,
    )
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles[: len(ARMS)], [ARM_LABELS[a] for a in ARMS], frameon=False)
    return fig


FIGURES = {
    "error_vs_params": fig_error_vs_params,
    "gain_decomposition": fig_gain_decomposition,
    "learning_curves": fig_learning_curves,
    "physical_size": fig_physical_size,
    "invariance": fig_invariance,
}
