"""`python -m ablate.report [FILE.toml]`: figures and tables from results/<study>/ into paper_figs/<study>/.

Without FILE, every study under --results; with a study file, that study (its [run] results
folder); with a ladder file (ablate.study.ladder), the ladder's report into paper_figs/<ladder>/;
with --runs FILE.csv, a runs table your own training loop wrote (paper_figs/<file name>/).
The numbers come from ablate.report.analysis and ablate.report.ladder (computed once), the words
from ablate.report.text; tables and figures are drawn from them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ablate.errors import AblateError, ResultsError
from ablate.report import text
from ablate.report.analysis import HALF_WIDTHS, StudyReport, analyse, analyse_runs
from ablate.report.own_runs import read_user_runs
from ablate.report.tables import headline_text
from ablate.report.write import build_report, write_ladder
from ablate.results import StudyResults, study_dirs
from ablate.study.ladder import is_ladder, load_ladder
from ablate.study.schema import load_study


def _study_folders(file: str | None, root: Path, study: str | None) -> list[Path]:
    """The results folders to report: a study file's, one study's under `root`, or all of them."""
    if file:
        study = load_study(file)
        directories = [StudyResults(study.run.results, study.name).dir]
    elif study:
        directories = [root / study]
    else:
        directories = study_dirs(root)
        if not directories:
            raise ResultsError(
                f"{root}: no results found (no */runs.csv); run `python -m ablate.run STUDY.toml` first"
            )
    for directory in directories:
        if not (directory / "runs.csv").exists():
            raise ResultsError(
                f"{directory / 'runs.csv'}: not found; run `python -m ablate.run STUDY.toml` first"
            )
    return directories


def _print_summary(report: StudyReport, paths: list[Path], out_root: Path) -> None:
    """A study report's text summary on stdout."""
    print(f"== {report.name}: {report.title}")
    if report.table is not None:
        print(
            text.format_summary(
                report.table, report.pooled, report.group_label, report.dataset, report.unstable
            )
        )
        print(f"\nprecision of the repetition share (target ±{100 * HALF_WIDTHS[0]:.0f} points):")
        for line in text.precision_lines(report.table, HALF_WIDTHS[0], report.unstable):
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
    print(f"wrote {len(paths)} files to {out_root / report.name}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code (2 with one line on stderr for bad input)."""
    parser = argparse.ArgumentParser(prog="python -m ablate.report", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", help="a study file, or a ladder file (e.g. studies/bridge.toml)")
    parser.add_argument("--results", default="results", help="results root (default: results)")
    parser.add_argument("--study", help="only this study (a folder under the results root)")
    parser.add_argument(
        "--runs",
        help="a runs table your own training loop wrote (CSV: arm, seed, test_error, ...; docs/stats.md)",
    )
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
        if args.file and is_ladder(args.file):
            write_ladder(load_ladder(args.file), Path("."), Path(args.out), formats)
            return 0
        if args.runs:
            report = analyse_runs(read_user_runs(args.runs), name=Path(args.runs).stem)
            _print_summary(report, build_report(report, Path(args.out), formats), Path(args.out))
            return 0
        for directory in _study_folders(args.file, Path(args.results), args.study):
            report = analyse(directory)
            _print_summary(report, build_report(report, Path(args.out), formats), Path(args.out))
        return 0
    except AblateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
