"""`python -m ablate.report`: figures and tables from results/<study>/ into paper_figs/<study>/.

Reads results through ablate.results, numbers through ablate.stats, sentences through
ablate.text and draws with ablate.figures; this module arranges them into a report and tables
(Markdown, LaTeX).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablate import stats, text
from ablate.errors import AblateError, ResultsError
from ablate.figures import FIGURES, save, use_theme
from ablate.models.arms import ARMS
from ablate.results import StudyResults, study_dirs
from ablate.study import expand_grid

DATASET_LABELS = {
    "mnist-rot": "MNIST-rot",
    "mnist": "rotated MNIST (torchvision)",
    "embedded": "rotated MNIST, 5k embedded digits",
}


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
        return (
            str(int(counts.min()))
            if counts.min() == counts.max()
            else f"{int(counts.min())}–{int(counts.max())}"
        )

    @property
    def title(self) -> str:
        return f"{self.dataset} · C{self.group_order} · {self.n_seeds} seeds per arm"


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
    summary = stats.arm_summary(runs)
    counts = summary.pivot(index="budget", columns="arm", values="n").reindex(columns=ARMS)
    complete = counts.index[(counts.fillna(0) >= 2).all(axis=1)].tolist()
    thin = [b for b in counts.index if b not in complete]
    if thin:
        notes.append(
            "intervals and tests need at least two ok seeds of every arm; point estimates only "
            f"for budget{'s' if len(thin) > 1 else ''} {', '.join(f'{int(b):,}' for b in thin)}"
        )
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
# Tables
# --------------------------------------------------------------------------------------------


def _pct(x: float, digits: int = 2) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def _p(x: float) -> str:
    return "–" if not np.isfinite(x) else (f"{x:.2g}" if x >= 1e-4 else f"{x:.1e}")


def _share_cell(row: pd.Series, method: str) -> str:
    kind = row.get("fieller_kind", "bounded") if method == "fieller" else "bounded"
    return text.format_interval(row[f"share_rep_lo_{method}"], row[f"share_rep_hi_{method}"], kind)


def arm_rows(r: StudyReport) -> list[list[str]]:
    """Table cells per budget and arm: params, MACs, test error mean ± sd (n)."""
    cells = r.runs.groupby(["budget", "arm"])[["n_params", "macs"]].mean()
    rows = []
    for _, s in r.summary.sort_values(
        ["budget", "arm"], key=lambda c: c.map(ARMS.index) if c.name == "arm" else c
    ).iterrows():
        n_params, macs = cells.loc[(s["budget"], s["arm"])]
        spread = f" ± {_pct(s['sd'])}" if np.isfinite(s["sd"]) else ""
        rows.append(
            [
                f"{int(s['budget']):,}",
                s["arm"],
                f"{int(n_params):,}",
                f"{int(macs):,}",
                f"{_pct(s['mean'])}{spread} ({int(s['n'])})",
            ]
        )
    return rows


def share_rows(r: StudyReport) -> list[list[str]]:
    """Table cells per budget: gains, repetition share with its intervals, and the tests."""
    if r.table is None:
        return []
    rows = []
    for _, t in r.table.sort_values("budget").iterrows():
        if t["identifiable"]:
            share = [
                _pct(t["share_rep"], 1),
                _share_cell(t, "delta"),
                _share_cell(t, "fieller"),
                f"{_share_cell(t, 'boot')} ({t['boot_method']})",
            ]
        else:
            share = ["not identifiable", "–", "–", "–"]
        rows.append(
            [
                f"{int(t['budget']):,}",
                _pct(t["gain_total"]),
                _pct(t["gain_rep"]),
                _pct(t["gain_eq"]),
                *share,
                _p(t["p_total"]),
                _p(t["p_rep"]),
                _p(t["p_eq"]),
            ]
        )
    return rows


ARM_HEADER = ["budget", "arm", "params", "MACs", "test error % mean ± sd (n)"]
SHARE_HEADER = [
    "budget",
    "gain total (pts)",
    "gain rep (pts)",
    "gain eq (pts)",
    "repetition share %",
    "95% CI delta",
    "95% CI Fieller",
    "95% CI bootstrap",
    "p total",
    "p rep",
    "p eq",
]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown pipe table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def latex_table(header: list[str], rows: list[list[str]]) -> str:
    """A booktabs LaTeX tabular, special characters escaped."""

    def esc(cell: str) -> str:
        return (
            cell.replace("\\", r"\textbackslash{}")
            .replace("%", r"\%")
            .replace("±", r"$\pm$")
            .replace("–", "--")
            .replace("_", r"\_")
            .replace("&", r"\&")
            .replace("U", r"$\cup$")
            .replace("inf", r"$\infty$")
        )

    lines = [
        r"\begin{tabular}{" + "l" * len(header) + "}",
        r"\toprule",
        " & ".join(esc(h) for h in header) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(esc(c) for c in row) + r" \\" for row in rows]
    return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"])


def headline_text(r: StudyReport) -> str:
    """The report's headline sentence, or why there is none yet."""
    if r.table is None:
        return (
            "The repetition share cannot be estimated yet: intervals and tests need at least two "
            "ok seeds of every arm at some budget."
        )
    return text.headline_sentence(r.table, r.group_order, r.dataset)


def write_tables(r: StudyReport, out: Path) -> list[Path]:
    """Write table.md and table.tex into `out`; returns their paths."""
    head = headline_text(r)
    notes = "".join(f"\n- {n}" for n in r.notes)
    md = [
        f"# {r.name}: {r.title}",
        "",
        head,
        "",
        "## Test error per arm",
        "",
        markdown_table(ARM_HEADER, arm_rows(r)),
    ]
    tex = [f"% {r.name}: {r.title}", f"% {head}", latex_table(ARM_HEADER, arm_rows(r))]
    if r.table is not None:
        md += [
            "",
            "## Repetition share of the G-CNN's gain",
            "",
            "Gains in percentage points of test error; p-values one-sided (gain > 0), Welch t-tests, "
            "Holm-adjusted over all budgets and gains. Fieller sets that are not one interval are "
            "spelled out.",
            "",
            markdown_table(SHARE_HEADER, share_rows(r)),
        ]
        tex += ["", latex_table(SHARE_HEADER, share_rows(r))]
    if r.pooled is not None and r.pooled.iloc[0]["identifiable"]:
        p = r.pooled.iloc[0]
        md += [
            "",
            f"Pooled over budgets (OLS with budget effects, seed-clustered errors): repetition "
            f"share {_pct(p['share_rep'], 1)}% (95% CI {_pct(p['share_rep_lo'], 1)} to "
            f"{_pct(p['share_rep_hi'], 1)}%).",
        ]
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
                print(text.format_summary(report.table, report.pooled, report.group_order, report.dataset))
            else:
                print(headline_text(report))
            for note in report.notes:
                print(f"note: {note}")
            print(f"wrote {len(paths)} files to {Path(args.out) / report.name}\n")
        return 0
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
