"""The README's results are what the committed reports say: the bridge study's headline and step
table (recomputed from results/answer/ and results/bridge/, found in the README and in
paper_figs/bridge/table.md), and the answer study's headline sentence and precision lines."""

import re
from pathlib import Path

from ablate.report import text
from ablate.report.analysis import HALF_WIDTHS, analyse
from ablate.report.bridge import COLUMNS as BRIDGE_COLUMNS
from ablate.report.bridge import analyse_bridge, bridge_rows, bridge_sentence
from ablate.report.tables import headline_text, markdown_table

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


def test_readme_bridge_headline_and_step_table_are_the_committed_reports():
    r = analyse_bridge(ROOT / "results")
    readme = (ROOT / "README.md").read_text()
    committed = (ROOT / "paper_figs" / "bridge" / "table.md").read_text()
    sentence = bridge_sentence(r)
    assert sentence.startswith("Repetition share of the G-CNN's gain, step by step")
    assert flat(sentence) in flat(committed) and flat(sentence) in flat(readme)
    table = markdown_table(BRIDGE_COLUMNS, bridge_rows(r))
    assert table in committed
    rows = table.splitlines()[2:]  # the README's step table: the committed rows, verbatim
    assert len(rows) >= 6 and all(row in readme for row in rows)
