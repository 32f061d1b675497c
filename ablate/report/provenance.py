"""What a study's runs are: on one dataset, the runs the study file asks for (no fewer, no
more), and which code made them. Each check returns the report's notes (one line each) or raises
ResultsError when the runs cannot be analysed together."""

from __future__ import annotations

import pandas as pd

from ablate import stats
from ablate.errors import ResultsError
from ablate.models.arms import CELL_KEY
from ablate.report import text
from ablate.results import StudyResults
from ablate.study.grid import expand_grid
from ablate.study.schema import Study


def data_notes(runs: pd.DataFrame, store: StudyResults) -> list[str]:
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


def _seed_list(seeds) -> str:
    """'0-4' for a run of consecutive seeds, else '0, 2, 5'."""
    seeds = sorted(int(s) for s in seeds)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(map(str, seeds))


def what_ran_notes(runs: pd.DataFrame, store: StudyResults, study: Study | None) -> list[str]:
    """Against the saved study (store.saved_study()): the runs it asks for that are missing, and
    the cells (budget, arm) whose seeds differ from its lists (more runs than it names, e.g. from
    an earlier, larger study file)."""
    if study is None:
        return []
    grid = expand_grid(study, str(store.dir / "study.toml"))
    expected = {(spec.budget, spec.arm, spec.seed) for spec in grid}
    present = set(zip(runs["budget"].astype(int), runs["arm"], runs["seed"].astype(int)))
    notes = []
    missing = sorted(expected - present)
    if missing:
        shown = ", ".join(f"{a} budget {b} seed {s}" for b, a, s in missing[:8])
        more = f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        notes.append(f"{len(missing)} runs of the study are missing: {shown}{more}")
    cells = {}
    for budget, arm, seed in sorted(present - expected):
        cells.setdefault((budget, arm), []).append(seed)
    if cells:
        listed = "; ".join(
            f"budget {b:,} {a}: seeds {_seed_list(s for bb, aa, s in present if (bb, aa) == (b, a))} "
            f"(study file: {_seed_list(study.train.seeds_for(b))})"
            for (b, a) in cells
        )
        notes.append(f"cells whose seeds differ from the study file's (the report uses every run): {listed}")
    return notes


def code_notes(runs: pd.DataFrame, study_file: str = "STUDY.toml") -> list[str]:
    """One line when runs come from more than one code fingerprint (with counts: not an error,
    code that changes nothing in the results is common) or predate code fingerprints; then the
    test of whether a cell's errors differ between those versions (stats.code_heterogeneity): one
    line per flagged cell, naming its fingerprints' seeds and how to retrain them under one
    version into a folder of their own, or one line saying none differs."""
    fingerprints = runs["code_fingerprint"].fillna("")
    counts = fingerprints[fingerprints != ""].value_counts()
    legacy = int((fingerprints == "").sum())
    notes = []
    if len(counts) > 1:
        shown = ", ".join(f"{fp} ({n} runs)" for fp, n in counts.items())
        notes.append(f"runs come from {len(counts)} code fingerprints: {shown}")
    if legacy:
        notes.append(f"{legacy} runs predate code fingerprints (recorded from ablate 0.2.0)")
    return notes + _compile_notes(runs) + _heterogeneity_notes(runs, study_file)


def _compile_notes(runs: pd.DataFrame) -> list[str]:
    """One line per cell whose runs mix compiled and eager training steps ([run] compile: equal
    to rounding, not bit for bit)."""
    if "compiled" not in runs or runs.empty:
        return []
    flags = runs["compiled"].astype(str).str.lower().eq("true")
    keys = [k for k in (*CELL_KEY, "group") if k in runs]
    notes = []
    for _, cell in runs.assign(compiled=flags).groupby(keys, sort=True):
        if cell["compiled"].nunique() > 1:
            count = int(cell["compiled"].sum())
            notes.append(
                f"{text.cell_label(cell.iloc[0])}: {count} of {len(cell)} runs trained with compiled steps, "
                "the rest eager (equal to rounding, not bit for bit)"
            )
    return notes


def _heterogeneity_notes(runs: pd.DataFrame, study_file: str) -> list[str]:
    tested = stats.code_heterogeneity(runs)
    if tested.empty:
        return []
    how = f"Kruskal-Wallis across code fingerprints, Holm over {len(tested)} cells"
    flagged = tested[tested["flagged"]]
    if flagged.empty:
        least = f"least adjusted p {tested['p_holm'].min():.2g}"
        return [f"code versions: no cell's test errors differ between them ({how}; {least})"]
    notes = []
    for _, c in flagged.iterrows():
        parts = "; ".join(f"{fp}: seeds {', '.join(map(str, s))}" for fp, s in c["fingerprints"].items())
        seeds = ",".join(str(s) for s in sorted(s for group in c["fingerprints"].values() for s in group))
        notes.append(
            f"code versions differ for {text.cell_label(c)} ({how}, adjusted p {c['p_holm']:.2g}): "
            f"{parts}; to retrain those seeds under one version into a folder of their own: "
            f"`python -m ablate.run {study_file} --seeds {seeds} --results results/one-code` (finished "
            "runs are never overwritten)"
        )
    return notes
