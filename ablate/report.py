"""`python -m ablate.report`: figures and tables from results/<study>/ into paper_figs/<study>/.

Reads results through ablate.results, numbers through ablate.stats, sentences through
ablate.text and draws with ablate.figures; this module arranges them into a report and tables
(Markdown, LaTeX).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import seaborn as sns

from ablate import stats, text
from ablate.errors import AblateError, ResultsError
from ablate.figures import ARM_LABELS, FIGURES, save, use_theme
from ablate.models.arms import ARMS
from ablate.results import StudyResults, study_dirs
from ablate.study import expand_grid
from ablate.tables import headline_text, write_tables

HALF_WIDTHS = (0.10, 0.05)  # seeds_needed is reported for these half-widths of the share interval
DATASET_LABELS = {
    "mnist-rot": "MNIST-rot",
    "mnist": "rotated MNIST (torchvision)",
    "embedded": "rotated MNIST, 5k embedded digits",
}


PAPER_ORDER = ["baseline", "c4", "c4_rep", "c8", "c8_rep", "c16", "c16_rep"]
PAPER_SEED = 42  # the one seed of the seed paper's runs


@dataclass
class PaperSummary:
    """A preset study's models (rows in PAPER_ORDER): model, arm, group_order, n_params,
    final-epoch test error (n, mean, sd, lo, hi), best-epoch test error (best_mean, best_sd;
    selected on the test set), invariance_error; and the repetition shares computed as the
    paper computes them (stats.point_shares) on final means and on one seed's best epochs."""

    models: pd.DataFrame
    shares_final: pd.DataFrame
    shares_paper: pd.DataFrame
    paper_seed: int


def _paper_summary(runs: pd.DataFrame, history: pd.DataFrame) -> PaperSummary:
    ok = runs[runs["status"] == "ok"]
    best_runs = stats.best_epoch(history, ok)
    final = stats.arm_summary(ok, by="model_name").set_index("model_name")
    best = stats.arm_summary(best_runs, by="model_name").set_index("model_name")
    first = ok.groupby("model_name")[["arm", "group_order", "n_params"]].first()
    invariance = ok.groupby("model_name")["invariance_error"].mean()
    names = [m for m in PAPER_ORDER if m in final.index]
    models = (
        final.loc[names, ["n", "mean", "sd", "lo", "hi"]]
        .join(first)
        .assign(best_mean=best["mean"], best_sd=best["sd"], invariance_error=invariance)
    )
    seed = PAPER_SEED if (ok["seed"] == PAPER_SEED).any() else int(ok["seed"].min())
    return PaperSummary(
        models.reset_index(names="model"),
        stats.point_shares(ok),
        stats.point_shares(best_runs[best_runs["seed"] == seed]),
        seed,
    )


def _paper_notes(paper: PaperSummary, size: int) -> list[str]:
    m = paper.models
    base = (
        float(m.loc[m["model"] == "baseline", "n_params"].iloc[0])
        if (m["model"] == "baseline").any()
        else None
    )
    notes = []
    if base:
        gaps = 100 * (m["n_params"] / base - 1)
        notes.append(
            "the preset's models are not parameter-matched (as in the paper): learnable parameters "
            f"from {int(m['n_params'].min()):,} to {int(m['n_params'].max()):,}, "
            f"{gaps.min():+.0f}% to {gaps.max():+.0f}% of the baseline's {int(base):,}"
        )
    if size % 2:
        notes.append(
            f"inputs are {size}x{size}: pooled maps are odd, so 90-degree turns are inexact after "
            "pooling and the G-CNNs' invariance_error is not zero; it is measured anyway"
        )
    return notes


@dataclass
class StudyReport:
    """Everything the figures and tables of one study need."""

    name: str
    runs: pd.DataFrame
    history: pd.DataFrame
    dataset: str
    group_orders: list[int]
    summary: pd.DataFrame  # stats.arm_summary by model variant
    table: pd.DataFrame | None  # stats.decompose over the budgets with >= 2 ok seeds per arm
    pooled: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    table_log: pd.DataFrame | None = None  # the same decomposition on log test error
    seeds: dict[float, pd.DataFrame] = field(default_factory=dict)  # stats.seeds_needed per half-width
    variants: list[str] = field(default_factory=list)  # model variants (runs' "variant"), in order
    palette: dict = field(default_factory=dict)  # variant -> colour
    convergence: pd.DataFrame | None = None  # stats.convergence per cell (with its variant)
    paper: PaperSummary | None = None  # a preset study's models, in the paper's shape

    @property
    def unconverged(self) -> dict[int, list[str]]:
        """Budget -> labels of the cells whose test error still moved at the end of training."""
        if self.convergence is None:
            return {}
        budgets = self.convergence.loc[self.convergence["unconverged"], "budget"]
        return {int(b): stats.unconverged_cells(self.convergence, b) for b in sorted(set(budgets))}

    @property
    def n_seeds(self) -> str:
        counts = self.summary["n"]
        return (
            str(int(counts.min()))
            if counts.min() == counts.max()
            else f"{int(counts.min())}–{int(counts.max())}"
        )

    @property
    def group_label(self) -> str:
        return "C" + "/C".join(map(str, self.group_orders))

    @property
    def title(self) -> str:
        return f"{self.dataset} · {self.group_label} · {self.n_seeds} seeds per arm"


def _expected_cells(store: StudyResults) -> set[tuple[int, str, int]] | None:
    """(budget, arm, seed) of every run the saved study asks for; None without a saved study."""
    study = store.saved_study()
    if study is None:
        return None
    return {(spec.budget, spec.arm, spec.seed) for spec in expand_grid(study, str(store.dir / "study.toml"))}


def _check_one_dataset(runs: pd.DataFrame, store: StudyResults) -> list[str]:
    """ResultsError when the study's runs were made on data with different fingerprints; a note
    when some rows predate fingerprints."""
    fingerprints = runs["data_fingerprint"].fillna("")
    known = fingerprints[fingerprints != ""]
    if known.nunique() > 1:
        common = known.mode().iloc[0]
        odd = runs[(fingerprints != "") & (fingerprints != common)]
        cells = ", ".join(f"budget {b} {a}" for b, a in sorted(set(zip(odd["budget"], odd["arm"]))))
        raise ResultsError(
            f"{store.runs_path}: runs made on different data (fingerprints {', '.join(sorted(set(known)))}) "
            f"in one study; not on {common}: {cells}; retrain them with `python -m ablate.run STUDY --force`"
        )
    legacy = int((fingerprints == "").sum())
    return (
        [f"{legacy} runs predate data fingerprints; they are taken as made on the same data"]
        if legacy
        else []
    )


def analyse(directory: Path, n_boot: int = 2000, n_perm: int = 5000) -> StudyReport:
    """Read one study's results and compute its statistics, noting what is missing or too thin."""
    store = StudyResults(directory.parent, directory.name)
    runs, history = store.runs(), store.history()
    if runs.empty:
        raise ResultsError(f"{store.runs_path}: no finished runs yet")
    notes: list[str] = []
    unknown = sorted(set(runs["arm"]) - set(ARMS))
    if unknown:
        raise ResultsError(
            f"{store.runs_path}: expected arms {', '.join(ARMS)}, found {', '.join(map(str, unknown))}"
        )
    notes += _check_one_dataset(runs, store)
    expected = _expected_cells(store)
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
    runs, variants = _with_variants(runs)
    history = history.merge(runs[["run_key", "variant"]], on="run_key", how="inner")
    summary = stats.arm_summary(runs, by="variant")
    complete = stats.complete_budgets(runs)
    thin = [b for b in sorted(summary["budget"].unique()) if b not in complete]
    if thin:
        notes.append(
            "intervals and tests need at least two ok seeds of every arm; point estimates only "
            f"for budget{'s' if len(thin) > 1 else ''} {', '.join(f'{int(b):,}' for b in thin)}"
        )
    table = pooled_row = table_log = None
    seeds = {}
    if complete:
        subset = runs[runs["budget"].isin(complete)]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", stats.StatsWarning)
            table = stats.decompose(subset, n_boot=n_boot, n_perm=n_perm)
            table_log = stats.decompose(subset, n_boot=0, n_perm=0, scale="log")
            seeds = {h: stats.seeds_needed(subset, half_width=h) for h in HALF_WIDTHS}
            try:
                pooled_row = stats.pooled(subset, by_budget_trend=len(complete) > 1)
            except ValueError as error:
                notes.append(f"no pooled estimate: {error}")
        notes += sorted({str(w.message) for w in caught if issubclass(w.category, stats.StatsWarning)})
        for frame in (table, table_log):
            frame["design"] = _design_labels(frame)
    orders = runs.loc[runs["arm"].isin(["repeat", "gcnn"]), "group_order"]
    group_orders = sorted({int(n) for n in orders}) or [4]
    source = str(runs["dataset"].iloc[0]) if "dataset" in runs else "unknown data"
    dataset = DATASET_LABELS.get(source, source)
    palette = dict(zip(variants, sns.color_palette("colorblind", len(variants))))
    paper = None
    if runs.get("model_name", pd.Series(dtype=str)).fillna("").ne("").any():
        paper = _paper_summary(runs, history)
        saved = store.saved_study()
        size = saved.data.pad_to if saved is not None else None
        notes += _paper_notes(paper, size or 28)
    conv = stats.convergence(history, runs) if not history.empty else None
    if conv is not None and conv["unconverged"].any():
        flagged = stats.unconverged_cells(conv)
        notes.append(
            f"{len(flagged)} cells had not converged: their mean test error moved by more than "
            f"{100 * stats.convergence_threshold:.1f} points over the last "
            f"{100 * stats.convergence_window:.0f}% of epochs ({'; '.join(flagged)})"
        )
    if conv is not None and conv["unknown"].any():
        notes.append(
            f"convergence not checked for {int(conv['unknown'].sum())} cells: no test error was "
            f"evaluated before the last {100 * stats.convergence_window:.0f}% of their epochs "
            "([train].eval_every)"
        )
    return StudyReport(
        directory.name, runs, history, dataset, group_orders, summary, table, pooled_row, notes,
        table_log, seeds, variants, palette, conv, paper,
    )  # fmt: skip


def _with_variants(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Runs with a "variant" label per model kind (arm, plus N and control where a study varies
    them), and the labels in display order."""
    orders = runs.loc[runs["arm"].isin(["repeat", "gcnn"]), "group_order"].nunique() > 1
    repeat = runs["arm"] == "repeat"
    structures = runs.loc[repeat, "repeat_structure"].fillna("paper").replace("", "paper")
    several = structures.nunique() > 1

    def label(row) -> str:
        text = ARM_LABELS[row["arm"]]
        if orders and row["arm"] in ("repeat", "gcnn"):
            text += f" C{int(row['group_order'])}"
        if several and row["arm"] == "repeat":
            text += f" ({row['repeat_structure'] or 'paper'})"
        return text

    runs = runs.assign(variant=runs.apply(label, axis=1))
    order = {arm: i for i, arm in enumerate(ARMS)}
    keys = runs.drop_duplicates("variant").assign(
        rank=lambda d: d["arm"].map(order), control=lambda d: d["repeat_structure"].eq("matched")
    )
    keys = keys.sort_values(["rank", "group_order", "control"])
    return runs, list(keys["variant"])


def _design_labels(table: pd.DataFrame) -> list[str]:
    """Short labels of a decomposition's rows: the budget, plus N and control where they vary."""
    orders, structures = table["group_order"].nunique() > 1, table["repeat_structure"].nunique() > 1
    return [
        f"{int(r.budget):,}"
        + (f" C{r.group_order}" if orders else "")
        + (f" {r.repeat_structure}" if structures else "")
        for r in table.itertuples()
    ]


def build_report(r: StudyReport, out_root: Path, formats: Sequence[str]) -> list[Path]:
    """Write every figure and table of one study into out_root/<study>/; returns the paths."""
    out = out_root / r.name
    out.mkdir(parents=True, exist_ok=True)
    use_theme()
    paths = []
    for name, make in FIGURES.items():
        if name == "learning_curves" and r.history.empty:
            r.notes.append("history.csv is empty: no learning curves")
            continue
        paths += save(make(r), out, name, formats)
    return paths + write_tables(r, out)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 with one line on stderr for bad input)."""
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
            raise ResultsError(
                f"--format: expected a comma-separated list of png, pdf, svg, found {args.format!r}"
            )
        root = Path(args.results)
        if args.study:
            directories = [root / args.study]
            if not (root / args.study / "runs.csv").exists():
                raise ResultsError(
                    f"{root / args.study / 'runs.csv'}: not found; run "
                    f"`python -m ablate.run STUDY.toml` first"
                )
        else:
            directories = study_dirs(root)
            if not directories:
                raise ResultsError(
                    f"{root}: no results found (no */runs.csv); run `python -m ablate.run STUDY.toml` first"
                )
        for directory in directories:
            report = analyse(directory)
            paths = build_report(report, Path(args.out), formats)
            print(f"== {report.name}: {report.title}")
            if report.table is not None:
                print(
                    text.format_summary(
                        report.table, report.pooled, report.group_label, report.dataset, report.unconverged
                    )
                )
                print(f"\nprecision of the repetition share (target ±{100 * HALF_WIDTHS[0]:.0f} points):")
                for line in text.precision_lines(report.table, HALF_WIDTHS[0], report.unconverged):
                    print(f"  {line}")
                for half_width, needed in report.seeds.items():
                    print(text.seeds_sentence(needed, half_width))
            else:
                print(headline_text(report))
            if report.paper is not None:
                print(text.paper_sentence(report.paper))
            for note in report.notes:
                print(f"note: {note}")
            print(f"wrote {len(paths)} files to {Path(args.out) / report.name}\n")
        return 0
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
