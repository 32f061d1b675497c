"""The README's opening result is what the committed answer study's report says: its headline
sentence and precision lines, recomputed from results/answer/ and found in the README and in
paper_figs/answer/table.md."""

import re
from pathlib import Path

from ablate.report import text
from ablate.report.analysis import HALF_WIDTHS, analyse
from ablate.report.tables import headline_text

ROOT = Path(__file__).resolve().parents[1]


def flat(markdown: str) -> str:
    """Text with quote markers and line breaks folded into single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"^\s*> ?", "", markdown, flags=re.MULTILINE))


def test_readme_headline_and_precision_are_the_committed_reports():
    report = analyse(ROOT / "results" / "answer", n_boot=0, n_perm=0)  # the headline uses neither
    readme = flat((ROOT / "README.md").read_text())
    table = flat((ROOT / "paper_figs" / "answer" / "table.md").read_text())
    headline = headline_text(report)
    assert headline.startswith("Up to ") and headline in table and headline in readme
    lines = text.precision_lines(report.table, HALF_WIDTHS[0], report.unconverged)
    assert len(lines) == 4  # 2 budgets x 2 repeat controls
    for line in lines:
        assert flat(line) in readme, line
    pooled = [text.pooled_phrase(report.pooled, row.to_dict()) for _, row in report.pooled.iterrows()]
    assert pooled and all(flat(p) in readme for p in pooled)
