"""Runs trained twice (--retrain): each retrained run paired with its first training by run key,
the per-cell comparison (bit-identical pairs, mean paired change, paired tests), the study as
first trained, and the report's notes and per-seed table."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from ablate import stats
from ablate.report.retrained import first_training_lines, per_seed_table, retrained_notes


def table(errors: dict[str, list[float]], code: str) -> pd.DataFrame:
    """A runs table of one C4 design at 20k: per arm, seeds 0.. with the given test errors."""
    rows = []
    for arm, values in errors.items():
        for seed, error in enumerate(values):
            rows.append(
                dict(run_key=f"{arm}-{seed}", arm=arm, budget=20_000, seed=seed, test_error=error,
                     status="ok", group="C", group_order=4 if arm != "plain" else 1,
                     repeat_structure="matched" if arm == "repeat" else "", code_fingerprint=code)
            )  # fmt: skip
    return pd.DataFrame(rows)


rng = np.random.default_rng(0)
OLD = {
    "plain": list(0.20 + 0.01 * rng.standard_normal(8)),
    "repeat": list(0.18 + 0.01 * rng.standard_normal(8)),
    "gcnn": list(0.08 + 0.01 * rng.standard_normal(8)),
}
CHANGE = 0.01 * rng.standard_normal(8)  # the repeat arm's errors move, the others reproduce


def retrained_study():
    new = dict(OLD, repeat=[e + c for e, c in zip(OLD["repeat"], CHANGE)])
    new["plain"] = [e + 1e-17 for e in OLD["plain"]]  # the same count, written with other rounding
    return table(new, "new"), table(OLD, "old")


def test_pairs_and_comparison_count_identical_runs_and_test_the_changed_cell():
    runs, superseded = retrained_study()
    pairs = stats.retrained_pairs(runs, superseded.iloc[:-1])  # the last gcnn run was never retrained
    assert len(pairs) == 23 and set(pairs["old_code"]) == {"old"} and set(pairs["new_code"]) == {"new"}
    compared = stats.retrained_comparison(pairs).set_index("arm")
    assert compared.loc["plain", "identical"] == 8 and compared.loc["gcnn", "n"] == 7
    assert np.isnan(compared.loc["plain", "p_t"])  # nothing changed: no test
    repeat = compared.loc["repeat"]
    assert repeat["identical"] == 0 and repeat["diff"] == pytest.approx(CHANGE.mean())
    t = sps.ttest_1samp(CHANGE, 0.0)
    assert repeat["p_t"] == pytest.approx(t.pvalue)
    half = sps.t.ppf(0.975, 7) * CHANGE.std(ddof=1) / np.sqrt(8)
    assert repeat["lo"] == pytest.approx(CHANGE.mean() - half) and repeat["hi"] == pytest.approx(
        CHANGE.mean() + half
    )
    assert repeat["p_w"] == pytest.approx(sps.wilcoxon(CHANGE).pvalue)


def test_the_study_as_first_trained_swaps_each_retrained_row_for_its_old_one():
    runs, superseded = retrained_study()
    first = stats.with_first_training(runs, superseded)
    assert len(first) == len(runs) and set(first["code_fingerprint"]) == {"old"}
    merged = first.set_index("run_key")["test_error"].sort_index()
    assert np.allclose(
        merged.to_numpy(), superseded.set_index("run_key")["test_error"].sort_index().to_numpy()
    )
    assert stats.with_first_training(runs, pd.DataFrame()) is runs


def test_report_notes_name_the_codes_list_the_unchanged_cells_and_test_the_changed_ones():
    runs, superseded = retrained_study()
    pairs = stats.retrained_pairs(runs, superseded)
    notes = retrained_notes(pairs)
    assert notes[0].startswith("retrained: 24 runs, first trained by old, retrained by new; 16 of them give")
    assert len(notes) == 3 and notes[1] == (
        "retrained, every pair bit-identical (no test: each difference is 0): gcnn at budget 20,000, C4 "
        "(8 of 8); plain at budget 20,000 (8 of 8)"
    )
    assert notes[2].startswith("retrained repeat at budget 20,000, C4, matched control: 8 of 8")
    assert notes[2].endswith("(Holm over the 1 cell with a change)")  # the family is the tested cells
    lines = first_training_lines("B", runs, superseded, pairs, controls=False)
    share = stats.decompose(superseded, n_boot=0, n_perm=0)["share_rep"].iloc[0]
    assert len(lines) == 1 and f"the share would be {100 * share:.1f}%" in lines[0]
    header, rows = per_seed_table(pairs)
    assert header[0] == "seed" and "repeat C4 (matched): first → retrained (%)" in header and len(rows) == 8
    assert (
        rows[0][header.index("plain: first → retrained (%)")]
        == f"{100 * OLD['plain'][0]:.2f} → {100 * OLD['plain'][0]:.2f}"
    )
    assert retrained_notes(stats.retrained_pairs(runs, pd.DataFrame())) == []
