"""`python -m ablate.report`: figures and tables from results/<study>/ into paper_figs/<study>/.

The numbers come from ablate.report.analysis (computed once), the words from ablate.report.text;
tables and figures are drawn from them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ablate.errors import AblateError, ResultsError
from ablate.report import text
from ablate.report.analysis import HALF_WIDTHS, StudyReport, analyse
from ablate.report.bridge import COLUMNS as BRIDGE_COLUMNS
from ablate.report.bridge import analyse_bridge, bridge_rows, bridge_sentence, fig_bridge
from ablate.report.figures import FIGURES, save, use_theme
from ablate.report.tables import headline_text, markdown_table, write_tables
from ablate.results import study_dirs


def build_report(r: StudyReport, out_root: Path, formats: Sequence[str]) -> list[Path]:
    """Write every figure and table of one study into out_root/<study>/; returns the paths."""
    out = out_root / r.name
    out.mkdir(parents=True, exist_ok=True)
    use_theme()
    paths = []
    for name, make in FIGURES.items():
        if (name == "learning_curves" and r.history.empty) or (name == "single_seed" and not r.single_seed):
            continue
        paths += save(make(r), out, name, formats)
    return paths + write_tables(r, out)


def write_bridge(root: Path, out_root: Path, formats: Sequence[str]) -> list[Path]:
    """The bridge study's report (ablate.report.bridge) into out_root/bridge/, and its summary."""
    r = analyse_bridge(root)
    out = out_root / "bridge"
    out.mkdir(parents=True, exist_ok=True)
    use_theme()
    paths = save(fig_bridge(r), out, "bridge", formats) if not r.rows.empty else []
    md = ["# bridge: from the paper's 40% to the answer, one factor at a time", "", bridge_sentence(r), ""]
    md += [markdown_table(BRIDGE_COLUMNS, bridge_rows(r))]
    if r.notes:
        md += ["", "## Notes", *[f"- {n}" for n in r.notes]]
    (out / "table.md").write_text("\n".join(md) + "\n")
    print(f"== bridge\n{bridge_sentence(r)}")
    for note in r.notes:
        print(f"note: {note}")
    print(f"wrote {len(paths) + 1} files to {out}\n")
    return [*paths, out / "table.md"]


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
        bridge = args.study == "bridge" or (not args.study and (root / "bridge").is_dir())
        if bridge:
            write_bridge(root, Path(args.out), formats)
            if args.study == "bridge":
                return 0
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
                for line in text.single_seed_lines(report.single_seed, report.table):
                    print(line)
            else:
                print(headline_text(report))
            print(text.exchangeability_sentence(report.trends))
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
