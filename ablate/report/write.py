"""Writing a report to disk: a study's figures and tables into out/<study>/, a ladder's into
out/<ladder>/. The numbers come from report.analysis and report.ladder (computed once)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ablate.report.analysis import StudyReport
from ablate.report.figures import FIGURES, drawable
from ablate.report.ladder import COLUMNS as LADDER_COLUMNS
from ablate.report.ladder import analyse_ladder, fig_ladder, ladder_rows, ladder_sentence
from ablate.report.plots import plot_trajectory, save, use_theme
from ablate.report.retrained import per_seed_table
from ablate.report.tables import markdown_table, write_tables
from ablate.study.ladder import Ladder


def build_report(report: StudyReport, out_root: Path, formats: Sequence[str]) -> list[Path]:
    """Write every figure and table of one study into out_root/<study>/; returns the paths."""
    out = out_root / report.name
    out.mkdir(parents=True, exist_ok=True)
    use_theme()
    paths = []
    for name, make in FIGURES.items():
        if drawable(name, report):
            paths += save(make(report), out, name, formats)
    return paths + write_tables(report, out)


def write_ladder(ladder: Ladder, base: Path, out_root: Path, formats: Sequence[str]) -> list[Path]:
    """A ladder's report (ablate.report.ladder; its results folders under `base`) into
    out_root/<ladder>/: <ladder>.png/pdf and table.md; prints its summary."""
    report = analyse_ladder(ladder, base)
    out = out_root / ladder.name
    out.mkdir(parents=True, exist_ok=True)
    use_theme()
    paths = save(fig_ladder(report), out, ladder.name, formats) if not report.rows.empty else []
    if not report.trajectory.empty:
        ax = plot_trajectory(report.trajectory)
        ax.set_title(f"The share over the last epochs, per step — {ladder.settings.title}")
        paths += save(ax.figure, out, f"{ladder.name}_trajectory", formats)
    md = [f"# {ladder.name}: {ladder.settings.title}", "", ladder_sentence(report), ""]
    md += [markdown_table(LADDER_COLUMNS, ladder_rows(report))]
    if report.notes:
        md += ["", "## Notes", *[f"- {n}" for n in report.notes]]
    for step, pairs in report.retrained.items():
        md += ["", f"## Step {step}: retrained runs, first training against retraining", ""]
        md += [markdown_table(*per_seed_table(pairs))]
    (out / "table.md").write_text("\n".join(md) + "\n")
    print(f"== {ladder.name}\n{ladder_sentence(report)}")
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {len(paths) + 1} files to {out}\n")
    return [*paths, out / "table.md"]
