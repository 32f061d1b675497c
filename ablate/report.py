"""`python -m ablate.report`: figures and tables from results/<study>/ into paper_figs/<study>/.

Reads results through ablate.results and numbers through ablate.stats; this module only
arranges them into figures (seaborn) and tables (Markdown, LaTeX).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ablate import stats  # noqa: E402
from ablate._compat import tomllib  # noqa: E402
from ablate.errors import AblateError, ResultsError  # noqa: E402
from ablate.results import StudyResults, read_history, read_runs, study_dirs  # noqa: E402

ARMS = list(stats.ARMS)
ARM_LABELS = {"plain": "plain CNN", "repeat": "learnable repetition", "gcnn": "G-CNN"}
PALETTE = dict(zip(ARMS, sns.color_palette("colorblind", 3)))
DPI = 200
DATASET_LABELS = {"mnist-rot": "MNIST-rot", "mnist": "rotated MNIST (torchvision)",
                  "embedded": "rotated MNIST, 5k embedded digits"}
FIGURES = ("error_vs_params", "gain_decomposition", "learning_curves", "physical_size", "invariance")


@dataclass
class StudyReport:
    """Everything the figures and tables of one study need."""

    name: str
    runs: pd.DataFrame
    history: pd.DataFrame
    dataset: str
    group_order: int
    summary: pd.DataFrame  # stats.arm_summary
    table: pd.DataFrame | None  # stats.decompose over the budgets with >= 2 ok seeds per arm
    pooled: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)

    @property
    def n_seeds(self) -> str:
        counts = self.summary["n"]
        return str(int(counts.min())) if counts.min() == counts.max() else f"{int(counts.min())}–{int(counts.max())}"

    @property
    def title(self) -> str:
        return f"{self.dataset} · C{self.group_order} · {self.n_seeds} seeds per arm"


def _expected_grid(directory: Path) -> set[tuple[int, str, int]] | None:
    path = directory / "study.toml"
    if not path.exists():
        return None
    try:
        study = tomllib.loads(path.read_text())
        return {(int(b), a, int(s)) for b in study["models"]["budgets"] for a in study["models"]["arms"]
                for s in study["train"]["seeds"]}
    except (KeyError, TypeError, ValueError, tomllib.TOMLDecodeError):
        return None


def analyse(directory: Path, n_boot: int = 2000, n_perm: int = 5000) -> StudyReport:
    """Read one study's results and compute its statistics, noting what is missing or too thin."""
    store = StudyResults(directory.parent, directory.name)
    runs, history = read_runs(store.runs_path), read_history(store.history_path)
    if runs.empty:
        raise ResultsError(f"{store.runs_path}: no finished runs yet")
    notes: list[str] = []
    unknown = sorted(set(runs["arm"]) - set(ARMS))
    if unknown:
        raise ResultsError(f"{store.runs_path}: expected arms {', '.join(ARMS)}, found {', '.join(map(str, unknown))}")
    expected = _expected_grid(directory)
    if expected is not None:
        present = set(zip(runs["budget"].astype(int), runs["arm"], runs["seed"].astype(int)))
        missing = sorted(expected - present)
        if missing:
            shown = ", ".join(f"{a} budget {b} seed {s}" for b, a, s in missing[:8])
            more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            notes.append(f"{len(missing)} runs of the study are missing: {shown}{more}")
    diverged = int((runs["status"] != "ok").sum())
    if diverged:
        notes.append(f"{diverged} runs did not finish ok (diverged) and are left out of the statistics")
    summary = stats.arm_summary(runs)
    counts = summary.pivot(index="budget", columns="arm", values="n").reindex(columns=ARMS)
    complete = counts.index[(counts.fillna(0) >= 2).all(axis=1)].tolist()
    thin = [b for b in counts.index if b not in complete]
    if thin:
        notes.append("intervals and tests need at least two ok seeds of every arm; point estimates only "
                     f"for budget{'s' if len(thin) > 1 else ''} {', '.join(f'{int(b):,}' for b in thin)}")
    table = pooled_row = None
    if complete:
        subset = runs[runs["budget"].isin(complete)]
        table = stats.decompose(subset, n_boot=n_boot, n_perm=n_perm)
        try:
            pooled_row = stats.pooled(subset, by_budget_trend=len(complete) > 1)
        except ValueError as error:
            notes.append(f"no pooled estimate: {error}")
    gcnn = runs.loc[runs["arm"] == "gcnn", "group_order"]
    group_order = int(gcnn.iloc[0]) if len(gcnn) else 4
    source = str(runs["dataset"].iloc[0]) if "dataset" in runs else "unknown data"
    dataset = DATASET_LABELS.get(source, source)
    return StudyReport(directory.name, runs, history, dataset, group_order, summary, table, pooled_row, notes)


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------

def _save(fig: plt.Figure, out: Path, name: str, formats: Sequence[str]) -> list[Path]:
    paths = []
    for fmt in formats:
        path = out / f"{name}.{fmt}"
        metadata = {"CreationDate": None} if fmt == "pdf" else None  # same input, same bytes
        fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths


def fig_error_vs_params(r: StudyReport) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    ok = r.runs[r.runs["status"] == "ok"]
    params = ok.groupby(["budget", "arm"])["n_params"].mean()
    jitter = {"plain": 0.97, "repeat": 1.0, "gcnn": 1.03}
    for arm in ARMS:
        seeds = ok[ok["arm"] == arm]
        ax.scatter(seeds["n_params"] * jitter[arm], 100 * seeds["test_error"], s=12, alpha=0.45,
                   color=PALETTE[arm], linewidths=0)
        s = r.summary[r.summary["arm"] == arm].sort_values("budget")
        x = np.array([params[(b, arm)] for b in s["budget"]]) * jitter[arm]
        err = 100 * np.vstack([s["mean"] - s["lo"], s["hi"] - s["mean"]]).clip(min=0)
        ax.errorbar(x, 100 * s["mean"], yerr=np.nan_to_num(err), color=PALETTE[arm], marker="o",
                    capsize=3, label=ARM_LABELS[arm])
    ax.set_xscale("log")
    ax.set_xlabel("learnable parameters")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"Test error at equal parameters\n{r.title}; mean and 95% t-interval, dots = seeds")
    ax.legend(frameon=False)
    return fig


def fig_gain_decomposition(r: StudyReport) -> plt.Figure:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if r.table is None:
        for ax in (left, right):
            ax.text(0.5, 0.5, "needs at least two ok seeds per arm", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
        fig.suptitle(f"Gain decomposition — {r.title}")
        return fig
    t = r.table.sort_values("budget")
    labels = [f"{int(b):,}" for b in t["budget"]]
    pos = np.arange(len(t))
    width = 0.27
    parts = [("gain_rep", "repetition (plain − repeat)", PALETTE["repeat"]),
             ("gain_eq", "equivariance (repeat − G-CNN)", PALETTE["gcnn"]),
             ("gain_total", "total (plain − G-CNN)", "0.35")]
    for offset, (column, label, colour) in zip((-width, 0.0, width), parts):
        left.bar(pos + offset, 100 * t[column], width=width, color=colour, label=label)
    left.axhline(0, color="grey", linewidth=0.8)
    left.set_xticks(pos, labels)
    left.set_xlabel("parameter budget")
    left.set_ylabel("gain in test error (percentage points)")
    left.set_title("Gain split by budget")
    left.legend(frameon=False, fontsize=8)
    methods = [("delta", "delta method", 0.0), ("fieller", "Fieller", -0.2), ("boot", "bootstrap", 0.2)]
    for method, label, offset in methods:
        shown = t[t["identifiable"]]
        y = pos[t["identifiable"].to_numpy()] + offset
        lo = shown[f"share_rep_lo_{method}"].clip(-1, 2)
        hi = shown[f"share_rep_hi_{method}"].clip(-1, 2)
        right.errorbar(100 * shown["share_rep"], y,
                       xerr=100 * np.vstack([shown["share_rep"] - lo, hi - shown["share_rep"]]).clip(min=0),
                       fmt="o", capsize=3, label=f"95% CI, {label}",
                       color=sns.color_palette("colorblind")[{"delta": 3, "fieller": 4, "boot": 7}[method]])
    for i in pos[~t["identifiable"].to_numpy()]:
        right.text(50, i, "not identifiable", ha="center", va="center", fontsize=8)
    if r.pooled is not None and r.pooled.iloc[0]["identifiable"]:
        p = r.pooled.iloc[0]
        right.axvline(100 * p["share_rep"], color="black", linestyle="--", linewidth=1,
                      label=f"pooled {100 * p['share_rep']:.0f}%")
        right.axvspan(100 * p["share_rep_lo"], 100 * p["share_rep_hi"], color="grey", alpha=0.15)
    right.set_yticks(pos, labels)
    right.set_ylabel("parameter budget")
    right.set_xlabel("repetition share of the gain (%)")
    right.set_title("Repetition share (forest plot)")
    right.legend(frameon=False, fontsize=8)
    fig.suptitle(f"How much of the G-CNN's gain is repetition? — {r.title}")
    fig.tight_layout()
    return fig


def fig_learning_curves(r: StudyReport) -> plt.Figure:
    h = r.history.copy()
    long = pd.concat([
        h.assign(split="train", error=100 * h["train_error"]),
        h.dropna(subset=["test_error"]).assign(split="test", error=lambda d: 100 * d["test_error"]),
    ])
    grid = sns.relplot(data=long, x="epoch", y="error", hue="arm", hue_order=ARMS, palette=PALETTE,
                       style="split", style_order=["train", "test"], col="budget", kind="line",
                       errorbar=("ci", 95), seed=0, height=3.2, aspect=1.1, facet_kws={"sharey": False})
    grid.set_axis_labels("epoch", "error (%)")
    grid.set_titles("budget {col_name}")
    grid.figure.suptitle(f"Learning curves (mean, 95% CI over seeds) — {r.title}", y=1.04)
    return grid.figure


def fig_physical_size(r: StudyReport) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    cells = r.runs.groupby(["budget", "arm"], as_index=False)[["n_params", "macs"]].mean()
    for arm in ARMS:
        c = cells[cells["arm"] == arm].sort_values("budget")
        ax.plot(c["n_params"], c["macs"], marker="o", color=PALETTE[arm], label=ARM_LABELS[arm])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learnable parameters")
    ax.set_ylabel("multiply–accumulates per image")
    ax.set_title(f"Same parameters, larger network\n{r.title}")
    ax.legend(frameon=False)
    return fig


def fig_invariance(r: StudyReport) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 4))
    ok = r.runs[r.runs["status"] == "ok"].assign(inv=lambda d: 100 * d["invariance_error"])
    sns.barplot(data=ok, x="budget", y="inv", hue="arm", hue_order=ARMS, palette=PALETTE,
                errorbar=None, ax=ax, alpha=0.8)
    sns.stripplot(data=ok, x="budget", y="inv", hue="arm", hue_order=ARMS, palette=PALETTE,
                  dodge=True, jitter=False, ax=ax, size=3, legend=False, edgecolor="black", linewidth=0.3)
    ax.set_xlabel("parameter budget")
    ax.set_ylabel("predictions changed by a 90° turn (%)")
    ax.set_title(f"Invariance error (bars: mean, dots: seeds)\n{r.title}")
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles[:3], [ARM_LABELS[a] for a in ARMS], frameon=False)
    return fig


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def _pct(x: float, digits: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def _p(x: float) -> str:
    return "–" if not np.isfinite(x) else (f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}")


def _share_cell(row: pd.Series, method: str) -> str:
    kind = row.get("fieller_kind", "bounded") if method == "fieller" else "bounded"
    return stats.format_interval(row[f"share_rep_lo_{method}"], row[f"share_rep_hi_{method}"], kind)


def arm_rows(r: StudyReport) -> list[list[str]]:
    cells = r.runs.groupby(["budget", "arm"])[["n_params", "macs"]].mean()
    rows = []
    for _, s in r.summary.sort_values(["budget", "arm"], key=lambda c: c.map(ARMS.index) if c.name == "arm" else c).iterrows():
        n_params, macs = cells.loc[(s["budget"], s["arm"])]
        spread = f" ± {_pct(s['sd'])}" if np.isfinite(s["sd"]) else ""
        rows.append([f"{int(s['budget']):,}", s["arm"], f"{int(n_params):,}", f"{int(macs):,}",
                     f"{_pct(s['mean'])}{spread} ({int(s['n'])})"])
    return rows


def share_rows(r: StudyReport) -> list[list[str]]:
    if r.table is None:
        return []
    rows = []
    for _, t in r.table.sort_values("budget").iterrows():
        if t["identifiable"]:
            share = [_pct(t["share_rep"], 1), _share_cell(t, "delta"), _share_cell(t, "fieller"),
                     f"{_share_cell(t, 'boot')} ({t['boot_method']})"]
        else:
            share = ["not identifiable", "–", "–", "–"]
        rows.append([f"{int(t['budget']):,}", _pct(t["gain_total"]), _pct(t["gain_rep"]), _pct(t["gain_eq"]),
                     *share, _p(t["p_total"]), _p(t["p_rep"]), _p(t["p_eq"])])
    return rows


ARM_HEADER = ["budget", "arm", "params", "MACs", "test error % mean ± sd (n)"]
SHARE_HEADER = ["budget", "gain total (pts)", "gain rep (pts)", "gain eq (pts)", "repetition share %",
                "95% CI delta", "95% CI Fieller", "95% CI bootstrap", "p total", "p rep", "p eq"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def latex_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(text: str) -> str:
        return (text.replace("\\", r"\textbackslash{}").replace("%", r"\%").replace("±", r"$\pm$")
                .replace("–", "--").replace("_", r"\_").replace("&", r"\&").replace("U", r"$\cup$")
                .replace("inf", r"$\infty$"))

    lines = [r"\begin{tabular}{" + "l" * len(header) + "}", r"\toprule",
             " & ".join(esc(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(esc(c) for c in row) + r" \\" for row in rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])


def headline(r: StudyReport) -> str:
    if r.table is None:
        return ("The repetition share cannot be estimated yet: intervals and tests need at least two "
                "ok seeds of every arm at some budget.")
    return stats.headline_sentence(r.table, r.group_order, r.dataset)


def write_tables(r: StudyReport, out: Path) -> list[Path]:
    head = headline(r)
    notes = "".join(f"\n- {n}" for n in r.notes)
    md = [f"# {r.name}: {r.title}", "", head, "", "## Test error per arm", "",
          markdown_table(ARM_HEADER, arm_rows(r))]
    tex = [f"% {r.name}: {r.title}", f"% {head}", latex_table(ARM_HEADER, arm_rows(r))]
    if r.table is not None:
        md += ["", "## Repetition share of the G-CNN's gain", "",
               "Gains in percentage points of test error; p-values one-sided (gain > 0), Welch t-tests, "
               "Holm-adjusted over all budgets and gains. Fieller sets that are not one interval are "
               "spelled out.", "", markdown_table(SHARE_HEADER, share_rows(r))]
        tex += ["", latex_table(SHARE_HEADER, share_rows(r))]
    if r.pooled is not None and r.pooled.iloc[0]["identifiable"]:
        p = r.pooled.iloc[0]
        md += ["", f"Pooled over budgets (OLS with budget effects, seed-clustered errors): repetition "
               f"share {_pct(p['share_rep'], 1)}% (95% CI {_pct(p['share_rep_lo'], 1)} to "
               f"{_pct(p['share_rep_hi'], 1)}%)."]
    if notes:
        md += ["", "## Notes", notes.lstrip("\n")]
    paths = [out / "table.md", out / "table.tex"]
    paths[0].write_text("\n".join(md) + "\n")
    paths[1].write_text("\n".join(tex) + "\n")
    return paths


def build_report(r: StudyReport, out_root: Path, formats: Sequence[str]) -> list[Path]:
    """Write every figure and table of one study into out_root/<study>/; returns the paths."""
    out = out_root / r.name
    out.mkdir(parents=True, exist_ok=True)
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")
    makers = {"error_vs_params": fig_error_vs_params, "gain_decomposition": fig_gain_decomposition,
              "learning_curves": fig_learning_curves, "physical_size": fig_physical_size,
              "invariance": fig_invariance}
    paths = []
    for name in FIGURES:
        if name == "learning_curves" and r.history.empty:
            r.notes.append("history.csv is empty: no learning curves")
            continue
        paths += _save(makers[name](r), out, name, formats)
    return paths + write_tables(r, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ablate.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--study", help="only this study (a folder under the results root)")
    parser.add_argument("--out", default="paper_figs", help="output root (default: paper_figs)")
    parser.add_argument("--format", default="png,pdf", help="comma-separated figure formats (png, pdf, svg)")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "pdf", "svg")]
    try:
        if bad or not formats:
            raise ResultsError(f"--format: expected a comma-separated list of png, pdf, svg, found {args.format!r}")
        root = Path(args.results)
        if args.study:
            directories = [root / args.study]
            if not (root / args.study / "runs.csv").exists():
                raise ResultsError(f"{root / args.study / 'runs.csv'}: not found; run "
                                   f"`python -m ablate.run STUDY.toml` first")
        else:
            directories = study_dirs(root)
            if not directories:
                raise ResultsError(f"{root}: no results found (no */runs.csv); run "
                                   f"`python -m ablate.run STUDY.toml` first")
        for directory in directories:
            report = analyse(directory)
            paths = build_report(report, Path(args.out), formats)
            print(f"== {report.name}: {report.title}")
            if report.table is not None:
                print(stats.format_summary(report.table, report.pooled, report.group_order, report.dataset))
            else:
                print(headline(report))
            for note in report.notes:
                print(f"note: {note}")
            print(f"wrote {len(paths)} files to {Path(args.out) / report.name}\n")
        return 0
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
