"""Plots of plain tables, each on an optional `ax` and returning it (rliable's habit): the
repetition share with its intervals (a forest plot) and the gain split, from `stats.decompose`'s
table or from rows of `stats.share_interval`, so your own runs draw as ablate's do; and the helpers
every figure of the report shares (look, axes, labels, saving)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablate.models.arms import ARM_COLOURS  # noqa: E402

DPI = 200
SHARE_METHODS = (
    ("delta", "delta method", 0.0, 3),
    ("fieller", "Fieller", -0.2, 4),
    ("boot", "bootstrap", 0.2, 7),
)


def use_theme() -> None:
    """The report's seaborn look (paper context, white grid, colour-blind palette)."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")


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


def _labels(table: pd.DataFrame, labels: Sequence[str] | None) -> list[str]:
    """Row labels: given, else the table's `design` column, else 1, 2, ..."""
    if labels is not None:
        return list(labels)
    return list(table["design"]) if "design" in table else [str(i + 1) for i in range(len(table))]


def plot_gains(table: pd.DataFrame | Sequence[dict], ax: plt.Axes | None = None, labels=None) -> plt.Axes:
    """Grouped bars per row (a design, or one share_interval result each): the repetition gain
    (plain - repeat), the equivariance gain (repeat - G-CNN) and the total (plain - G-CNN), from
    the columns gain_rep, gain_eq and gain_total (fractions: drawn in points). Returns the Axes."""
    t = pd.DataFrame(table)
    _, ax = axes(ax, (5, 4))
    pos, width = np.arange(len(t)), 0.27
    parts = [
        ("gain_rep", "repetition (plain − repeat)", ARM_COLOURS["repeat"]),
        ("gain_eq", "equivariance (repeat − G-CNN)", ARM_COLOURS["gcnn"]),
        ("gain_total", "total (plain − G-CNN)", "0.35"),
    ]
    for offset, (column, label, colour) in zip((-width, 0.0, width), parts):
        ax.bar(pos + offset, 100 * t[column].astype(float), width=width, color=colour, label=label)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(pos, _labels(t, labels))
    decorate(ax, "design", "gain in test error (percentage points)", "Gain split (scale: points)")
    return ax


SHARE_METHODS = (
    ("delta", "delta method", 0.0, 3),
    ("fieller", "Fieller", -0.2, 4),
    ("boot", "bootstrap", 0.2, 7),
)


def plot_shares(
    table: pd.DataFrame | Sequence[dict], ax: plt.Axes | None = None, labels=None, pooled: dict | None = None
) -> plt.Axes:
    """Forest plot of the repetition share per row with each 95% interval the table has (delta
    method, Fieller, bootstrap: share_rep_lo_<method> / _hi_<method>); rows whose `identifiable` is
    False are labelled so. pooled: a share with share_rep, share_rep_lo and share_rep_hi, drawn
    as a line and band. Shares are fractions, drawn in %. Returns the Axes."""
    t = pd.DataFrame(table).reset_index(drop=True)
    _, ax = axes(ax, (5, 1.5 + 0.5 * len(t)))
    pos = np.arange(len(t))
    identifiable = t["identifiable"].to_numpy(dtype=bool) if "identifiable" in t else np.ones(len(t), bool)
    for method, label, offset, colour in SHARE_METHODS:
        if f"share_rep_lo_{method}" not in t:
            continue
        lo_all = t[f"share_rep_lo_{method}"].astype(float)
        drawn = identifiable & np.isfinite(lo_all.to_numpy())
        if not drawn.any():  # e.g. the bootstrap below 10 seeds per arm
            continue
        has = t[drawn]
        share = has["share_rep"].astype(float)
        lo, hi = has[f"share_rep_lo_{method}"].clip(-1, 2), has[f"share_rep_hi_{method}"].clip(-1, 2)
        ax.errorbar(
            100 * share, pos[drawn] + offset, xerr=100 * np.vstack([share - lo, hi - share]).clip(min=0),
            fmt="o", capsize=3, label=f"95% CI, {label}", color=sns.color_palette("colorblind")[colour],
        )  # fmt: skip
    for i in pos[~identifiable]:  # x in axes fraction, y at the row
        ax.text(
            0.5,
            i,
            "not identifiable",
            transform=ax.get_yaxis_transform(),
            ha="center",
            va="center",
            fontsize=8,
        )
    if pooled is not None and pooled.get("identifiable", True):
        share = 100 * pooled["share_rep"]
        ax.axvline(share, color="black", linestyle="--", linewidth=1, label=f"pooled {share:.0f}%")
        ax.axvspan(100 * pooled["share_rep_lo"], 100 * pooled["share_rep_hi"], color="grey", alpha=0.15)
    ax.set_yticks(pos, _labels(t, labels), fontsize=7 if len(t) > 4 else None)
    ax.set_ylim(-0.5, len(t) - 0.5)  # every row, drawn or labelled only
    share_axis(ax, "x")
    decorate(ax, "repetition share of the gain (%)", "design", "Repetition share (forest plot)")
    return ax


def plot_trajectory(table: pd.DataFrame, ax: plt.Axes | None = None, label: str = "line") -> plt.Axes:
    """The share against epoch with its 95% band: one line per value of the `label` column (a
    design, or a ladder's step), from columns epoch, share, lo, hi (fractions, drawn in %), as
    stats.share_trajectory gives them. Returns the Axes."""
    _, ax = axes(ax, (6, 4))
    colours = sns.color_palette("colorblind", max(1, table[label].nunique()))
    for colour, (name, line) in zip(colours, table.groupby(label, sort=False)):
        line = line.sort_values("epoch")
        ax.plot(line["epoch"], 100 * line["share"], marker="o", markersize=3, color=colour, label=name)
        ax.fill_between(line["epoch"], 100 * line["lo"], 100 * line["hi"], color=colour, alpha=0.15)
    ax.axhline(0, color="grey", linewidth=0.8)
    share_axis(ax, "y")
    decorate(ax, "epoch", "repetition share (%)", "The share over the last epochs")
    return ax
