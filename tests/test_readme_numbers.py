"""The README is a front door that tells the truth: under 120 lines in the agreed order, its
bridge headline is the committed report's (whose step table docs/bridge.md carries verbatim),
the answer study's numbers in docs/answer.md and the symmetry study's result table in
docs/symmetry.md are the committed reports', and every command and the Python snippet in the
README run."""

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ablate.models.arms import ARM_LABELS, GROUPED_ARMS
from ablate.report import text
from ablate.report.analysis import HALF_WIDTHS, analyse
from ablate.report.ladder import COLUMNS as BRIDGE_COLUMNS
from ablate.report.ladder import analyse_ladder, ladder_rows, ladder_sentence
from ablate.report.retrained import per_seed_table
from ablate.report.tables import headline_text, markdown_table, write_tables
from ablate.study.ladder import load_ladder

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def flat(markdown: str) -> str:
    """Text with quote markers and line breaks folded into single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"^\s*> ?", "", markdown, flags=re.MULTILINE))


def test_the_readme_is_short_and_in_the_front_door_order():
    assert len(README.splitlines()) < 120  # the brief: under 120 lines
    headings = [line for line in README.splitlines() if line.startswith("## ")]
    order = ["Two commands", "The result", "Your own data", "From Python", "How the code", "Where to go"]
    assert [next(i for i, h in enumerate(headings) if h[3:].startswith(o)) for o in order] == list(range(6))
    intro = README.split("\n## ")[0].splitlines()[2:]
    assert len([line for line in intro if line.strip()]) <= 8  # what the package answers
    result = README.split("\n## The result")[1].split("\n## ")[0].splitlines()[1:]
    assert len([line for line in result if line.strip()]) <= 15
    assert "docs/bridge.md" in "".join(result) and "paper_figs/bridge/bridge.png" in "".join(result)
    assert "paper_figs/symmetry/sharing_or_symmetry.png" in "".join(result)
    assert "Changed:" not in "".join(result) and "> " not in "\n".join(result)  # no pasted report paragraph
    assert "docs/design.md" in README and "../shared" not in README
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        assert (ROOT / link).exists(), link


def test_answer_headline_and_precision_in_docs_are_the_committed_reports():
    report = analyse(ROOT / "results" / "answer", n_boot=0, n_perm=0)  # the headline uses neither
    page = flat((ROOT / "docs" / "answer.md").read_text())
    table = flat((ROOT / "paper_figs" / "answer" / "table.md").read_text())
    headline = headline_text(report)
    assert headline.startswith("Up to ") and headline in table and headline in page
    lines = text.precision_lines(report.table, HALF_WIDTHS[0], report.unstable)
    assert len(lines) == 4  # 2 budgets x 2 repeat controls
    for line in lines:
        assert flat(line) in page, line
    pooled = [text.pooled_phrase(report.pooled, row.to_dict()) for _, row in report.pooled.iterrows()]
    assert pooled and all(flat(p) in page for p in pooled)


def _numbers(markdown: str) -> list[str]:
    """The percentages ('20.0%', '-4.0%') and seed counts ('2 of 10 seeds') a text quotes."""
    return re.findall(r"-?\d+(?:\.\d+)?%", markdown) + re.findall(r"\d+ of \d+ seeds", markdown)


def test_readme_result_numbers_and_docs_tables_are_the_committed_reports(tmp_path):
    """Every number of the README's result section is one that `python -m ablate.report` computes
    now for the bridge or the symmetry study (and stands in the committed reports); docs/bridge.md
    carries the bridge's step table and its retrained runs' table verbatim."""
    r = analyse_ladder(load_ladder(ROOT / "studies" / "bridge.toml"), ROOT)
    committed = (ROOT / "paper_figs" / "bridge" / "table.md").read_text()
    page = (ROOT / "docs" / "bridge.md").read_text()
    table = markdown_table(BRIDGE_COLUMNS, ladder_rows(r))
    assert table in committed
    block = page.split("<!-- bridge table: start -->\n")[1].split("\n<!-- bridge table: end -->")[0]
    assert block == table  # docs/bridge.md's step table: the committed rows, verbatim
    for step, pairs in r.retrained.items():
        seeds = markdown_table(*per_seed_table(pairs))
        assert seeds in committed and seeds in page, step
    symmetry = analyse(ROOT / "results" / "symmetry")  # the report's resamples (seeded): its bootstrap
    write_tables(symmetry, tmp_path)  # intervals appear from 10 seeds per arm; the tables as written now
    computed = flat(" ".join([ladder_sentence(r), table, *r.notes, (tmp_path / "table.md").read_text()]))
    assert (tmp_path / "table.md").read_text() == (ROOT / "paper_figs" / "symmetry" / "table.md").read_text()
    result = README.split("\n## The result")[1].split("\n## ")[0]
    quoted = _numbers(result)
    assert len(quoted) >= 8, quoted
    for number in quoted:
        assert number in computed, number


def test_symmetry_page_result_table_is_the_committed_report():
    """docs/symmetry.md's result table quotes only the committed report's numbers: each arm's mean
    test error and each share with its delta-method interval (stale numbers fail here)."""
    page = (ROOT / "docs" / "symmetry.md").read_text().replace("\u2212", "-")
    result = page.split("### The result")[1].splitlines()
    header = next(line for line in result if line.startswith("| design |")).strip("|").split(" | ")
    assert [cell.strip() for cell in header[1:6]] == ["plain", "repeat", "wrong", "G-CNN", "wide"], header
    rows = [line for line in result if line.startswith("| C")]
    committed = (ROOT / "paper_figs" / "symmetry" / "table.md").read_text()
    assert len(rows) == 2, rows  # C2 with D1, C4 with D2
    means = {  # the per-arm table: "| 20,000 | G-CNN C2 | ... | 6.15 ± 0.43 (15) | ..." -> 6.15%
        cells[1]: cells[4].split(" \u00b1")[0] + "%"
        for cells in (line.strip("|").split(" | ") for line in committed.splitlines())
        if len(cells) == 6 and "\u00b1" in cells[4]
    }
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        group = cells[0].split()[0]  # "C2 (wrong: D1)" -> the report's variant labels, "G-CNN C2"
        arms = ("plain", "repeat", "wrong", "gcnn", "wide")  # the page's columns, as asserted above
        labels = [ARM_LABELS[arm] + (f" {group}" if arm in GROUPED_ARMS else "") for arm in arms]
        assert [means[label] for label in labels] == cells[1:6], row
        for share in cells[6:]:  # the sharing-or-symmetry table's "1.4% (-10.4% to 13.2%)"
            assert f"| {share} |" in committed, (row, share)


def _commands() -> list[str]:
    """The shell commands of the README's indented blocks (comments dropped)."""
    lines = [line[4:].split("#")[0].strip() for line in README.splitlines() if line.startswith("    ")]
    return [line for line in lines if line.startswith(("make ", ".venv/bin/python "))]


def test_every_command_in_the_readme_runs(tmp_path):
    """make targets exist (`make -n`); the package's commands run as written in a sandbox holding
    studies/ and the committed quick study, except that `ablate.run` trains the example study's
    smallest cell (one seed, one budget) and the quick study as a --dry-run, and `ablate.report`
    writes into the sandbox."""
    commands = _commands()
    assert commands[:2] == ["make demo", "make test"] and len(commands) >= 7, commands
    (tmp_path / "studies").symlink_to(ROOT / "studies")
    shutil.copytree(ROOT / "results" / "quick", tmp_path / "results" / "quick")
    for command in commands:
        words = command.split()
        if words[0] == "make":
            done = subprocess.run(["make", "-n", *words[1:]], cwd=ROOT, capture_output=True, text=True)
        else:
            args = [sys.executable, *words[1:]]
            if words[2] == "ablate.run":
                args += ["--dry-run"] if "quick" in command else ["--seeds", "0", "--budgets", "5000"]
            if words[2] == "ablate.report":
                args += ["--out", str(tmp_path / "figs"), "--format", "png"]
            done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
    assert (tmp_path / "figs" / "quick" / "table.md").exists()
    assert "D4" in (tmp_path / "figs" / "example-npz" / "table.md").read_text()


def test_the_readme_python_loop_runs_as_written(tmp_path):
    """Triplet -> your training loop -> share_interval -> a figure, as the README has it."""
    snippet = README.split("```python\n")[1].split("```")[0]
    done = subprocess.run(
        [sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    share, lo, hi = (float(x) for x in done.stdout.split())  # NaN where not identifiable
    assert (lo <= share <= hi) or math.isnan(share)
    assert (tmp_path / "share.png").stat().st_size > 2_000  # a drawn figure
