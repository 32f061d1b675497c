"""One vocabulary: the group value and the design value make every label, mask and cell key; a
D_N sweep is titled D_N everywhere; no group label is built outside the group value."""

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from ablate import stats
from ablate.models.arms import CELL_KEY, TRIVIAL_GROUP, Design, Group
from ablate.report import text
from ablate.report.analysis import analyse
from ablate.report.figures import fig_share_vs_group_order
from ablate.report.tables import write_tables
from ablate.results import RUN_COLUMNS, HistoryRow, RunRow, StudyResults

PACKAGE = Path(__file__).resolve().parents[1] / "ablate"


def test_the_group_value_labels_and_sizes():
    assert Group("C", 4).label == "C4" and Group("D", 4).label == "D4" and TRIVIAL_GROUP.label == "C1"
    assert Group("C", 8).size == 8 and Group("D", 4).size == 8 and Group.labels("D", [2, 4]) == "D2/D4"
    assert (
        Group.of({"group": "D", "group_order": 8}) == Group("D", 8) and Group.of({"group_order": 0}) is None
    )
    for kind, order in (("E", 4), ("C", 0)):
        with pytest.raises(ValueError, match="expected C or D with an order >= 1"):
            Group(kind, order)


def test_the_design_value_makes_labels_cell_keys_and_row_masks():
    design = Design(20_000, Group("D", 4), "matched")
    assert design.label == "budget 20,000, D4, matched control"
    assert Design(5_000, Group("C", 4)).label == "budget 5,000, C4"  # the default control unnamed
    assert design.name(controls=True) == "D4, matched control" and design.name(controls=False) == "D4"
    assert design.cell_key("plain") == (20_000, "plain", 1, "")
    assert design.cell_key("repeat") == (20_000, "repeat", 4, "matched")
    assert design.cell_key("gcnn") == (20_000, "gcnn", 4, "")
    table = pd.DataFrame(
        [
            (20_000, "plain", 1, ""),
            (20_000, "repeat", 4, "matched"),
            (20_000, "repeat", 4, "paper"),
            (20_000, "gcnn", 4, ""),
            (20_000, "gcnn", 8, ""),
            (5_000, "plain", 1, ""),
        ],
        columns=list(CELL_KEY),
    )
    assert design.rows(table).tolist() == [True, True, False, True, False, False]
    assert (
        Design.of({"budget": 20_000, "group": "D", "group_order": 4, "repeat_structure": "matched"}) == design
    )


def _d_sweep(root: Path) -> StudyResults:
    """A D2/D4 sweep with both controls, 4 seeds, repetition share 20% everywhere."""
    rng = np.random.default_rng(1)
    store = StudyResults(root, "dsweep")
    arms = [("plain", 1, "", 0.20)]
    for n in (2, 4):
        arms += [("gcnn", n, "", 0.10), ("repeat", n, "paper", 0.18), ("repeat", n, "matched", 0.18)]
    for arm, n, structure, mean in arms:
        for seed in range(4):
            key = f"{arm}-{n}-{structure}-{seed}"
            error = mean + 0.002 * rng.standard_normal()
            row = {c: "" for c in RUN_COLUMNS} | {
                "study": "dsweep", "run_key": key, "arm": arm, "budget": 10_000, "seed": seed,
                "n_params": 10_000, "macs": 1, "group_order": n, "repeat_structure": structure,
                "n_train": 100, "n_test": 1000, "epochs": 2, "test_error": error, "invariance_error": 0.0,
                "train_loss": 1.0, "train_error": 0.1, "train_seconds": 1.0, "status": "ok",
                "dataset": "embedded", "group": "D", "finished_at": f"2026-12-01T12:00:0{seed}+00:00",
                "fused": 1, "preset_width": 1.0, "channels": 1, "classes": 10, "invariance_error_any": 0.0,
            }  # fmt: skip
            ident = {k: row[k] for k in ("study", "run_key", "arm", "budget", "seed")}
            history = [
                HistoryRow(**ident, epoch=e, train_loss=1, train_error=0, test_error=error, lr=0, seconds=1)
                for e in (1, 2)
            ]  # fmt: skip
            store.record(RunRow(**row), history)
    return store


def test_a_d4_sweep_is_titled_d4_in_its_tables_text_and_figures(tmp_path):
    store = _d_sweep(tmp_path / "results")
    table = stats.decompose(store.runs(), n_boot=0, n_perm=0)
    assert set(table["group"]) == {"D"} and sorted(set(table["group_order"])) == [2, 4]
    report = analyse(store.dir, n_boot=0, n_perm=0)
    assert report.group_label == "D2/D4" and "D2/D4" in report.title
    assert {"learnable repetition D4 (matched)", "G-CNN D2"} <= set(report.variants)
    (tmp_path / "out").mkdir()
    write_tables(report, tmp_path / "out")
    written = (tmp_path / "out" / "table.md").read_text()
    assert "D4" in written and not re.search(r"\bC[248]\b", written), written
    summary = text.format_summary(report.table, report.pooled, report.group_label, report.dataset)
    assert "budget 10,000, D4, matched control" in summary and not re.search(r"\bC[248]\b", summary)
    fig = fig_share_vs_group_order(report)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["D2", "D4"]
    assert "D_N" in ax.get_xlabel() and "D2/D4" in ax.get_title()
    plt.close(fig)


def test_no_group_label_is_built_outside_the_group_value():
    """No f-string puts a literal C (or a group kind) before an order outside models/arms.py."""
    built = re.compile(r"""f["'][^"']*(?<![A-Za-z_])[CD]\{|\{[^}]*group\}\{""")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{i}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "arms.py"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if built.search(line)
    ]
    assert offenders == []
