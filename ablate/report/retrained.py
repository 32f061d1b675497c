"""Runs trained twice in a report: a study's runs retrained under other code (`--retrain`) against
their first training (superseded/), as notes (per cell: bit-identical pairs, the mean paired
change with its interval, the paired tests), a sensitivity line (the share with the first
training in place of the retraining) and a per-seed table of old and new test errors."""

from __future__ import annotations

import pandas as pd

from ablate import stats
from ablate.models.arms import Design
from ablate.report.text import cell_label, cell_name, format_interval, pct


def _codes(pairs: pd.DataFrame, column: str) -> str:
    return ", ".join(sorted({c or "no fingerprint" for c in pairs[column]}))


def retrained_notes(pairs: pd.DataFrame) -> list[str]:
    """One line on what was retrained, from which code to which, and how many pairs are
    bit-identical; one naming the cells whose every pair is bit-identical (no test: each difference
    is 0); then one line per cell whose errors changed, with the mean paired change (points, 95% t
    interval) and the paired t-test and Wilcoxon p (Holm over the cells with a change)."""
    if pairs.empty:
        return []
    compared = stats.retrained_comparison(pairs)
    same = int(compared["identical"].sum())
    notes = [
        f"retrained: {len(pairs)} runs, first trained by {_codes(pairs, 'old_code')}, retrained by "
        f"{_codes(pairs, 'new_code')}; {same} of them give the bit-identical test error (same count of "
        "test images); the first training's rows are in superseded/runs.csv"
    ]
    unchanged = compared[compared["identical"] == compared["n"]]
    if len(unchanged):
        cells = "; ".join(
            f"{cell_label(c)} ({int(c['n'])} of {int(c['n'])})" for _, c in unchanged.iterrows()
        )
        notes.append(f"retrained, every pair bit-identical (no test: each difference is 0): {cells}")
    tested = int(compared["p_t"].notna().sum())  # Holm's family: the cells with a test (not all equal)
    family = f"Holm over the {tested} cell{'s' if tested != 1 else ''} with a change"
    for _, c in compared[compared["identical"] < compared["n"]].iterrows():
        notes.append(
            f"retrained {cell_label(c)}: {int(c['n'] - c['identical'])} of {int(c['n'])} errors changed; "
            f"mean change {100 * c['diff']:+.2f} points "
            f"(95% CI {100 * c['lo']:+.2f} to {100 * c['hi']:+.2f}), "
            f"paired t-test p {c['p_t_holm']:.2g}, Wilcoxon p {c['p_w_holm']:.2g} ({family})"
        )
    return notes


def first_training_lines(
    step: str, runs: pd.DataFrame, superseded: pd.DataFrame, pairs: pd.DataFrame, controls: bool
) -> list[str]:
    """Per design of the step with retrained runs (`pairs`: stats.retrained_pairs of `runs` and
    `superseded`): its share (delta-method interval) with the first training's rows in place of their
    retraining, the sensitivity line beside the step's numbers."""
    if pairs.empty:
        return []
    table = stats.decompose(stats.with_first_training(runs, superseded), n_boot=0, n_perm=0)
    lines = []
    for _, t in table.iterrows():
        lines.append(
            f"step {step} ({Design.of(t).name(controls)}): with the {len(pairs)} retrained runs as first "
            f"trained ({_codes(pairs, 'old_code')}) the share would be {pct(t['share_rep'])} "
            f"({format_interval(t['share_rep_lo_delta'], t['share_rep_hi_delta'])}); the step uses the "
            "retraining"
        )
    return lines


def per_seed_table(pairs: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of old -> new test errors (%) per seed, one column per cell of `pairs`."""
    columns = {}
    for _, row in pairs.iterrows():
        name = cell_name(row) + (f" ({row['repeat_structure']})" if row["repeat_structure"] else "")
        columns.setdefault(name, {})[int(row["seed"])] = (row["old"], row["new"])
    seeds = sorted({s for cells in columns.values() for s in cells})
    header = ["seed", *[f"{name}: first → retrained (%)" for name in columns]]
    rows = []
    for seed in seeds:
        cells = [columns[name].get(seed) for name in columns]
        rows.append([str(seed)] + [f"{100 * c[0]:.2f} → {100 * c[1]:.2f}" if c else "–" for c in cells])
    return header, rows
